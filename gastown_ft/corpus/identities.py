"""People in the corpus: names learned from every document, one placeholder per person everywhere.

The per-document scrubber (scrub.py) sees one text at a time, so a username it removes from
`/Users/NAME/...` survives in the next document as an assignee, a `~/src/NAME` path, a `NAME@host`
prompt or a `Co-Authored-By` line. Identities are therefore handled in two passes over the corpus:

1. learn: `learn(text, add)` collects evidence from the forms that say "this is a person":
   home paths (`/Users/NAME`, `/home/NAME`, `C:\\Users\\NAME`, Claude Code's `-Users-NAME-` project
   dirs, `USER=NAME`), personal email addresses, git trailers (`Co-Authored-By:`, `Signed-off-by:`,
   `Author:` ... `Name <email>`), actor fields (`assignee`, `owner`, `created_by`, `actor`, `author`,
   ...), crew addresses (`<rig>/crew/NAME`, `NAME@crew.<rig>...`, `GT_CREW=NAME`), shell prompts
   (`NAME@host:~`) and Apple hostnames (`Maras-MacBook-Pro`). Evidence is a set of small tuples:
   memory grows with the number of people, not documents.
2. replace: `IdentityMap.build(evidence)` groups the evidence into people (an email, the name in
   its trailer, the username that is that name's first name plus an initial, ...), numbers them
   `person-1`, `person-2`, ... in an order that depends only on who they are, and the scrubber
   replaces every form of each person with that placeholder, in every document.

Crew members are people (Gas Town crew are named, human-directed workers); polecat names are agent
handles (the namepool themes below, and any name seen as `<rig>/polecats/NAME`) and are never learned.
`keep` names (config `[scrub] keep_names`) are never learned either.

Where a name is replaced: a distinctive name (`maraq`, `Mara Quill`, an email) everywhere, as a
whole word, any case. A name that is also a common word or code token (`max`, `dom`, `debug`), a
polecat handle or shorter than 3 letters only in identity contexts (home paths, `crew/NAME`,
`NAME@`, actor fields, trailers, hostnames): replacing `max` everywhere would rewrite `max_tokens`
and `--max-retries`. In prose such a name goes only where it reads as a person: an `@max` mention,
after words that introduce one (`assigned to max`, `thanks max`, `cc max`), next to another learned
person in a list (`joe, max`), or capitalized as a name in mid-sentence (`asked Max to`), but not at
the start of a sentence, line or table cell (`Max retries`), not in a Title Case run (`Mad Max`,
`Claude Max`), not after an article (`the Max value`) and not before a number or code (`Max 3`,
`Max.x`).

Placeholders look like agent names (`person-3`), so `gastown/crew/person-3` is still an agent
address that roles.py reads as crew, and a command that names it still parses.
"""

from __future__ import annotations

import builtins
import hashlib
import keyword
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gastown_ft.corpus.scrub import (
    _EMAIL_DOMAIN,
    _EMAIL_LOCAL_CHARS,
    _ENC_HOME,
    _FILE_EXTENSIONS,
    _GENERIC_USERS,
    _HOME,
    _NON_PERSONAL_EMAIL_LOCAL,
    _USER_ENV,
    _USERS,
    _WIN_USERS,
    _ascii_lower,
    _drop_escape,
    _is_placeholder_value,
    _personal_login,
    _word_before,
)

__all__ = ["Evidence", "IdentityMap", "learn", "learn_all", "PLACEHOLDER_PREFIX", "POLECAT_NAMES"]

# (kind, value, linked value or ""): kind is "user" (a login), "name" (a full name, lowercase, single
# spaces), "email" (lowercase), "crew" (a crew member's name) or "handle" (a polecat: never a person).
Evidence = tuple[str, str, str]
AddEvidence = Callable[[Evidence], None]

PLACEHOLDER_PREFIX = "person-"
_PLACEHOLDER = re.compile(r"person-\d+", re.I)

# Gas Town's polecat namepool themes (gastown internal/polecat/namepool.go, BuiltinThemes).
POLECAT_NAMES = frozenset(
    {
        # mad-max (the default)
        "furiosa", "nux", "slit", "rictus", "dementus", "capable", "toast", "dag", "cheedo", "valkyrie",
        "keeper", "morsov", "ace", "warboy", "imperator", "organic", "coma", "splendid", "angharad", "max",
        "immortan", "bullet", "toecutter", "goose", "nightrider", "glory", "scrotus", "chumbucket",
        "corpus", "dinki", "prime", "vuvalini", "rockryder", "wretched", "buzzard", "gastown",
        "bullet-farmer", "citadel", "wasteland", "fury", "road-warrior", "interceptor", "blackfinger",
        "wraith", "witness", "chrome", "shiny", "mediocre", "guzzoline", "aqua-cola",
        # minerals
        "obsidian", "quartz", "jasper", "onyx", "opal", "topaz", "garnet", "ruby", "amber", "jade",
        "pearl", "flint", "granite", "basalt", "marble", "shale", "slate", "pyrite", "mica", "agate",
        "malachite", "turquoise", "lapis", "emerald", "sapphire", "diamond", "amethyst", "citrine",
        "zircon", "peridot", "coral", "jet", "moonstone", "sunstone", "bloodstone", "rhodonite",
        "sodalite", "hematite", "magnetite", "calcite", "fluorite", "selenite", "kyanite", "labradorite",
        "amazonite", "chalcedony", "carnelian", "aventurine", "chrysoprase", "heliodor",
        # wasteland
        "rust", "nitro", "guzzle", "thunder", "dust", "scavenger", "radrat", "ghoul", "mutant", "raider",
        "vault", "pipboy", "nuka", "brahmin", "deathclaw", "mirelurk", "synth", "institute", "enclave",
        "brotherhood", "minuteman", "railroad", "atom", "crater", "foundation", "refuge", "settler",
        "wanderer", "courier", "lone", "chosen", "tribal", "khan", "legion", "ncr", "ranger", "overseer",
        "sentinel", "paladin", "scribe", "initiate", "elder", "lancer", "knight", "squire", "proctor",
    }
)  # fmt: skip

# Gas Town's own words: an actor or crew "name" that is one of these is a role, not a person.
_ROLE_WORDS = frozenset(
    {
        "mayor", "deacon", "witness", "refinery", "polecat", "polecats", "crew", "dog", "dogs", "boot",
        "overseer", "human", "town", "rig", "hq", "daemon", "system", "gastown", "beads", "bd", "gt",
        "agent", "agents", "person", "people", "unknown", "none", "nobody", "everyone", "all", "self",
        "operator", "owner", "maintainer", "maintainers", "team", "worker", "workers", "manager",
        "member", "members", "hook", "convoy", "molecule", "formula", "wisp", "patrol",
    }
)  # fmt: skip

# Names that are also common English words or code tokens: replaced only in identity contexts.
_WORDLIKE_NAMES = frozenset(
    {
        "max", "min", "will", "bill", "mark", "grant", "chase", "rose", "ray",
        "guy", "art", "rich", "may", "june", "april", "august", "dawn", "eve", "faith", "hope", "joy",
        "grace", "lily", "ruby", "pearl", "amber", "jade", "crystal", "daisy", "iris", "ivy", "holly",
        "violet", "hazel", "olive", "ginger", "honey", "candy", "sandy", "rusty", "dusty", "sunny",
        "sky", "summer", "autumn", "winter", "storm", "river", "forest", "stone", "flint", "clay",
        "cliff", "dale", "glen", "heath", "brook", "rocky", "chip", "buck", "buddy", "champ", "duke",
        "king", "prince", "queen", "rex", "major", "sterling", "penny", "page", "bishop", "carter",
        "cook", "cooper", "fisher", "hunter", "mason", "porter", "taylor", "turner", "walker", "ward",
        "wells", "young", "baker", "bell", "brown", "green", "white", "black", "gray", "grey", "long",
        "short", "hall", "hill", "lane", "lake", "marsh", "moore", "north", "south", "west", "wood",
        "woods", "field", "fields", "price", "love", "nick", "pat", "sam", "don", "dom",
        "rob", "bob", "sue", "kit", "van", "gene",
        "sage", "pepper", "mango", "julia", "ada", "dart", "swift", "perl", "lua",
        "elm", "nim", "node", "deno", "go", "rust", "env", "tmp", "log", "map", "set", "get",
        "put", "key", "val", "var", "cat", "cut", "dash", "bash", "zsh", "fish", "main", "master",
        "dev", "test", "prod", "home", "work", "new", "old", "local", "remote", "origin", "upstream",
        "server", "client", "host", "box", "mac", "air", "pro", "mini", "one", "two", "first", "last",
        "next", "back", "up", "down", "left", "right", "top", "bottom", "help", "info", "debug",
        "claude", "copilot", "gemini", "codex", "cursor", "bot", "robot", "github", "gitlab", "git",
        "mail", "email", "admin", "support", "hello", "contact", "team", "sales", "security", "office",
    }
) | frozenset(w.lower() for w in dir(builtins) if w.isalpha()) | frozenset(keyword.kwlist)  # fmt: skip

# Addresses nobody has: documentation domains (RFC 2606 / 6761) and the usual template ones.
_EXAMPLE_DOMAINS = ("example.com", "example.org", "example.net", "company.com", "domain.com", "email.com")
_EXAMPLE_TLDS = ("example", "invalid", "test", "localhost", "local")
_ROLE_MAILBOXES = frozenset(
    {
        "support", "info", "admin", "security", "hello", "team", "contact", "sales", "help", "office",
        "postmaster", "hostmaster", "webmaster", "abuse", "billing", "jobs", "press", "privacy", "legal",
        "notifications", "notification", "alerts", "donotreply", "do-not-reply", "mailer-daemon", "dev",
        "devs", "ops", "owner", "user", "users", "test", "you", "me", "name", "first.last", "firstname",
        "firstname.lastname", "your.name", "john.doe", "jane.doe", "foo", "bar", "someone", "somebody",
    }
)  # fmt: skip
# Words that mark a template, not a name ("Your Name <you@example.com>", "contributor-name").
_TEMPLATE_WORDS = frozenset(
    {"your", "their", "name", "full", "contributor", "author", "user", "example", "someone", "first", "last"}
)
_BOT_MARKERS = ("[bot]", "bot@", "claude", "copilot", "gemini", "codex", "cursor", "dependabot", "renovate")

# Keys whose value is who did something (beads rows, events, GitHub-like JSON, rendered beads).
_ACTOR_KEYS = (
    "assignee", "owner", "created_by", "closed_by", "updated_by", "deleted_by", "actor", "sender",
    "author", "committer", "reviewer", "requester", "reporter",
)  # fmt: skip
_ACTOR_ALT = "|".join(_ACTOR_KEYS)
_Q = r"\\{0,7}[\"']?"  # an optional quote, escaped at any JSON depth
# Quoted values only (JSON, YAML, TOML): `assignee: recipient` in prose and `Actor: target,` in Go are
# not people; rendered beads (`owner: x@y.z`, `assignee: rig/crew/x`) are learned from their forms.
_ACTOR_VALUE = re.compile(
    rf"(?<![A-Za-z0-9_])(?:{_ACTOR_ALT}){_Q}[ \t]*[:=][ \t]*\\{{0,7}}[\"'](?P<v>[^\s\"'\\][^\"'\\\n\r]{{0,119}})\\{{0,7}}[\"']",
    re.I,
)
_TRAILER_KEY_CHARS = "abcdefghijklmnopqrstuvwxyz-"
_TRAILER_KEYS = (
    r"co-authored-by|signed-off-by|reviewed-by|acked-by|tested-by|reported-by|suggested-by|helped-by|"
    r"author|committer"
)
# `Key: Name <email>` (git trailers and `git log` headers), the email optional for the *-by trailers.
_TRAILER = re.compile(
    rf"(?<![A-Za-z0-9_\-])(?P<k>{_TRAILER_KEYS})[ \t]*:[ \t]*"
    r"(?P<name>[^<>\n\r\\\"]{1,100}?)[ \t]*"
    r"(?:(?:<|\\u003[cC])(?P<email>[^<>\s\\\"]{3,254}?)(?:>|\\u003[eE])|(?=\\[nr]|[\r\n\"]|$))",
    re.I,
)
_NAME_TOKEN = re.compile(r"[^\W\d_][^\W\d_'’\-]*(?:['’\-][^\W\d_]+)*")
_INITIAL = re.compile(r"[^\W\d_]\.?")
_AGENT_NAME = r"[A-Za-z][A-Za-z0-9_\-]{0,63}"
_NOT_A_RIG = frozenset(
    {"internal", "cmd", "pkg", "src", "lib", "docs", "doc", "test", "tests", "testdata", "templates", "api"}
)
_RIG_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"
_CREW_SLASH = re.compile(rf"/crew/(?P<n>{_AGENT_NAME})(?![A-Za-z0-9_]|\.[A-Za-z0-9])")
_POLECAT_ADDRESS = re.compile(rf"/polecats/(?P<n>{_AGENT_NAME})(?![A-Za-z0-9_])")
_GT_CREW = re.compile(rf"GT_CREW{_Q}[ \t]*[=:][ \t]*{_Q}(?P<n>{_AGENT_NAME})")
# A shell prompt, from its "@": user@host:~/x, user@host:/x, or zsh's `user@host dir %`.
_PROMPT_TAIL = re.compile(
    r"@[A-Za-z][A-Za-z0-9\-]{0,62}(?::(?=[~/])|[ \t][~/A-Za-z0-9._\-]{1,64}[ \t][%$#](?=[ \t]|$))"
)
_MACHINE_TLDS = (".local", ".lan", ".localdomain", ".home.arpa")
_PROMPT_USER = re.compile(r"[a-z][a-z0-9._\-]{1,31}")
# macOS names a machine after its owner: "Mara's MacBook Pro" -> host `Maras-MacBook-Pro`.
_APPLE_HOST = re.compile(
    r"(?<![A-Za-z0-9])(?P<n>[A-Z][a-z]{1,30}?)(?:'|’)?s-(?:MacBook|MBP|iMac|Mac-mini|Mac-Pro|Mac-Studio|Air)(?![a-z])"
)


# --------------------------------------------------------------------------------------------------
# Pass 1: learning


def learn(text: str, add: AddEvidence) -> None:
    """Add the identity evidence found in one text (a document's text, title, path or meta JSON).

    Like the scrubber, every pattern starts from a literal found with `str.find` (or a regex with a
    literal prefix), and the name before it is read backwards."""
    if not text:
        return
    if "/home/" in text or "/Users/" in text or "Users\\" in text:
        for pat in (_HOME, _USERS, _WIN_USERS):
            for m in pat.finditer(text):
                _add_login(m.group("u").rstrip("."), add)
    if "-home-" in text or "-Users-" in text:
        for m in _ENC_HOME.finditer(text):
            if not _word_before(text, m.start()):
                _add_login(m.group("u"), add)
    for kw in ("USER", "LOGNAME"):
        for i in _find_all(text, kw):
            m = _USER_ENV.match(text, i)
            if m is not None:
                _add_login(m.group("u"), add)
    if "@" in text:
        _learn_at(text, add)
    if "MacBook" in text or "iMac" in text or "MBP" in text or "Mac-" in text or "-Air" in text:
        for m in _APPLE_HOST.finditer(text):
            _add_login(m.group("n"), add)
    if "/crew/" in text:
        for m in _CREW_SLASH.finditer(text):
            rig = _drop_escape(text, m.start(), _read_back(text, m.start(), _RIG_CHARS, 64))
            if rig[:1].isalnum() and rig.lower() not in _NOT_A_RIG:
                _add_agent("crew", m.group("n"), add)
    if "GT_CREW" in text:
        for m in _GT_CREW.finditer(text):
            _add_agent("crew", m.group("n"), add)
    if "/polecats/" in text:
        for m in _POLECAT_ADDRESS.finditer(text):
            add(("handle", m.group("n").lower(), ""))
    lower = _ascii_lower(text)
    for kw in ("-by", "author", "committer"):
        for i in _find_all(lower, kw):
            start = i - len(_read_back(lower, i, _TRAILER_KEY_CHARS, 16)) if kw == "-by" else i
            m = _TRAILER.match(text, start)
            if m is None:
                continue
            email = (m.group("email") or "").lower()
            if email or m.group("k").lower() not in ("author", "committer"):  # `Author: see below`
                _learn_named(m.group("name"), email, add)
    for kw in _ACTOR_KEYS:
        for i in _find_all(lower, kw):
            m = _ACTOR_VALUE.match(text, i)
            if m is not None:
                _learn_actor(m.group("v"), add)


def _find_all(text: str, needle: str):
    i = text.find(needle)
    while i != -1:
        yield i
        i = text.find(needle, i + len(needle))


def _read_back(text: str, end: int, chars: str, limit: int) -> str:
    """The run of `chars` that ends at `end` (at most `limit` long)."""
    chunk = text[end - limit if end > limit else 0 : end]
    return chunk[len(chunk.rstrip(chars)) :]


def _learn_at(text: str, add: AddEvidence) -> None:
    """Emails and shell prompts, from each "@": the local part or user is read backwards."""
    for i in _find_all(text, "@"):
        local = _drop_escape(text, i, _read_back(text, i, _EMAIL_LOCAL_CHARS, 64)).lstrip(".-+")
        if not local:
            continue
        d = _EMAIL_DOMAIN.match(text, i)
        if d is not None and d.group("d").lower().endswith(_MACHINE_TLDS) and "gastown." not in d.group("d"):
            _add_login(local, add)  # user@Maras-MacBook-Pro.local: a login on a machine
        elif d is not None:
            _learn_email(local.rstrip("."), d.group("d"), add)
        elif _PROMPT_TAIL.match(text, i) and _PROMPT_USER.fullmatch(local):
            _add_login(local, add)


def _add_login(user: str, add: AddEvidence) -> None:
    login = _login(user)
    if login:
        add(("user", login, ""))


def _login(user: str) -> str | None:
    """The lowercase login if `user` names a person (not root, a role, a polecat or a service)."""
    low = user.lower()
    if (
        len(low) < 2
        or low in _GENERIC_USERS
        or low in _ROLE_WORDS
        or low in POLECAT_NAMES
        or low.startswith(".")
        or _PLACEHOLDER.fullmatch(low)
        or not any(c.isalpha() for c in low)
        or not _personal_login(user, _GENERIC_USERS)
    ):
        return None
    return low


def _add_agent(kind: str, name: str | None, add: AddEvidence) -> None:
    if not name:
        return
    low = name.lower()
    if low in _ROLE_WORDS or _PLACEHOLDER.fullmatch(low) or _is_placeholder_value(name):
        return
    if kind == "crew" and (low in _GENERIC_USERS or low in _TEMPLATE_WORDS):
        return
    add((kind, low, ""))


def _email_kind(local: str, domain: str) -> str | None:
    """'person', 'crew', 'handle' or None (not anybody's: a robot, a role mailbox, an example)."""
    low_local, low_domain = local.lower(), domain.lower()
    labels = low_domain.split(".")
    if labels[0] == "crew":
        return "crew"
    if labels[0] == "polecats":
        return "handle"
    if low_domain.endswith("gastown.local"):
        return None  # mayor@hq.gastown.local, witness@<rig>.gastown.local: roles
    if labels[-1] in _FILE_EXTENSIONS or labels[0].isdigit():
        return None
    if low_domain in _EXAMPLE_DOMAINS or labels[-1] in _EXAMPLE_TLDS or labels[-2:-1] == ["example"]:
        return None
    if low_local in _NON_PERSONAL_EMAIL_LOCAL or low_local in _ROLE_MAILBOXES:
        return None
    if _is_placeholder_value(local) or any(b in f"{low_local}@{low_domain}" for b in _BOT_MARKERS):
        return None
    if "noreply" in low_local or "no-reply" in low_local:
        return None
    return "person"


def _learn_email(local: str, domain: str, add: AddEvidence) -> None:
    kind = _email_kind(local, domain)
    if kind == "person":
        add(("email", f"{local}@{domain}".lower(), ""))
    elif kind is not None:
        _add_agent(kind, local, add)


def _learn_named(raw: str, email: str, add: AddEvidence) -> None:
    """`Name`, `Name <email>`, `jack (crew)`: a person, a crew member, or nothing (a bot, a template)."""
    name = raw.strip().strip("\"'`*")
    low = name.lower()
    if not name or "/" in name or any(b in low for b in _BOT_MARKERS):
        return  # a bot, or an agent address (learned from its own pattern)
    if email and any(b in email for b in _BOT_MARKERS):
        return
    if _TEMPLATE_WORDS.intersection(re.split(r"[\s_.\-]+", low)):
        return  # "Your Name", "contributor-name"
    if email and "@" in email and _email_kind(*email.split("@", 1)) is None and "noreply" in email:
        return
    if low.endswith("(crew)"):
        _add_agent("crew", name[: -len("(crew)")].strip(), add)
        return
    if low.endswith("(polecat)"):
        add(("handle", low[: -len("(polecat)")].strip(), ""))
        return
    person_email = email if email and "@" in email and _email_kind(*email.split("@", 1)) == "person" else ""
    tokens = name.split()
    if len(tokens) == 1:
        if "@" in name:
            _learn_at(name, add)
            return
        login = _login(name)
        if login:
            add(("user", login, person_email))
        return
    full = _full_name(tokens)
    if full is None:
        return
    add(("name", full, person_email))


def _full_name(tokens: list[str]) -> str | None:
    """The lowercase name of 2-4 name tokens (initials dropped), or None if it is not a person's name."""
    words = [t for t in tokens if not _INITIAL.fullmatch(t)]
    if not 2 <= len(words) <= 4 or not all(_NAME_TOKEN.fullmatch(w) for w in words):
        return None
    low = [w.lower() for w in words]
    if any(w in _ROLE_WORDS or w in _TEMPLATE_WORDS for w in low):
        return None
    if all(w in _WORDLIKE_NAMES for w in low) or (
        all(w.islower() for w in words) and any(w in _WORDLIKE_NAMES for w in low)
    ):
        return None  # "big data", "open source"-like phrases, not a name
    return " ".join(low)


def _learn_actor(value: str, add: AddEvidence) -> None:
    v = value.strip()
    if not v or _is_placeholder_value(v) or v.endswith("…"):
        return  # nobody, or a value the beads reader clipped (`gastown/crew/ma…`): part of a name
    if "<" in v or "\\u003c" in v.lower():
        m = re.match(r"(?P<n>[^<\\]+?)\s*(?:<|\\u003[cC])(?P<e>[^>\\]+)", v)
        if m:
            _learn_named(m.group("n"), m.group("e").lower(), add)
        return
    if "@" in v:
        _learn_at(v, add)
        return
    if "/" in v:
        return  # an agent address: crew and polecats are learned from the address patterns
    low = v.lower()
    if low.startswith("polecat-"):
        add(("handle", low[len("polecat-") :], ""))
        return
    if " " in v:
        full = _full_name(v.split())
        if full is not None:
            add(("name", full, ""))
        return
    _add_login(v, add)


def learn_all(texts: Iterable[str]) -> set[Evidence]:
    """The evidence of many texts (a convenience for tests and small inputs)."""
    found: set[Evidence] = set()
    for t in texts:
        learn(t, found.add)
    return found


# --------------------------------------------------------------------------------------------------
# Pass 2: people and their placeholders


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def add(self, x: str) -> None:
        self.parent.setdefault(x, x)

    def find(self, x: str) -> str:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: str, b: str) -> None:
        self.add(a)
        self.add(b)
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _local_tokens(email: str) -> list[str]:
    """The name words of an email's local part (`mara.quill` -> mara, quill); none where it is not
    made of 1-3 plain words (`saffron0_14tundra` is a handle, not a name)."""
    local = email.split("@", 1)[0].split("+", 1)[0]
    if not re.fullmatch(r"[a-z]{2,}(?:[._\-][a-z]{2,}){0,2}", local):
        return []
    return re.split(r"[._\-]", local)


def _logins_of(full: str) -> set[str]:
    """Logins people make of their name: mara, maraq, maraquill, mquill, quill, mara.quill."""
    parts = full.split()
    first, last = parts[0], parts[-1]
    return {first, last, first + last, first + last[0], first[0] + last, f"{first}.{last}", f"{first}_{last}"}


def wordlike(name: str) -> bool:
    """Whether a single-token name is also a common word or code token (then replaced only in context)."""
    return name in _WORDLIKE_NAMES


@dataclass
class IdentityMap:
    """People (clusters of learned names) and how to find each of their forms in a text.

    `everywhere`: surface (lowercase) -> placeholder, matched as a whole word in any text.
    `context`: surface -> placeholder, matched only in identity contexts (see the module docstring).
    """

    everywhere: dict[str, str]
    context: dict[str, str]
    people: int
    fingerprint: str
    _patterns: re.Pattern[str] | None = field(default=None, repr=False)

    @classmethod
    def build(
        cls,
        evidence: Iterable[Evidence],
        *,
        keep: Iterable[str] = (),
        extra: Iterable[str] = (),
    ) -> IdentityMap:
        keep_set = {k.strip().lower() for k in keep if k.strip()}
        ev = sorted(set(evidence))
        handles = POLECAT_NAMES | {v for k, v, _ in ev if k == "handle"}
        uf = _UnionFind()
        kinds: dict[str, str] = {}

        def node(kind: str, value: str) -> bool:
            if not value or value in keep_set:
                return False
            if kind == "user" and value in handles:
                return False  # a polecat handle seen as a bare actor: an agent
            if kind == "email" and value.split("@", 1)[0] in keep_set:
                return False
            uf.add(value)
            kinds.setdefault(value, kind)
            return True

        for kind, value, linked in ev:
            if kind == "handle" or not node(kind, value):
                continue
            if linked and node("email", linked):
                uf.union(value, linked)
            if kind == "email":
                toks = _local_tokens(value)
                if len(toks) >= 2:
                    full = _full_name(toks)
                    if full and node("name", full):
                        uf.union(value, full)
                elif len(toks) == 1 and toks[0] == value.split("@", 1)[0]:
                    if node("user", toks[0]):
                        uf.union(value, toks[0])
        for x in extra:
            x = x.strip().lower()
            if x and x not in keep_set:
                uf.add(x)
                kinds[x] = "extra"
        # A login that is its owner's name (maraq = Mara Q., ivo = Ivo B.) is the same person.
        logins = {v for v, k in kinds.items() if k in ("user", "crew")}
        for v, k in sorted(kinds.items()):
            if k == "name":
                for login in sorted(_logins_of(v) & logins):
                    uf.union(v, login)

        clusters: dict[str, list[str]] = {}
        for v in sorted(kinds):
            clusters.setdefault(uf.find(v), []).append(v)
        # Numbered in an order that depends only on who is in each cluster, not on reading order.
        order = sorted(
            clusters.values(), key=lambda members: hashlib.sha256("\n".join(members).encode()).hexdigest()
        )
        everywhere: dict[str, str] = {}
        context: dict[str, str] = {}
        for i, members in enumerate(order, 1):
            ph = f"{PLACEHOLDER_PREFIX}{i}"
            for v in members:
                kind = kinds[v]
                surfaces = [v]
                if kind == "name":
                    surfaces += [t for t in v.split() if len(t) >= 3 and t not in keep_set]
                for s in surfaces:
                    if kind == "extra" or "@" in s or " " in s:
                        target = everywhere
                    elif len(s) < 3 or wordlike(s) or s in handles or s in _ROLE_WORDS:
                        target = context
                    else:
                        target = everywhere
                    target.setdefault(s, ph)  # a surface shared by two people: the first number
        for s in list(context):
            if s in everywhere:
                del context[s]
        fp = hashlib.sha256(repr((sorted(everywhere.items()), sorted(context.items()))).encode()).hexdigest()
        return cls(everywhere, context, len(order), fp)

    # ---- replacement ------------------------------------------------------------------------------

    def find(self, text: str, add: Callable[[tuple[int, int, str]], None], lower: str | None = None) -> None:
        """Add (start, end, placeholder) for every form of a learned person in `text`.

        `lower`: `text` lowercased with the same indices (the scrubber has it already). Each name is
        found with `str.find` in `lower` (one scan per name, memchr-fast), then confirmed: a whole
        word for the names replaced everywhere, an identity context just before it for the others."""
        if not text or not (self.everywhere or self.context):
            return
        if self._patterns is None:
            self._patterns = _names_pattern([*self.everywhere, *self.context])
        low = _ascii_lower(text) if lower is None else lower

        def found(s: int, e: int, ph: str) -> None:
            # NAME@domain.tld is an address: all of it goes (`person-3@crew.gastown.local` would
            # still be an email); NAME@host of a prompt keeps its host.
            if text.startswith("@", e):
                d = _EMAIL_DOMAIN.match(text, e)
                if d is not None:
                    e = d.end()
            add((s, e, ph))

        names = self._patterns
        pos = 0
        while True:
            m = names.search(low, pos)
            if m is None:
                break
            i, e = m.span()
            pos = e
            if not _left_ok(text, i):
                pos = i + 1  # glued to a word: a name may still start inside this match
                continue
            key = m.group()
            ph = self.everywhere.get(key) or self.everywhere.get(_SEPARATORS.sub(" ", key))
            if ph is not None:
                found(i, e, ph)
                continue
            ph = self.context.get(key)
            if ph is None:
                continue
            after = text[e : e + 2]
            if after[:1] == "@":  # NAME@host, NAME@domain
                if _left_ok(text, i, _EMAIL_LOCAL_CHARS) and after[1:].isalnum():
                    found(i, e, ph)
                continue
            window = text[i - 80 if i > 80 else 0 : i]
            if _CONTEXT_BEFORE.search(window) and not (after[:1] in ".-" and after[1:].isalnum()):
                found(i, e, ph)
            elif _ENCODED_HOME_BEFORE.search(window) and (not after or after[0] in "-/\\\"' \t\n"):
                found(i, e, ph)
            elif self._a_person_in_prose(text, i, e, window):
                found(i, e, ph)
        if "-" in text:
            for m in _DEVICE.finditer(low):
                self._host(text, low, m.start(), add)

    def _a_person_in_prose(self, text: str, i: int, e: int, window: str) -> bool:
        """Whether a common-word name at text[i:e] reads as a person in prose (see the module doc)."""
        if _code_after(text, e):
            return False
        if i and text[i - 1] == "@":  # a mention; `x@max` would be an address, not one
            return i < 2 or text[i - 2] not in _EMAIL_LOCAL_CHARS
        if _PERSON_BEFORE.search(window):
            return True
        if self._next_to_a_person(text, i, e, window):
            return True
        word = text[i:e]
        if not (word[:1].isupper() and word[1:].islower()):
            return False
        before = _WORD_BEFORE.search(window)
        if _POSSESSIVE.match(text, e) and (before is None or before.group("w").islower()):
            return True  # `Max's branch` (not `Mad Max's`)
        if before is None or before.group("w").lower() in _ARTICLES or not before.group("w").islower():
            return False  # a sentence, line or cell starts here; Title Case; `the Max value`
        nxt = _WORD_AFTER.match(text, e)
        return nxt is None or not (nxt.group("w")[:1].isupper() or nxt.group("w")[:1].isdigit())

    def _next_to_a_person(self, text: str, i: int, e: int, window: str) -> bool:
        """`joe, max` / `max and joe`: listed beside a name already known to be a person."""
        m = _LISTED_BEFORE.search(window)
        if m is not None and self._is_person(m.group("w")):
            return True
        m = _LISTED_AFTER.match(text, e)
        return m is not None and self._is_person(m.group("w"))

    def _is_person(self, word: str) -> bool:
        low = word.lower()
        return low in self.everywhere or bool(_PLACEHOLDER.fullmatch(low))

    def _host(self, text: str, low: str, i: int, add: Callable[[tuple[int, int, str]], None]) -> None:
        """A hostname built from a name: `maraq-mbp`, `Maras-MacBook-Pro`, `mara's-imac` (the
        name read back from the device word; a possessive s goes with the name)."""
        word = _read_back(low, i, _NAME_CHARS, 40)
        s = i - len(word)
        if not word or not _left_ok(text, s):
            return
        for key in (word, word[:-1] if word.endswith("s") else "", word[:-2] if word.endswith("'s") else ""):
            ph = key and (self.everywhere.get(key) or self.context.get(key))
            if ph:
                add((s, i, ph))
                return

    def as_stats(self) -> dict[str, int]:
        """Counts only: the learned names themselves never go into a report."""
        return {
            "people": self.people,
            "names_everywhere": len(self.everywhere),
            "names_in_context": len(self.context),
        }


_SEPARATORS = re.compile(r"[ \t]+|[._\-]")
# Device words of machine names (macOS: "Mara's MacBook Pro" -> Maras-MacBook-Pro), in lowercase text.
_DEVICE = re.compile(
    r"-(?:macbook|mbp|imac|mac-?mini|mac-pro|mac-studio|laptop|desktop|pc|thinkpad|xps|workstation)(?![a-z0-9])"
)
_NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789'"
_WORD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_HEX = frozenset("0123456789abcdefABCDEF")
# What comes right before a person's name in an identity context (a name that is also a common
# word, `max`, is replaced only after one of these): home paths, crew addresses and tmux sessions,
# env vars, quoted actor fields and git trailers.
_NOT_GLUED = r"(?:(?<![A-Za-z0-9_\-])|(?<=\\[ntr]))"  # not inside a word (a \n escape's n is no word)
_CONTEXT_BEFORE = re.compile(
    r"(?:/home/|/Users/|Users\\{1,8}|~/(?:[A-Za-z0-9._\-]+/){0,4}"
    r"|(?:(?<![A-Za-z0-9_])|(?<=\\[ntr]))crew[/\-]"  # rig/crew/NAME, gt-<rig>-crew-NAME (bead, session)
    rf"|{_NOT_GLUED}crew (?:member|worker)[ \t]+\**"
    rf"|{_NOT_GLUED}crew (?:add|start|stop|restart|at|attach|status|remove|rm|rename|refresh|pristine)[ \t]+"
    rf"|GT_CREW{_Q}[ \t]*[=:][ \t]*{_Q}"
    rf"|{_NOT_GLUED}(?:USER|USERNAME|LOGNAME)(?:=|\\{{0,7}}\"?:[ \t]*\\{{0,7}}\")"
    rf"|{_NOT_GLUED}(?:{_ACTOR_ALT}){_Q}[ \t]*[:=][ \t]*{_Q}"
    rf"|{_NOT_GLUED}(?:{_TRAILER_KEYS})[ \t]*:[ \t]*)$",
    re.I,
)
_ENCODED_HOME_BEFORE = re.compile(r"-(?:home|Users)-$")  # Claude Code's project dirs: -Users-NAME-gt
# Prose that introduces a person right before a name: `assigned to max`, `thanks, max`, `cc: max`.
_PERSON_BEFORE = re.compile(
    r"(?<![A-Za-z0-9_\-])(?:(?:re)?assigned[ \t]+to|handed[ \t]+(?:off[ \t]+)?to|hand[ \t]+off[ \t]+to"
    r"|(?:reviewed|approved|reported|requested|filed|authored|written|opened|raised|merged)[ \t]+by"
    r"|thanks|thank[ \t]+you|cc|ping|hi|hey|dear|ask(?:ed)?)[ \t]*[,:]?[ \t]+$",
    re.I,
)
# The word just before, one space away (columns of a help text or table are not a sentence).
_WORD_BEFORE = re.compile(r"(?<![A-Za-z0-9_\-])(?P<w>[A-Za-z][A-Za-z'’]*) $")
_POSSESSIVE = re.compile(r"['’]s(?![A-Za-z0-9_])")
_WORD_AFTER = re.compile(r"[ \t]+(?P<w>[A-Za-z0-9]+)")
_ARTICLES = frozenset({"the", "a", "an", "this", "that", "its", "their", "our", "your", "my", "per"})
# A list: `joe, max`, `joe and max`, `joe & max`.
_LISTED_BEFORE = re.compile(
    r"(?<![A-Za-z0-9_\-])(?P<w>[A-Za-z][A-Za-z0-9\-]*)(?:,[ \t]*|[ \t]+(?:and|or|&)[ \t]+)$"
)
_LISTED_AFTER = re.compile(
    r"(?:,[ \t]*|[ \t]+(?:and|or|&)[ \t]+)(?P<w>[A-Za-z][A-Za-z0-9\-]*)(?![A-Za-z0-9_])"
)


def _code_after(text: str, e: int) -> bool:
    """A name glued to code after it: `max_tokens`, `max(`, `max.x`, `max=3`, `max-retries`."""
    nxt = text[e : e + 2]
    return bool(nxt) and (nxt[0] in "_(=[{" or (nxt[0] in ".-/:" and nxt[1:2].isalnum()))


def _left_ok(text: str, i: int, glued: str | frozenset[str] = _WORD_CHARS) -> bool:
    """Whether a name may start at i: not glued to a word (the letter of a \n or \u003c escape is not)."""
    if i == 0 or text[i - 1] not in glued:
        return True
    if i >= 2 and text[i - 2] == "\\" and text[i - 1] in "ntr":
        return True
    return i >= 6 and text[i - 6 : i - 4] == "\\u" and all(c in _HEX for c in text[i - 4 : i])


def _names_pattern(surfaces: Iterable[str]) -> re.Pattern[str]:
    """One regex for every surface, over lowercase text, as a trie (`st(?:eve(?:y|n)?)`): Python's
    `re` tries alternatives one by one, so a flat `a|b|c` of 200 names costs 200 tries a position."""
    trie: dict[str, dict] = {}
    for s in surfaces:
        for variant in _variants(s):
            node = trie
            for c in variant:
                node = node.setdefault(c, {})
            node[""] = {}
    return re.compile(rf"{_trie_regex(trie)}(?![a-z0-9])")


def _variants(surface: str) -> list[str]:
    """A full name as written: `mara quill`, `mara.quill`, `mara_quill`, `mara-quill`."""
    if " " not in surface:
        return [surface]
    words = surface.split()
    return [sep.join(words) for sep in (" ", ".", "_", "-")]


def _trie_regex(node: dict[str, dict]) -> str:
    ends = "" in node
    alts = [re.escape(c) + _trie_regex(sub) for c, sub in sorted(node.items()) if c]
    if not alts:
        return ""
    body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
    if ends:
        body = f"(?:{body})?" if len(alts) == 1 and len(body) > 1 else body + "?"
    return body
