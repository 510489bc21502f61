"""Fast scrubbing of secrets and personal data, with typed, numbered placeholders.

`Scrubber().scrub(text)` finds secrets (API tokens, private keys, JWTs, passwords in URLs, flags,
assignments and config keys, high-entropy values under key-like names) and personal data (emails,
phone numbers, usernames in home paths, public IPv4 and IPv6 addresses) and replaces each with a
placeholder: `<SECRET:github_token>`, `<SECRET:password>`, `<EMAIL>`, `<PHONE>`, `<USER>`, `<IP>`.
Within one document the same value always gets the same placeholder and different values of one kind
are numbered (`<EMAIL>`, `<EMAIL_2>`, ...). Placeholders are never detected again, so scrubbing is
idempotent.

People learned from the whole corpus (identities.py: home paths, emails, git authors, actor fields,
crew members) are handed in as `Scrubber(identities=...)`; every form of such a person becomes the
same `person-N` in every document, ahead of the per-document `<USER>` and `<EMAIL>`.

IPv6: an address is replaced when it is a global unicast address (2000::/3, `ipaddress.is_global`:
so not the 2001:db8::/32 documentation range) or an IPv4-mapped address of a public IPv4 address.
Loopback (::1), unspecified (::), link-local (fe80::/10), unique-local (fc00::/7) and multicast
addresses name no one outside the machine or its network and are kept, like private IPv4 addresses.

Where a secret cannot be removed safely (a private key block without its END line, or a secret
pattern that still matches after replacement) the result's `unsafe` names the reason, and the caller
quarantines the document.

Speed: every detector sits behind a cheap gate (a substring test or a regex that starts with a
literal, which CPython's `re` scans for at memchr speed), so a document pays a full regex pass only
for patterns whose anchor occurs in it. Numbers (phones, IPv4) are found from the separator inward
(`-`, `.`, ` ` are literal prefixes) instead of scanning from every digit. Keyword assignments
(`password=`, `"api_key": ...`) are found by `str.find` of a few lowercase keywords, then parsed
locally. Nothing is kept between documents.

Sources of the patterns:
- detect-secrets 1.5.0 plugins (Yelp, Apache-2.0): aws.py (access key id prefixes), github_token.py,
  slack.py (tokens and webhooks), stripe.py, jwt.py (formal validity), private_key.py (headers),
  npm.py, pypi_token.py, openai.py (the `T3BlbkFJ` marker), basic_auth.py (password in a URL),
  keyword.py (the names that mark a secret), high_entropy_strings.py (Shannon entropy).
- scrubadub 2.0.1 (MIT): its PhoneDetector is `phonenumbers.PhoneNumberMatcher` at leniency VALID;
  phone candidates are confirmed with exactly that (called through `phonenumbers`, scrubadub's own
  dependency, because importing scrubadub pulls nltk, scikit-learn and scipy: 1.8 s). The
  username/password pair pattern is scrubadub's CredentialDetector regex, kept to one line. Its
  email regex is not used: it also matches `look at file.txt` ("x at y.z").
- Our own: Hugging Face, Anthropic, Google, GitLab and newer GitHub token shapes, home-path and
  Claude Code project-dir usernames, public IPv4 and IPv6 (via `ipaddress.is_global`), learned
  people (identities.py), the placeholders.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import copy
import ipaddress
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import phonenumbers

from gastown_ft.corpus.town_paths import encode_project_dir, root_variants

if TYPE_CHECKING:
    from gastown_ft.corpus.identities import IdentityMap

__all__ = ["ScrubResult", "Scrubber", "scrub_jsonl", "placeholder", "SECRET_KINDS"]

# --------------------------------------------------------------------------------------------------
# Kinds and placeholders

SECRET_KINDS = (
    "private_key",
    "aws_access_key",
    "aws_secret_key",
    "github_token",
    "gitlab_token",
    "hf_token",
    "anthropic_key",
    "openai_key",
    "slack_token",
    "slack_webhook",
    "stripe_key",
    "google_api_key",
    "npm_token",
    "pypi_token",
    "sendgrid_key",
    "jwt",
    "bearer_token",
    "password",
    "generic_secret",
)
_PII_TAGS = {"email": "EMAIL", "phone": "PHONE", "user": "USER", "ip": "IP"}

# Priorities: when two findings overlap, the higher one wins.
_P_KEY = 100
_P_TOKEN = 90
_P_URLPW = 80
_P_BEARER = 75
_P_PERSON = 72  # a learned person: above the per-document user, email and credential-pair findings
_P_CRED = 70
_P_ASSIGN = 60
_P_EMAIL = 50
_P_USER = 40
_P_NUMBER = 30
_P_ECHO = 20  # a known secret value seen again elsewhere in the document


def placeholder(kind: str, n: int = 1) -> str:
    """The placeholder for the n-th distinct value of `kind` in a document."""
    tag = _PII_TAGS.get(kind) or f"SECRET:{kind}"
    return f"<{tag}>" if n == 1 else f"<{tag}_{n}>"


@dataclass
class ScrubResult:
    """The scrubbed text, how many findings of each kind were replaced, and why it is unsafe (if)."""

    text: str
    counts: Counter[str] = field(default_factory=Counter)
    unsafe: str | None = None

    @property
    def changed(self) -> bool:
        return bool(self.counts)


# --------------------------------------------------------------------------------------------------
# Helpers

_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_WORDCH = _ALNUM | {"_"}
_IDENT_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-."
_EMAIL_LOCAL_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-"


def _word_before(text: str, i: int) -> bool:
    """Whether text[i-1] is a word character (the letter of a \\n, \\t or \\r escape does not count)."""
    if i <= 0:
        return False
    c = text[i - 1]
    if c not in _WORDCH:
        return False
    return not (c in "ntr" and i >= 2 and text[i - 2] == "\\")


def _drop_escape(text: str, end: int, s: str) -> str:
    """`s` (which ends at `end`) without the letters of a JSON escape it starts with (\\n, \\u003c)."""
    start = end - len(s)
    if start > 0 and text[start - 1] == "\\":
        if s[:1] in ("n", "r", "t"):
            return s[1:]
        if _U_ESCAPE.match(s):
            return s[5:]
    return s


def _shannon(s: str) -> float:
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in Counter(s).values())


def _random_enough(v: str) -> bool:
    """High-entropy test for a value under a key-like name (detect-secrets' Shannon entropy idea,
    with a threshold that scales with length because short strings cannot reach 4.5 bits)."""
    n = len(v)
    if n < 16 or n > 2048:
        return False
    if v[0] in "/~." or "://" in v or any(c.isspace() for c in v):
        return False
    # A digit is required: type and class names (SecretsCollection, TextGenerationStreamOutputToken)
    # have none, random keys of 16+ characters almost always do.
    if not any(c.isdigit() for c in v) or not any(c.isalpha() for c in v):
        return False
    return _shannon(v) >= min(3.5, 0.8 * math.log2(n))


def _ascii_lower(text: str) -> str:
    """A lowercase copy with the same indices as `text` (str.lower() can change the length)."""
    low = text.lower()
    if len(low) == len(text):
        return low
    return text.encode("ascii", "replace").decode("ascii").lower()


# --------------------------------------------------------------------------------------------------
# Token rules: literal prefix + body. `strict` requires no word character before the prefix (a
# lookbehind placed after the literal, so `re` keeps its fast literal-prefix scan); `loose` drops
# that and is used for the residual check after replacement.


@dataclass(frozen=True)
class _Rule:
    kind: str
    prefix: str
    body: str
    check: Callable[[str], bool] | None = None
    left: str = "A-Za-z0-9_"  # characters that must not precede the prefix
    loose_residual: bool = True  # False where the prefix is common inside words ("task-...")

    def compile(self) -> tuple[re.Pattern[str], re.Pattern[str]]:
        p = re.escape(self.prefix)
        if not self.left:
            strict = re.compile(p + self.body)
            return strict, strict
        # Not preceded by a word character, unless it is the letter of a \n, \t or \r escape.
        strict = re.compile(f"{p}(?<!(?<!\\\\)[{self.left}]{p}){self.body}")
        loose = re.compile(p + self.body) if self.loose_residual else strict
        return strict, loose


def _mixed_case(tok: str) -> bool:
    body = tok[3:]
    return any(c.isupper() for c in body) and any(c.islower() for c in body)


def _openai_ok(tok: str) -> bool:
    # detect-secrets openai.py: legacy and project keys carry "T3BlbkFJ" (base64 of "OpenAI").
    if "T3BlbkFJ" in tok:
        return True
    body = tok.split("-", 2)[-1] if tok.startswith(("sk-proj-", "sk-svcacct-", "sk-admin-")) else tok[3:]
    return (
        len(body) >= 32
        and any(c.isdigit() for c in body)
        and any(c.isupper() for c in body)
        and any(c.islower() for c in body)
    )


_RULES: tuple[tuple[str | re.Pattern[str], tuple[_Rule, ...]], ...] = (
    # detect-secrets aws.py: (?:A3T[A-Z0-9]|ABIA|ACCA|AKIA|ASIA)[0-9A-Z]{16}; Google API keys: AIza + 35.
    (
        re.compile(r"A(?:KIA|SIA|BIA|CCA|3T|Iza)"),
        (
            _Rule("aws_access_key", "AKIA", r"[0-9A-Z]{16}(?![0-9A-Za-z])"),
            _Rule("aws_access_key", "ASIA", r"[0-9A-Z]{16}(?![0-9A-Za-z])"),
            _Rule("aws_access_key", "ABIA", r"[0-9A-Z]{16}(?![0-9A-Za-z])"),
            _Rule("aws_access_key", "ACCA", r"[0-9A-Z]{16}(?![0-9A-Za-z])"),
            _Rule("aws_access_key", "A3T", r"[0-9A-Z]{17}(?![0-9A-Za-z])"),
            _Rule("google_api_key", "AIza", r"[0-9A-Za-z_\-]{35}(?![0-9A-Za-z_\-])"),
        ),
    ),
    # detect-secrets github_token.py: (ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9_]{36}; fine-grained github_pat_.
    (
        re.compile(r"gh[pousr]_"),
        tuple(_Rule("github_token", f"gh{c}_", r"[A-Za-z0-9]{36,251}(?![A-Za-z0-9])") for c in "pousr"),
    ),
    ("github_pat_", (_Rule("github_token", "github_pat_", r"[A-Za-z0-9_]{40,251}(?![A-Za-z0-9_])"),)),
    ("glpat-", (_Rule("gitlab_token", "glpat-", r"[A-Za-z0-9_\-]{20,64}(?![A-Za-z0-9_\-])"),)),
    ("hf_", (_Rule("hf_token", "hf_", r"[A-Za-z0-9]{30,64}(?![A-Za-z0-9_])", _mixed_case),)),
    # Anthropic: sk-ant-api03-..., sk-ant-admin01-...; OpenAI: sk-..., sk-proj-...; Stripe (stripe.py).
    (
        re.compile(r"sk(?:-|_live_|_test_)"),
        (
            _Rule("anthropic_key", "sk-ant-", r"[A-Za-z0-9_\-]{20,300}", left="A-Za-z0-9_\\-"),
            _Rule(
                "openai_key",
                "sk-",
                r"(?!ant-)[A-Za-z0-9_\-]{20,300}",
                _openai_ok,
                left="A-Za-z0-9_\\-",
                loose_residual=False,
            ),
            _Rule("stripe_key", "sk_live_", r"[0-9A-Za-z]{16,247}"),
            _Rule("stripe_key", "sk_test_", r"[0-9A-Za-z]{16,247}"),
        ),
    ),
    (
        re.compile(r"rk_(?:live|test)_"),
        (
            _Rule("stripe_key", "rk_live_", r"[0-9A-Za-z]{16,247}"),
            _Rule("stripe_key", "rk_test_", r"[0-9A-Za-z]{16,247}"),
        ),
    ),
    ("whsec_", (_Rule("stripe_key", "whsec_", r"[A-Za-z0-9+/]{24,}"),)),
    # detect-secrets slack.py: xox(?:a|b|p|o|s|r)-(?:\d+-)+[a-z0-9]+ and the webhook URL.
    (
        re.compile(r"x(?:ox[abposr]|app)-"),
        tuple(_Rule("slack_token", f"xox{c}-", r"[A-Za-z0-9\-]{10,250}") for c in "abposr")
        + (_Rule("slack_token", "xapp-", r"\d-[A-Za-z0-9\-]{10,250}"),),
    ),
    (
        "hooks.slack.com",
        (
            _Rule(
                "slack_webhook",
                "https://hooks.slack.com/services/",
                r"T[A-Za-z0-9_]+/B[A-Za-z0-9_]+/[A-Za-z0-9_]+",
                left="",
            ),
        ),
    ),
    ("npm_", (_Rule("npm_token", "npm_", r"[A-Za-z0-9]{36}(?![A-Za-z0-9])"),)),
    # detect-secrets pypi_token.py: pypi-AgEIcHlwaS5vcmc... and pypi-AgENdGVzdC5weXBpLm9yZw... (test).
    ("pypi-AgE", (_Rule("pypi_token", "pypi-AgE", r"[A-Za-z0-9_\-]{50,}"),)),
    ("SG.", (_Rule("sendgrid_key", "SG.", r"[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}"),)),
)


_TOKEN_RULES = tuple((gate, tuple((r, *r.compile()) for r in rs)) for gate, rs in _RULES)

# --------------------------------------------------------------------------------------------------
# Other patterns

# detect-secrets private_key.py headers; we take the whole block through its END line.
_PK_BEGIN = re.compile(r"-{4,5} ?BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY( BLOCK)? ?-{4,5}")
_PK_END = re.compile(r"-{4,5} ?END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)? ?-{4,5}")
# Key material: base64 runs of 16+ characters, "Proc-Type: ..." header lines and short final lines,
# split by newlines, real or JSON-escaped. Prose after a bare header has no 16+ runs.
_PK_BODY = re.compile(
    r"(?:(?:[ \t\r\n]|\\[nrt])*"
    r"(?:[A-Za-z0-9+/=]{16,}|[A-Z][A-Za-z\-]+: [^\n\\]*|[A-Za-z0-9+/]{1,15}={0,2}(?=[ \t]*(?:\r?\n|\\[nr]|$))))+"
)
_PUTTY = re.compile(r"PuTTY-User-Key-File-\d:")
_PUTTY_END = re.compile(r"Private-MAC: *[0-9a-fA-F]+")
_EOL = re.compile(r"\n|\\n")
_B64_RUN = re.compile(r"[A-Za-z0-9+/=]{16,}")

# detect-secrets jwt.py (eyJ...); formally validated (header must decode to JSON with alg/typ).
_JWT = re.compile(r"eyJ(?<!(?<!\\)[A-Za-z0-9_\-]eyJ)[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*")

# detect-secrets basic_auth.py: ://user:PASS@ (user may be empty).
_URL_PW = re.compile(
    r"://(?P<user>[^\s:/@?#'\"<>`\\]{0,128}):(?P<pw>[^\s:/@'\"<>`\\]{1,256})@(?=[A-Za-z0-9\[])"
)

_BEARER = re.compile(r"(?i)(?:bearer|authorization:[ \t]*token)[ \t]+(?P<v>[A-Za-z0-9\-._~+/]{16,}=*)")
_BASIC = re.compile(r"(?i)\bauthorization:[ \t]*basic[ \t]+(?P<v>[A-Za-z0-9+/]{8,}={0,2})")

# scrubadub 2.0.1 CredentialDetector.regex (MIT), a username and password pair, adapted: its
# `\s` became `[ \t]` (one line: the original pairs "username and\n password with a colon" in
# prose), the separator after each word is required, and the `u:`/`p:` forms are dropped.
_SCRUBADUB_CREDENTIAL = re.compile(
    r"""
        (username|login)[ \t]*[:=][ \t]*     # username might have : and whitespace
        (?P<username>[\w\-\.@+]+)          # capture the username for replacement
        [ \t,;]+                            # some whitespace between
        (password|pw)[ \t]*[:=][ \t]*       # password might have : and whitespace
        (?P<password>.*)                   # password can be anything until EOL
    """,
    re.MULTILINE | re.VERBOSE | re.IGNORECASE,
)

_CRED_WORD = re.compile(r"[^\s\"'\\,;()\[\]{}]+")

# Emails: found from "@" (a literal prefix), the local part read backwards.
_EMAIL_DOMAIN = re.compile(
    r"@(?P<d>[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*"
    r"\.[A-Za-z]{2,24})(?![A-Za-z0-9\-]|\.[A-Za-z0-9])"
)
_U_ESCAPE = re.compile(r"u[0-9a-fA-F]{4}")  # the rest of a JSON \u003c escape
# user@host:~/path or user@host:/path (a shell prompt or scp target without a dotted host).
_PROMPT_HOST = re.compile(r"@[A-Za-z0-9][A-Za-z0-9\-]{0,62}:(?=[~/])")

_HOME = re.compile(r"/home/(?P<u>[A-Za-z0-9._\-]{1,64})(?![A-Za-z0-9._\-])")
_USERS = re.compile(r"/Users/(?P<u>[A-Za-z0-9._\-]{1,64})(?![A-Za-z0-9._\-])")
_WIN_USERS = re.compile(r"[A-Za-z]:\\{1,8}Users\\{1,8}(?P<u>[A-Za-z0-9._\- ]{1,64}?)(?=\\|[\"'\s]|$)")
_ENC_HOME = re.compile(r"-(?:home|Users)-(?P<u>[A-Za-z0-9_]{1,64})(?=-|/|$|[\"'\s])")
_USER_ENV = re.compile(
    r"(?:(?<![A-Za-z0-9_])|(?<=\\[ntr]))(?:USER|LOGNAME|USERNAME)(?:=|\\{0,7}\"?:[ \t]*\\{0,7}\")"
    r"(?P<u>[A-Za-z0-9._\-]{1,64})(?![A-Za-z0-9._\-])"
)

# IPv6 from a `:hhhh:` pair (a literal ':' prefix), then widened over hex digits, colons and dots.
_V6_PAIR = re.compile(r":[0-9A-Fa-f]{0,4}:")
_V6_CHARS = frozenset("0123456789abcdefABCDEF:.")
_V6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")

# Numbers. IPv4 from its first dot; phones from the separator before the last four digits.
_IP_TAIL = re.compile(r"\.(?<=\d\.)\d{1,3}\.\d{1,3}\.\d{1,3}(?!\d|\.\d|[A-Za-z_])")
_IP_VERSION_CTX = re.compile(
    r"(?:version|ver|release|build|rev|v|section|sec|chapter|step|rule|item|clause|§)[ \t]*[:=]?[ \t]*\\{0,7}[\"']?$"
    r"|[=~<>^]=?[ \t]*\\{0,7}[\"']?$",  # pins (==, >=, ~=); not "@": user@34.1.2.3 is a host
    re.I,
)
_PHONE_SEP = (
    re.compile(r"-(?<=\d\d\d-)\d{4}(?![\d])"),
    re.compile(r"\.(?<=\d\d\d\.)\d{4}(?![\d])"),
    re.compile(r" (?<=\d\d\d )\d{4}(?![\d])"),
)
_PHONE_INTL = re.compile(r"\+\d{1,3}[ .\-]?(?:\(\d{1,4}\)[ .\-]?)?\d{1,4}(?:[ .\-]?\d{2,4}){1,4}(?!\d)")
_PHONE_US_FULL = re.compile(r"(?:\+?1[ .\-]?)?(?:\(\d{3}\)[ .\-]?|\d{3}[ .\-]?)\d{3}[ .\-]\d{4}$")

# Assignments after a key-like name: `name = v`, `name: v`, `"name": "v"`, `name := v`, flags.
_VALUE = r"""
    (?: (?P<bs>\\{1,7})"(?P<v1>[^"\\\n]{1,500}?)(?P=bs)"     # escaped once or more: \"v\", \\\"v\\\"
      | "(?P<v2>(?:[^"\\\n]|\\.){1,500}?)"
      | '(?P<v3>[^'"\\\n]{1,500}?)'
      | `(?P<v4>[^`"\\\n]{1,500}?)`
      | (?P<v5>[^\s"'`,;()\[\]{}<>\\|&]{1,500})
    )"""
_ASSIGN = re.compile(
    r"""(?P<close>\\{0,7}["'`])?\]?[ \t]*
    (?::[ \t]*[A-Za-z_][\w.|\[\], ]{0,40}?[ \t]*(?==[^=]))?   # a type annotation: `password: str = "x"`
    (?P<op>:=|=>|=(?!=)|:(?!:))[ \t]*"""
    + _VALUE,
    re.VERBOSE,
)
_FLAG_SPACE = re.compile(r"[ \t]+" + _VALUE, re.VERBOSE)
_COLON_TAIL = re.compile(r"[ \t]*(?:$|\#|,|\}|\]|\\{1,7}[nr\"]|[\"'`\r\n])")
_NAME_COMPS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_ATTR_REF = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+(?:\(\))?")
_METAVAR = re.compile(r"[A-Z][A-Z0-9_\-]*")
_AWS_SECRET_VALUE = re.compile(r"[A-Za-z0-9/+]{40}")
_IDENTIFIER = re.compile(r"[A-Za-z_]+")
_CAMEL = re.compile(r"[a-z][A-Z]")
_SNAKE = re.compile(r"[a-z]+(?:_[a-z]+)+")


def _secretish_word(low: str) -> bool:
    return "pass" in low or "secret" in low or "token" in low or "key" in low or "pwd" in low


_KW_TRIGGERS = ("pass", "pwd", "secret", "token", "key", "auth", "cred")
_PASSWORD_COMPS = frozenset(
    {"password", "passwd", "passphrase", "passwords", "pass", "pwd", "pw", "passcode"}
)
_KEY_QUALIFIERS = frozenset(
    {
        "api", "access", "secret", "private", "priv", "signing", "encryption", "enc", "master", "auth",
        "client", "service", "account", "db", "database", "app", "license", "session", "ssh", "deploy",
        "webhook", "admin", "consumer", "crypt", "hmac", "jwt",
    }
)  # fmt: skip
_SECRET_COMPS = frozenset(
    {"apikey", "credential", "credentials", "creds", "cred", "auth", "bearer", "secret"}
)
_NONSECRET_LAST = frozenset(
    {
        "file", "files", "path", "dir", "url", "uri", "endpoint", "env", "var", "vars", "name", "names",
        "id", "ids", "type", "types", "mode", "length", "len", "count", "limit", "limits", "max", "min",
        "ttl", "expiry", "expires", "expiration", "expire", "timeout", "header", "prefix", "suffix", "hint",
        "policy", "source", "store", "provider", "helper", "cmd", "command", "field", "fields", "regex",
        "pattern", "kind", "budget", "usage", "used", "hash", "sha", "checksum", "digest", "rotation",
        "format", "enabled", "disabled", "required", "method", "scheme", "location", "ref", "refs",
        "template", "label", "example", "description", "desc", "help", "prompt", "script", "scope",
        "scopes", "manager", "service", "server", "host", "port", "user", "username", "owner", "size",
        "version", "flag", "flags", "option", "options", "config", "set", "list", "index", "map",
        "reset", "strength", "rules", "rule", "check", "checks",
    }
)  # fmt: skip
_PLACEHOLDER_VALUES = frozenset(
    {
        "none", "null", "nil", "true", "false", "undefined", "redacted", "string", "str", "int", "bool",
        "value", "required", "optional", "secret", "password", "token", "x-oauth-basic",
        "example", "placeholder", "env", "os.environ", "process.env", "n/a", "na", "todo", "tbd", "yes",
        "no", "on", "off", "empty", "default", "hidden", "masked", "pass", "passwd", "pwd", "pw", "user",
        "username", "bytes", "float", "dict", "list", "any", "object", "number", "integer", "boolean",
        "text", "secretstr",
    }
)  # fmt: skip
_GENERIC_USERS = frozenset(
    {
        "root", "admin", "administrator", "postgres", "postgresql", "mysql", "user", "username", "git",
        "gt", "dolt", "app", "api", "service", "svc", "deploy", "ci", "bot", "oauth2", "oauth",
        "x-access-token", "x-token-auth", "token", "default", "guest", "test", "anonymous", "redis",
        "rabbitmq", "ubuntu", "ec2-user", "runner", "www-data", "nobody", "web", "db", "dev", "linuxbrew",
        "vscode", "node", "codespace", "shared", "public", "you", "me", "your-user", "yourname", "name",
        "example", "foo", "bar", "someone", "agent", "claude", "docker", "debian", "centos", "admin1",
    }
)  # fmt: skip
_NON_PERSONAL_EMAIL_LOCAL = frozenset({"git", "noreply", "no-reply"})
# Parts of a login that mark a service account (dolt_mirror, ci-deploy, svc.ledger), not a person.
_SERVICE_WORDS = frozenset(
    {
        "mirror", "bot", "svc", "service", "ci", "cd", "deploy", "deployer", "backup", "app", "readonly",
        "ro", "rw", "replica", "replication", "admin", "root", "sync", "worker", "agent", "daemon", "etl",
        "ingest", "api", "web", "db", "dolt", "postgres", "mysql", "redis", "gt", "git", "system", "sa",
        "robot", "automation", "build", "runner", "test", "staging", "prod", "dev", "monitor", "metrics",
    }
)  # fmt: skip
_FILE_EXTENSIONS = frozenset(
    {
        "txt", "png", "jpg", "jpeg", "gif", "svg", "webp", "json", "jsonl", "yaml", "yml", "toml", "lock",
        "log", "tgz", "gz", "zip", "tar", "md", "py", "js", "ts", "go", "rs", "rb", "sh", "html", "css",
        "pdf", "csv", "tmpl", "bak", "tmp", "whl", "exe", "so", "dylib",
    }
)  # fmt: skip


@lru_cache(maxsize=4096)
def _classify_name(name: str) -> str | None:
    """What a key-like name holds: 'password', 'aws_secret_key', 'generic_secret', or None."""
    comps = [c.lower() for c in _NAME_COMPS.findall(name)]
    if not comps:
        return None
    if comps[-1] in _NONSECRET_LAST and len(comps) > 1:
        return None
    if comps in (["pwd"], ["oldpwd"], ["pass"], ["pw"]):
        return None
    if comps == ["authtoken"] and name.startswith("_"):
        return "npm_token"
    for c in comps:
        if c in _PASSWORD_COMPS or "passw" in c or (c.endswith("pwd") and c != "oldpwd"):
            return "password"
    if ("aws" in comps and "secret" in comps) or ("secret" in comps and "access" in comps):
        return "aws_secret_key"
    for i, c in enumerate(comps):
        if c in _SECRET_COMPS or "secret" in c or c == "token" or (c.endswith("token") and len(c) > 5):
            return "generic_secret"
        if c == "key" and i > 0 and comps[i - 1] in _KEY_QUALIFIERS:
            return "generic_secret"
        if c.endswith("key") and c[:-3] in _KEY_QUALIFIERS:
            return "generic_secret"
    return None


def _personal_login(user: str, generic: frozenset[str]) -> bool:
    """Whether a login (in a URL or a username/password pair) names a person rather than a service."""
    low = user.lower()
    if low in generic or _is_placeholder_value(user):
        return False
    return not any(part in _SERVICE_WORDS for part in re.split(r"[_\-.+]", low))


# A learned person's placeholder (identities.py): never detected again, so scrubbing is idempotent.
_PERSON_PLACEHOLDER = re.compile(r"person-\d+")


def _is_placeholder_value(v: str) -> bool:
    s = v.strip()
    if not s:
        return True
    if _PERSON_PLACEHOLDER.fullmatch(s):
        return True
    if s[0] in "$%<" or s.startswith(("{{", "${", "%(", "{$")):
        return True
    low = s.lower()
    if low in _PLACEHOLDER_VALUES:
        return True
    if set(s) <= set("*xX.-•#_?"):
        return True
    if low.startswith(("your", "os.environ", "process.env", "getenv", "env(")):
        return True
    return False


# --------------------------------------------------------------------------------------------------
# The scrubber


TOWN_ROOT_AS = "~/gt"


def town_root_spellings(root: Path) -> tuple[str, ...]:
    """The ways a town root shows up in its files: as configured (absolute) and with links resolved."""
    return tuple(str(p) for p in root_variants(root))


def _town_root_pattern(roots: Sequence[str]) -> re.Pattern[str] | None:
    """One pattern for every spelling of the town roots, longest first; a root must end at a path
    boundary (`/tmp/town` is not a prefix of `/tmp/town2`)."""
    if not roots:
        return None

    def alts(forms: set[str]) -> str:
        return "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))

    absolute = alts(set(roots))
    encoded = alts({encode_project_dir(r) for r in roots})
    return re.compile(rf"(?<![\w.\-])(?:{absolute})(?![\w.\-])|(?<![A-Za-z0-9])(?:{encoded})(?![A-Za-z0-9])")


def _town_root_replacement(m: re.Match[str]) -> str:
    return TOWN_ROOT_AS if m.group(0).startswith("/") else encode_project_dir(TOWN_ROOT_AS)


class Scrubber:
    """Scrub secrets and personal data from text. Build once; `scrub` is stateless across calls.

    emails, phones, ips, users: turn the personal-data detectors on or off.
    allow_emails: addresses left as they are (bot identities such as noreply@anthropic.com).
    allow_email_domains: domains whose addresses are left as they are, e.g. ("gastown.local",) to keep
        Gas Town's agent identities (jack@crew.gastown.local), which are conventions, not people.
        Off by default: the corpus residue check treats every such address as residue.
    generic_users: account names that are not personal (root, postgres, runner, ...).
    phone_region: the region for numbers written without a country code.
    identities: people learned from the whole corpus (identities.IdentityMap); each of their forms
        becomes its `person-N` placeholder. None: only the per-document detectors run.
    town_roots: the town's absolute root (and its resolved form): every path under it is written
        under `~/gt` (Gas Town's default root), also in Claude Code's project-dir spelling, so a town
        gives the same corpus, example ids and training order wherever it lives.
    """

    def __init__(
        self,
        *,
        emails: bool = True,
        phones: bool = True,
        ips: bool = True,
        users: bool = True,
        allow_emails: Iterable[str] = ("noreply@anthropic.com", "noreply@github.com"),
        allow_email_domains: Iterable[str] = (),
        generic_users: Iterable[str] = _GENERIC_USERS,
        phone_region: str = "US",
        identities: IdentityMap | None = None,
        town_roots: Iterable[str] = (),
    ) -> None:
        self.emails = emails
        self.phones = phones
        self.ips = ips
        self.users = users
        self.allow_emails = frozenset(e.lower() for e in allow_emails)
        # "x.gastown.local" and "gastown.local" itself, but not "evilgastown.local".
        self.allow_email_domains = tuple(
            d for dom in allow_email_domains for d in ("@" + dom.lower(), "." + dom.lower())
        )
        self.generic_users = frozenset(generic_users)
        self.phone_region = phone_region
        self.identities = identities
        # What the scrubbed text depends on (the stage's cache key reads the plain attributes).
        self.identity_fingerprint = identities.fingerprint if identities is not None else ""
        self.town_roots = tuple(sorted({r.rstrip("/") for r in town_roots if r.strip("/")}))
        self._town_root = _town_root_pattern(self.town_roots)
        # the gate: a substring test per spelling is far cheaper than the pattern on every text
        self._town_root_needles = tuple({f for r in self.town_roots for f in (r, encode_project_dir(r))})

    def with_identities(self, identities: IdentityMap | None) -> Scrubber:
        """A copy of this scrubber that also replaces the people of `identities`."""
        other = copy.copy(self)
        other.identities = identities
        other.identity_fingerprint = identities.fingerprint if identities is not None else ""
        return other

    # ---- public -------------------------------------------------------------------------------

    def scrub(self, text: str) -> ScrubResult:
        if not text:
            return ScrubResult(text)
        spans: list[tuple[int, int, int, str, str]] = []  # (start, end, priority, kind, key)
        unsafe: list[str] = []
        add = spans.append
        moved = 0
        if self._town_root is not None and any(n in text for n in self._town_root_needles):
            text, moved = self._town_root.subn(_town_root_replacement, text)

        gated = self._tokens(text, add)
        if "PRIVATE KEY" in text or "PuTTY-User-Key-File-" in text:
            self._private_keys(text, add, unsafe)
        if "eyJ" in text:
            self._jwts(text, add)
        if "://" in text:
            self._url_passwords(text, add)
        lower = _ascii_lower(text)
        self._assignments(text, lower, add)
        if "bearer" in lower or "authorization" in lower:
            self._auth_headers(text, lower, add)
        if ("username" in lower or "login" in lower) and ("password" in lower or "pw" in lower):
            self._credential_pairs(text, add)
        if "@" in text and (self.emails or self.users):
            self._emails(text, add)
        if self.users:
            self._users(text, add)
        if self.identities is not None:
            self.identities.find(text, lambda f: add((f[0], f[1], _P_PERSON, "person", f[2])), lower)
        if self.ips and "." in text:
            self._ipv4(text, add)
        if self.ips and ":" in text:
            self._ipv6(text, add)
        if self.phones:
            self._phone_numbers(text, add)

        if spans and self.identities is not None:
            spans = _people_outside_emails(spans)
        if spans:
            out, counts = self._apply(text, spans)
        else:
            out, counts = text, Counter()
        if moved:
            counts["town_root"] += moved
        if not unsafe and (gated or "PRIVATE KEY" in text):
            residual = self._residual(out)
            if residual:
                unsafe.append(residual)
        return ScrubResult(out, counts, "; ".join(unsafe) or None)

    # ---- detectors ----------------------------------------------------------------------------

    def _tokens(self, text: str, add) -> bool:
        """Token rules behind their gates; returns whether any gate fired (then a residual check runs)."""
        fired = False
        for gate, rules in _TOKEN_RULES:
            if isinstance(gate, str):
                if gate not in text:
                    continue
            elif gate.search(text) is None:
                continue
            fired = True
            for rule, strict, _loose in rules:
                if rule.prefix not in text:
                    continue
                for m in strict.finditer(text):
                    tok = m.group()
                    if rule.check is not None and not rule.check(tok):
                        continue
                    add((m.start(), m.end(), _P_TOKEN, rule.kind, tok))
        return fired

    def _private_keys(self, text: str, add, unsafe: list[str]) -> None:
        pos = 0
        while True:
            m = _PK_BEGIN.search(text, pos)
            if m is None:
                break
            end = _PK_END.search(text, m.end(), m.end() + 65536)
            nxt = _PK_BEGIN.search(text, m.end(), end.start() if end else len(text))
            # A block never holds a quote: one that does spans JSON structure (BEGIN and END in
            # different strings), so only the material right after BEGIN is taken.
            if end is not None and nxt is None and '"' not in text[m.end() : end.start()]:
                add((m.start(), end.end(), _P_KEY, "private_key", text[m.start() : end.end()]))
                pos = end.end()
                continue
            body = _PK_BODY.match(text, m.end())
            stop = body.end() if body else m.end()
            if nxt is not None:
                stop = min(stop, nxt.start())
            material = sum(len(t) for t in _B64_RUN.findall(text, m.end(), stop))
            if material >= 40:
                add((m.start(), stop, _P_KEY, "private_key", text[m.start() : stop]))
                unsafe.append("private key block without END line")
            pos = stop if stop > m.end() else m.end()
        pos = 0
        while "PuTTY-User-Key-File-" in text:
            m = _PUTTY.search(text, pos)
            if m is None:
                break
            end = _PUTTY_END.search(text, m.end(), m.end() + 65536)
            if end is None:
                eol = _EOL.search(text, m.end())
                body = _PK_BODY.match(text, eol.start()) if eol else None
                stop = body.end() if body else (eol.start() if eol else len(text))
                add((m.start(), stop, _P_KEY, "private_key", text[m.start() : stop]))
                unsafe.append("PuTTY key without Private-MAC line")
                break
            add((m.start(), end.end(), _P_KEY, "private_key", text[m.start() : end.end()]))
            pos = end.end()

    def _jwts(self, text: str, add) -> None:
        for m in _JWT.finditer(text):
            tok = m.group().rstrip(".")
            head = tok.split(".", 1)[0]
            try:
                hdr = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
            except (ValueError, binascii.Error):
                continue
            if isinstance(hdr, dict) and ("alg" in hdr or "typ" in hdr):
                add((m.start(), m.start() + len(tok), _P_TOKEN, "jwt", tok))

    def _url_passwords(self, text: str, add) -> None:
        for m in _URL_PW.finditer(text):
            pw = m.group("pw")
            if _is_placeholder_value(pw):
                continue
            add((m.start("pw"), m.end("pw"), _P_URLPW, "password", pw))
            user = m.group("user")
            if user and self.users and _personal_login(user, self.generic_users):
                add((m.start("user"), m.end("user"), _P_USER, "user", user))

    def _auth_headers(self, text: str, lower: str, add) -> None:
        for m in _BEARER.finditer(text):
            v = m.group("v")
            if _random_enough(v):
                add((m.start("v"), m.end("v"), _P_BEARER, "bearer_token", v))
        if "authorization" in lower:
            for m in _BASIC.finditer(text):
                add((m.start("v"), m.end("v"), _P_BEARER, "password", m.group("v")))

    def _credential_pairs(self, text: str, add) -> None:
        for m in _SCRUBADUB_CREDENTIAL.finditer(text):
            # scrubadub takes the rest of the line; we take the first word (quotes and backslashes
            # stop it, so JSON text stays JSON).
            pw_m = _CRED_WORD.match(m.group("password").lstrip())
            pw = pw_m.group() if pw_m else ""
            user = m.group("username")
            if not pw or _is_placeholder_value(pw):
                continue
            if _word_before(text, m.start()):
                continue
            s = m.start("password") + (len(m.group("password")) - len(m.group("password").lstrip()))
            add((s, s + len(pw), _P_CRED, "password", pw))
            if user and self.users and _personal_login(user, self.generic_users):
                add((m.start("username"), m.end("username"), _P_CRED, "user", user))

    def _assignments(self, text: str, lower: str, add) -> None:
        seen: set[int] = set()
        for kw in _KW_TRIGGERS:
            i = lower.find(kw)
            while i != -1:
                a = i - 64 if i > 64 else 0
                head = lower[a:i]
                s = i - (len(head) - len(head.rstrip(_IDENT_CHARS)))
                if s > 0 and text[s - 1] == "\\" and lower[s] in "ntr":
                    s += 1  # "\npassword: ..." inside a JSON string
                tail = lower[i : i + 96]
                e = i + (len(tail) - len(tail.lstrip(_IDENT_CHARS)))
                if s not in seen:
                    seen.add(s)
                    self._assignment(text, s, e, add)
                i = lower.find(kw, e if e > i else i + 1)

    def _assignment(self, text: str, s: int, e: int, add) -> None:
        ident = text[s:e]
        name = ident.lstrip("-")
        flag = len(name) != len(ident)
        stripped = name.rstrip(".-")
        e -= len(name) - len(stripped)
        name = stripped
        if not name or (s > 0 and text[s - 1] == "$"):
            return
        kind = _classify_name(name)
        if kind is None:
            return
        m = _ASSIGN.match(text, e)
        colon = False
        if m is not None:
            colon = m.group("op") == ":"
        elif flag:
            m = _FLAG_SPACE.match(text, e)
        if m is None:
            return
        for g in ("v1", "v2", "v3", "v4", "v5"):
            v = m.group(g)
            if v is not None:
                break
        quoted = g != "v5"
        if not quoted:
            if colon and not _COLON_TAIL.match(text, m.end()):
                return
            if text[m.end() : m.end() + 1] == "(" or _ATTR_REF.fullmatch(v):  # a call or attribute
                return
            low_v, low_name = v.lower().replace("-", "_"), name.lower().replace("-", "_")
            if low_v in low_name or (_IDENTIFIER.fullmatch(v) and _secretish_word(low_v)):
                return  # `password=password`, `"--db-password": db_password`
            if colon and _IDENTIFIER.fullmatch(v) and ("_" in v or _CAMEL.search(v)):
                return  # a type or a variable: `"password": StringSource`, `token: OutputToken`
            if _SNAKE.fullmatch(v):
                return  # a variable: `key_or_pass = opt_api`
            if flag and (v.startswith("-") or _METAVAR.fullmatch(v) or (v.isalpha() and v.islower())):
                return  # `--token TOKEN`, `--password requires ...` in prose
        if _is_placeholder_value(v):
            return
        if kind == "password":
            if len(v) < 4 and not quoted:
                return
            if v.isdigit() and len(v) < 4:
                return
        elif kind == "aws_secret_key":
            if not _AWS_SECRET_VALUE.fullmatch(v):
                kind = "generic_secret"
                if not _random_enough(v):
                    return
        elif kind == "npm_token":
            if len(v) < 16:
                return
        elif not _random_enough(v):
            return
        add((m.start(g), m.end(g), _P_ASSIGN, kind, v))

    def _emails(self, text: str, add) -> None:
        allow = self.allow_emails
        allow_domains = self.allow_email_domains
        for m in _EMAIL_DOMAIN.finditer(text):
            at = m.start()
            chunk = text[at - 64 if at > 64 else 0 : at]
            local = chunk[len(chunk.rstrip(_EMAIL_LOCAL_CHARS)) :]
            start = at - len(local)
            if start > 0 and text[start - 1] == "\\":  # a JSON escape: \nalice@x.org, \u003calice@x.org
                if local[:1] in ("n", "r", "t"):
                    local, start = local[1:], start + 1
                elif _U_ESCAPE.match(local):
                    local, start = local[5:], start + 5
            stripped = local.lstrip(".-+")
            start += len(local) - len(stripped)
            local = stripped
            if not local or (start > 0 and text[start - 1] in "${"):
                continue
            if local.lower() in _NON_PERSONAL_EMAIL_LOCAL:
                continue
            if text[start - 3 if start > 3 else 0 : start] == "://":  # https://alice@host: a login
                if self.users and _personal_login(local, self.generic_users):
                    add((start, at, _P_USER, "user", local))
                continue
            if not self.emails:
                continue
            domain = m.group("d").lower()
            if domain.rsplit(".", 1)[1] in _FILE_EXTENSIONS or domain.split(".", 1)[0].isdigit():
                continue  # logo@2x.png, file@1.txt
            addr = f"{local}@{domain}"
            if addr.lower() in allow or addr.endswith(allow_domains):
                continue
            add((start, m.end(), _P_EMAIL, "email", addr.lower()))
        if self.users:
            for m in _PROMPT_HOST.finditer(text):
                at = m.start()
                chunk = text[at - 32 if at > 32 else 0 : at]
                user = _drop_escape(text, at, chunk[len(chunk.rstrip(_IDENT_CHARS)) :]).lstrip(".-")
                if (
                    user
                    and user[0].isalpha()
                    and user.lower() not in self.generic_users
                    and not _is_placeholder_value(user)
                ):
                    add((at - len(user), at, _P_USER, "user", user))

    def _users(self, text: str, add) -> None:
        generic = self.generic_users
        known: list[str] = []
        for needle, pat in (("/home/", _HOME), ("/Users/", _USERS)):
            if needle in text:
                for m in pat.finditer(text):
                    u = m.group("u").rstrip(".")
                    if (
                        u
                        and u.lower() not in generic
                        and not u.startswith(".")
                        and not _is_placeholder_value(u)
                    ):
                        add((m.start("u"), m.start("u") + len(u), _P_USER, "user", u))
                        known.append(u)
        if "Users\\" in text:
            for m in _WIN_USERS.finditer(text):
                u = m.group("u")
                if u.lower() not in generic and not _is_placeholder_value(u):
                    add((m.start("u"), m.end("u"), _P_USER, "user", u))
                    known.append(u)
        if "-home-" in text or "-Users-" in text:
            # Claude Code project dirs: /home/alice.b/gt -> -home-alice-b-gt ("/", "." and "_" -> "-")
            encoded = sorted(
                {(encode_project_dir(u), u) for u in known if not u.isalnum()},
                key=lambda x: -len(x[0]),
            )
            for m in _ENC_HOME.finditer(text):
                if _word_before(text, m.start()):
                    continue
                s = m.start("u")
                for enc, u in encoded:
                    if text.startswith(enc, s) and (
                        s + len(enc) == len(text) or not text[s + len(enc)].isalnum()
                    ):
                        add((s, s + len(enc), _P_USER, "user", u))
                        break
                else:
                    u = m.group("u")
                    if u.lower() not in generic and not _is_placeholder_value(u):
                        add((s, m.end("u"), _P_USER, "user", u))
        if "USER" in text or "LOGNAME" in text:
            for m in _USER_ENV.finditer(text):
                u = m.group("u")
                if u.lower() not in generic and not _is_placeholder_value(u):
                    add((m.start("u"), m.end("u"), _P_USER, "user", u))

    def _ipv4(self, text: str, add) -> None:
        for m in _IP_TAIL.finditer(text):
            d = m.start()
            b = d
            while b > 0 and d - b < 3 and text[b - 1].isdigit():
                b -= 1
            if d - b == 0 or _word_before(text, b) or (b > 0 and text[b - 1] == "."):
                continue
            ip = text[b : m.end()]
            try:
                addr = ipaddress.IPv4Address(ip)
            except ValueError:
                continue
            if not addr.is_global:
                continue
            if _IP_VERSION_CTX.search(text, b - 24 if b > 24 else 0, b):
                continue
            add((b, m.end(), _P_NUMBER, "ip", ip))

    def _ipv6(self, text: str, add) -> None:
        n = len(text)
        pos = 0
        while True:
            m = _V6_PAIR.search(text, pos)
            if m is None:
                return
            s, e = m.start(), m.end()
            while s > 0 and text[s - 1] in _V6_CHARS and text[s - 1] != ".":
                s -= 1
            while e < n and text[e] in _V6_CHARS:
                e += 1
            pos = e
            cand = text[s:e].rstrip(".")
            if (s > 0 and (text[s - 1] in _WORDCH or text[s - 1] == ".")) or (
                s + len(cand) < n and text[s + len(cand)] in _WORDCH
            ):
                continue
            try:
                addr = ipaddress.IPv6Address(cand)
            except ValueError:
                continue
            mapped = addr.ipv4_mapped
            if mapped is not None:
                public = mapped.is_global
            else:
                public = addr in _V6_GLOBAL_UNICAST and addr.is_global
            if public:
                add((s, s + len(cand), _P_NUMBER, "ip", addr.compressed))

    def _phone_numbers(self, text: str, add) -> None:
        cands: list[tuple[int, int]] = []
        if "+" in text:
            for m in _PHONE_INTL.finditer(text):
                s = m.start()
                if _word_before(text, s) or (s > 0 and text[s - 1] in "+."):
                    continue
                cands.append((s, m.end()))
        for pat in _PHONE_SEP:
            for m in pat.finditer(text):
                e = m.end()
                lo = m.start() - 14 if m.start() > 14 else 0
                w = _PHONE_US_FULL.search(text, lo, e)
                if w is None:
                    continue
                s = w.start()
                cands.append((s, e))
        if not cands:
            return
        cands.sort()
        last_end = -1
        for s, e in cands:
            if s < last_end:
                continue
            if text[s] not in "(+" and (_word_before(text, s) or (s > 0 and text[s - 1] in ".-/:")):
                continue
            if e < len(text) and (text[e] in _WORDCH or (text[e] in ".-" and text[e + 1 : e + 2].isdigit())):
                continue
            num = self._valid_phone(text, s, e)
            if num is not None:
                add((num[0], num[1], _P_NUMBER, "phone", num[2]))
                last_end = num[1]

    def _valid_phone(self, text: str, s: int, e: int) -> tuple[int, int, str] | None:
        """scrubadub's PhoneDetector, on a small window: phonenumbers.PhoneNumberMatcher (leniency VALID)."""
        lo = s - 2 if s > 2 else 0
        window = text[lo : e + 2]
        for pm in phonenumbers.PhoneNumberMatcher(window, self.phone_region):
            ps, pe = lo + pm.start, lo + pm.end
            if ps < e and pe > s:
                key = phonenumbers.format_number(pm.number, phonenumbers.PhoneNumberFormat.E164)
                return ps, pe, key
        return None

    # ---- apply and check ----------------------------------------------------------------------

    def _apply(self, text: str, spans: list[tuple[int, int, int, str, str]]) -> tuple[str, Counter[str]]:
        # A secret found once is removed wherever else it appears verbatim (long values only).
        echoes = {key for _s, _e, _p, kind, key in spans if kind in SECRET_KINDS_SET and len(key) >= 8}
        if echoes:
            kinds = {}
            for _s, _e, _p, kind, key in spans:
                if key in echoes:
                    kinds.setdefault(key, kind)
            for key, kind in kinds.items():
                i = text.find(key)
                while i != -1:
                    if i == 0 or text[i - 1] != "\\":  # never split a JSON escape
                        spans.append((i, i + len(key), _P_ECHO, kind, key))
                    i = text.find(key, i + len(key))
        # Greedy by priority (then length, then position); overlapping lower findings are dropped.
        spans.sort(key=lambda t: (-t[2], t[0] - t[1], t[0]))
        taken: list[tuple[int, int, str, str]] = []
        starts: list[int] = []
        for s, e, _p, kind, key in spans:
            if s >= e:
                continue
            i = bisect.bisect_right(starts, s)
            if i > 0 and taken[i - 1][1] > s:
                continue
            if i < len(taken) and taken[i][0] < e:
                continue
            starts.insert(i, s)
            taken.insert(i, (s, e, kind, key))
        counts: Counter[str] = Counter()
        numbering: dict[str, dict[str, int]] = {}
        parts: list[str] = []
        pos = 0
        for s, e, kind, key in taken:
            parts.append(text[pos:s])
            if kind == "person":  # the corpus-wide placeholder of a learned person
                parts.append(key)
            else:
                ids = numbering.setdefault(kind, {})
                n = ids.get(key)
                if n is None:
                    n = ids[key] = len(ids) + 1
                parts.append(placeholder(kind, n))
            pos = e
            counts[kind] += 1
        parts.append(text[pos:])
        return "".join(parts), counts

    def _residual(self, out: str) -> str | None:
        """A secret pattern (without the word-boundary condition) that still matches after replacement."""
        for gate, rules in _TOKEN_RULES:
            if isinstance(gate, str):
                if gate not in out:
                    continue
            elif gate.search(out) is None:
                continue
            for rule, _strict, loose in rules:
                if rule.prefix in out:
                    for m in loose.finditer(out):
                        if rule.check is None or rule.check(m.group()):
                            return f"residual {rule.kind} after scrubbing"
        if "PRIVATE KEY" in out:
            for m in _PK_BEGIN.finditer(out):
                body = _PK_BODY.match(out, m.end())
                if body and sum(len(t) for t in _B64_RUN.findall(body.group())) >= 40:
                    return "residual private_key after scrubbing"
        return None


SECRET_KINDS_SET = frozenset(SECRET_KINDS) | {"email"}


def _people_outside_emails(
    spans: list[tuple[int, int, int, str, str]],
) -> list[tuple[int, int, int, str, str]]:
    """Spans without the learned names that sit inside a larger email address (`x@brandt.dev` for a
    person Brandt): replaced alone they would leave an address behind; the email's own span wins."""
    emails = sorted((s, e) for s, e, _p, kind, _k in spans if kind == "email")
    if not emails:
        return spans
    starts = [s for s, _e in emails]
    kept = []
    for span in spans:
        s, e, _p, kind, _k = span
        if kind == "person":
            i = bisect.bisect_right(starts, s) - 1
            if i >= 0 and emails[i][1] >= e and emails[i] != (s, e):
                continue
        kept.append(span)
    return kept


# --------------------------------------------------------------------------------------------------
# JSONL


def scrub_jsonl(
    in_path: str | Path,
    out_path: str | Path,
    *,
    field: str | Sequence[str] = "text",
    scrubber: Scrubber | None = None,
) -> Counter[str]:
    """Scrub `field` (or several) of each JSON object of a JSONL file, streaming, other fields kept.

    Returns a Counter: `docs` (objects written), each finding kind, `bad_line` (not UTF-8, not JSON,
    or not an object: dropped, never passed through), `unsafe` (a document the scrubber could not
    make safe: dropped) and `no_field` (objects without the field, written unchanged).
    """
    sc = scrubber or Scrubber()
    fields = (field,) if isinstance(field, str) else tuple(field)
    totals: Counter[str] = Counter()
    with open(in_path, "rb") as src, open(out_path, "w", encoding="utf-8", newline="\n") as dst:
        for raw in src:
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                totals["bad_line"] += 1
                continue
            if not isinstance(obj, dict):
                totals["bad_line"] += 1
                continue
            present = [f for f in fields if isinstance(obj.get(f), str)]
            if not present:
                totals["no_field"] += 1
            doc_counts: Counter[str] = Counter()
            unsafe = None
            for f in present:
                res = sc.scrub(obj[f])
                if res.unsafe:
                    unsafe = res.unsafe
                    break
                obj[f] = res.text
                doc_counts.update(res.counts)
            if unsafe:
                totals["unsafe"] += 1
                continue
            totals.update(doc_counts)
            totals["docs"] += 1
            dst.write(json.dumps(obj, ensure_ascii=False))
            dst.write("\n")
    return totals
