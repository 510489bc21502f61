"""Fake secrets and personal data for the demo town, realistically shaped and drawn from a seed.

Nothing here is a real credential: every value is random characters in the shape a scanner looks
for. `Planter` hands out values and remembers where each one was put, so tests (and the scrubbing
evaluation) can check that every planted value is found and removed.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import random
import string
import struct
from dataclasses import dataclass

UPPER_DIGITS = string.ascii_uppercase + string.digits
ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "-_"
AWS_SECRET = ALNUM + "/+"

# Fictional people: the overseer and the humans around the town.
FIRST_NAMES = [
    "Mara",
    "Tobias",
    "Ines",
    "Kwame",
    "Lena",
    "Rafael",
    "Yuki",
    "Dmitri",
    "Aoife",
    "Sanjay",
    "Priya",
    "Jonas",
    "Carmen",
    "Idris",
    "Hana",
    "Felix",
]
LAST_NAMES = [
    "Okafor",
    "Lindqvist",
    "Haddad",
    "Moreau",
    "Castellanos",
    "Brennan",
    "Nakashima",
    "Volkov",
    "Adeyemi",
    "Fitzgerald",
    "Oyelaran",
    "Kowalczyk",
    "Ferreira",
    "Thorsen",
    "Abernathy",
]
# Made-up organisation domains (no free-mail providers, so no real inbox is implied).
DOMAINS = [
    "quillmesh.io",
    "harborlight.dev",
    "fernwood-analytics.com",
    "tallgrass-labs.co",
    "brightkiln.net",
    "oxbowsystems.io",
]
# First octets of large, globally routed blocks; the rest is random.
PUBLIC_FIRST_OCTETS = [34, 35, 44, 52, 54, 64, 104, 128, 143, 147, 157, 165, 178, 188, 193, 212]


@dataclass
class PlantedSecret:
    """A fake secret or piece of personal data written into the town on purpose.

    kind:    what it is (see `KINDS`).
    value:   the exact planted string (for the password kinds: the password itself).
    path:    the file it was written to, relative to the town root, or "claude-projects/..." for
             transcripts.
    context: the fragment it sits in when that is more than the value (the whole URL, flag or
             assignment); informational only.
    """

    kind: str
    value: str
    path: str
    context: str = ""


KINDS = (
    "aws_access_key",
    "aws_secret_key",
    "hf_token",
    "github_token",
    "github_fine_grained_token",
    "github_oauth_token",
    "anthropic_key",
    "openai_key",
    "slack_token",
    "stripe_key",
    "google_api_key",
    "npm_token",
    "pypi_token",
    "pem_private_key",
    "openssh_private_key",
    "jwt",
    "password_in_url",
    "password_cli_flag",
    "password_env",
    "password_json_key",
    "generic_secret",
    "email",
    "phone",
    "home_path_user",
    "public_ipv4",
    "canary",  # fixed fake secrets the evaluation watches every generation for (canaries.py)
)


@dataclass
class Person:
    first: str
    last: str
    email: str
    phone: str
    login: str  # the account name in home paths

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class SecretFactory:
    """Draws secret-shaped strings from one random stream."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def chars(self, alphabet: str, n: int) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def aws_access_key(self) -> str:
        return "AKIA" + self.chars(UPPER_DIGITS, 16)

    def aws_secret_key(self) -> str:
        return self.chars(AWS_SECRET, 40)

    def hf_token(self) -> str:
        return "hf_" + self.chars(string.ascii_letters, 34)

    def github_token(self) -> str:
        return "ghp_" + self.chars(ALNUM, 36)

    def github_fine_grained_token(self) -> str:
        return "github_pat_" + self.chars(ALNUM, 22) + "_" + self.chars(ALNUM, 59)

    def github_oauth_token(self) -> str:
        return "gho_" + self.chars(ALNUM, 36)

    def anthropic_key(self) -> str:
        return "sk-ant-api03-" + self.chars(URLSAFE, 93) + "AA"

    def openai_key(self) -> str:
        return "sk-proj-" + self.chars(URLSAFE, 58) + "T3BlbkFJ" + self.chars(URLSAFE, 58)

    def slack_token(self) -> str:
        return (
            "xoxb-"
            + self.chars(string.digits, 12)
            + "-"
            + self.chars(string.digits, 13)
            + "-"
            + self.chars(ALNUM, 24)
        )

    def stripe_key(self) -> str:
        return "sk_live_51" + self.chars(ALNUM, 40)

    def google_api_key(self) -> str:
        return "AIza" + self.chars(URLSAFE, 35)

    def npm_token(self) -> str:
        return "npm_" + self.chars(ALNUM, 36)

    def pypi_token(self) -> str:
        return "pypi-AgEIcHlwaS5vcmc" + self.chars(URLSAFE, 132)

    def _wrap(self, text: str, width: int) -> str:
        return "\n".join(text[i : i + width] for i in range(0, len(text), width))

    def pem_private_key(self) -> str:
        body = base64.b64encode(
            b"\x30\x82\x04\xa3\x02\x01\x00\x02\x82\x01\x01\x00" + self.rng.randbytes(660)
        ).decode("ascii")
        return "-----BEGIN RSA PRIVATE KEY-----\n" + self._wrap(body, 64) + "\n-----END RSA PRIVATE KEY-----"

    def openssh_private_key(self) -> str:
        def field(b: bytes) -> bytes:
            return struct.pack(">I", len(b)) + b

        raw = (
            b"openssh-key-v1\x00"
            + field(b"none")
            + field(b"none")
            + field(b"")
            + struct.pack(">I", 1)
            + field(b"\x00\x00\x00\x0bssh-ed25519" + field(self.rng.randbytes(32)))
            + field(self.rng.randbytes(140))
        )
        body = base64.b64encode(raw).decode("ascii")
        return (
            "-----BEGIN OPENSSH PRIVATE KEY-----\n"
            + self._wrap(body, 70)
            + "\n-----END OPENSSH PRIVATE KEY-----"
        )

    def jwt(self, subject: str = "svc-ledger") -> str:
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
        iat = 1767000000 + self.rng.randrange(5_000_000)
        payload = _b64url(
            json.dumps(
                {"sub": subject, "scope": "ingest:write", "iat": iat, "exp": iat + 86400 * 30},
                separators=(",", ":"),
            ).encode()
        )
        return f"{header}.{payload}.{_b64url(self.rng.randbytes(32))}"

    def password(self, *, url_safe: bool = False) -> str:
        """A human-made-looking password; `url_safe` avoids characters a URL would have to escape."""
        words = [
            "quartz",
            "lantern",
            "otter",
            "saffron",
            "meridian",
            "tundra",
            "velvet",
            "cobalt",
            "harbor",
            "juniper",
        ]
        return (
            self.rng.choice(words).capitalize()
            + self.chars(ALNUM, 6)
            + self.rng.choice("-_.~" if url_safe else "#%+^")
            + self.chars(string.digits, 3)
            + self.rng.choice(words)
        )

    def generic_secret(self) -> str:
        return self.chars(ALNUM, 24) + self.chars(string.digits, 4) + self.chars(ALNUM, 12)

    def public_ipv4(self) -> str:
        while True:
            ip = (
                f"{self.rng.choice(PUBLIC_FIRST_OCTETS)}.{self.rng.randrange(1, 255)}."
                f"{self.rng.randrange(0, 256)}.{self.rng.randrange(1, 255)}"
            )
            if ipaddress.ip_address(ip).is_global:
                return ip

    def us_phone(self) -> str:
        area = self.rng.choice(["415", "312", "646", "503", "737", "206"])
        tail = f"01{self.rng.randrange(10)}{self.rng.randrange(10)}"
        return self.rng.choice([f"+1 {area}-555-{tail}", f"({area}) 555-{tail}", f"+1 ({area}) 555-{tail}"])

    def intl_phone(self) -> str:
        return f"+44 20 7946 0{self.rng.randrange(100, 1000)}"

    def person(self, used: set[str]) -> Person:
        while True:
            first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
            if first not in used and last not in used:
                used.update((first, last))
                break
        domain = self.rng.choice(DOMAINS)
        style = self.rng.randrange(3)
        local = [f"{first}.{last}", f"{first[0]}{last}", f"{first}{self.rng.randrange(10, 99)}"][
            style
        ].lower()
        phone = self.us_phone() if self.rng.random() < 0.6 else self.intl_phone()
        login = (first[0] + last).lower()
        return Person(first, last, f"{local}@{domain}", phone, login)


class Planter:
    """Records each planted value with the file it goes to (one record per value and file)."""

    def __init__(self, factory: SecretFactory) -> None:
        self.f = factory
        self.planted: list[PlantedSecret] = []
        self._seen: set[tuple[str, str, str]] = set()

    def record(self, kind: str, value: str, path: str, context: str = "") -> str:
        assert kind in KINDS, kind
        key = (kind, value, path)
        if key not in self._seen:
            self._seen.add(key)
            self.planted.append(PlantedSecret(kind, value, path, context))
        return value

    def new(self, kind: str, path: str, **kw) -> str:
        """A fresh value of `kind`, recorded as planted in `path`."""
        value = getattr(self.f, kind)(**kw)
        return self.record(kind, value, path)
