"""The swarm key: a shared secret that admits a machine to a run, and the proofs made with it.

A key is 32 random bytes, written hex-encoded to a file only its owner can read (`gastown-ft peer keygen`)
and copied to every machine of the swarm by the operator, like an SSH key. It never travels over the
network: peers show that they hold it with HMAC-SHA256 tags (an access token for the DHT, a membership
proof for the averagers, a tag on the run manifest).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from gastown_ft.errors import GastownFTError

KEY_ENV = "GASTOWN_FT_SWARM_KEY"
KEY_BYTES = 32


@dataclass(frozen=True)
class SwarmKey:
    secret: bytes

    @property
    def key_id(self) -> str:
        """A short public name of the key (safe to print: it reveals nothing of the secret)."""
        return hashlib.sha256(b"gastown-ft swarm key id\0" + self.secret).hexdigest()[:12]

    def tag(self, purpose: str, *parts: bytes | str) -> bytes:
        """HMAC-SHA256 of `parts` under this key, domain-separated by `purpose`."""
        mac = hmac.new(self.secret, purpose.encode() + b"\0", hashlib.sha256)
        for part in parts:
            data = part.encode() if isinstance(part, str) else bytes(part)
            mac.update(len(data).to_bytes(8, "big") + data)  # length-prefixed: no ambiguous joins
        return mac.digest()

    def verify(self, tag: bytes, purpose: str, *parts: bytes | str) -> bool:
        return hmac.compare_digest(bytes(tag), self.tag(purpose, *parts))


def generate_key_file(path: str | os.PathLike, *, overwrite: bool = False) -> SwarmKey:
    path = Path(path).expanduser()
    if path.exists() and not overwrite:
        raise GastownFTError(
            f"{path} exists already",
            hint="pass --force to replace it (peers with the old key can no longer join)",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    key = SwarmKey(secrets.token_bytes(KEY_BYTES))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(key.secret.hex() + "\n")
    return key


def parse_key(text: str, where: str) -> SwarmKey:
    text = text.strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) != KEY_BYTES:
        raise GastownFTError(
            f"the swarm key in {where} is not {KEY_BYTES} hex-encoded bytes",
            hint="write one with `gastown-ft peer keygen` and copy the same file to every machine",
        )
    return SwarmKey(secret)


def load_key(path: str | os.PathLike | None) -> SwarmKey:
    """The key from $GASTOWN_FT_SWARM_KEY (hex) if set, else from the key file."""
    if os.environ.get(KEY_ENV):
        return parse_key(os.environ[KEY_ENV], f"${KEY_ENV}")
    if path is None:
        raise GastownFTError(
            "no swarm key: a swarm run needs a shared key",
            hint=f"run `gastown-ft peer keygen`, set swarm.key_file in gastown-ft.toml, or export {KEY_ENV}",
        )
    path = Path(path).expanduser()
    if not path.is_file():
        raise GastownFTError(
            f"swarm key file not found: {path}",
            hint="create it with `gastown-ft peer keygen` (first machine) or copy it from the first machine",
        )
    return parse_key(path.read_text(encoding="ascii", errors="replace"), str(path))
