"""The run manifest: what every peer of a run must share, published in the DHT under the run id.

The first peer publishes it; a joining peer computes its own from its local corpus splits, base model
and settings, and refuses to train when they differ, naming what differs. The manifest is tagged with
the swarm key, so a record that does not verify is refused as well.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, fields
from typing import Any

from gastown_ft.errors import GastownFTError
from gastown_ft.swarm.keys import SwarmKey

MANIFEST_PURPOSE = "gastown-ft run manifest"
MANIFEST_TTL_S = 7 * 24 * 3600.0
POLL_S = 0.5


def manifest_key(run_id: str) -> str:
    return f"{run_id}_manifest"


@dataclass(frozen=True)
class RunManifest:
    run_id: str
    corpus_version: str  # hash of the corpus splits
    base_model: str  # content fingerprint of the base model's files
    plan: str  # training plan fingerprint: the shaping training settings, base model and tokenized data
    project: str  # gastown-ft version
    target_batch_size: int
    total_steps: int
    compression: str
    average_state_every: int

    # Field -> (what an operator calls it, what makes it the same as the run's).
    _WHAT = {
        "corpus_version": ("corpus version", "materialize corpus_splits from the same town data"),
        "base_model": ("base model", "use the same base model files"),
        "plan": ("training plan", "use the same training settings and corpus"),
        "project": ("gastown-ft version", "install the same gastown-ft version"),
        "target_batch_size": ("swarm.target_batch_size", "copy the swarm settings"),
        "total_steps": ("optimizer steps", "use the same training.max_steps / epochs"),
        "compression": ("swarm.compression", "copy the swarm settings"),
        "average_state_every": ("swarm.average_state_every", "copy the swarm settings"),
    }

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> RunManifest:
        raw = json.loads(data)
        return cls(**{f.name: raw[f.name] for f in fields(cls)})

    def differences(self, other: RunManifest) -> list[tuple[str, str]]:
        """(what differs: "ours vs theirs" with hashes shortened, how to fix it), one per field."""
        out = []
        for f in fields(self):
            if f.name == "run_id":
                continue
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if mine != theirs:
                name, fix = self._WHAT[f.name]
                out.append((f"{name} (this machine {_short(mine)}, the run {_short(theirs)})", fix))
        return out


def _short(value: Any) -> str:
    text = str(value)
    return text[:12] if len(text) >= 32 and all(c in "0123456789abcdef" for c in text) else text


def publish_manifest(dht, key: SwarmKey, manifest: RunManifest) -> None:
    from hivemind.utils import get_dht_time

    data = manifest.to_bytes()
    record = {"manifest": data, "tag": key.tag(MANIFEST_PURPOSE, data)}
    stored = dht.store(manifest_key(manifest.run_id), record, expiration_time=get_dht_time() + MANIFEST_TTL_S)
    if not stored:
        raise GastownFTError(f"could not publish the manifest of run {manifest.run_id} in the swarm DHT")


def fetch_manifest(dht, key: SwarmKey, run_id: str, timeout_s: float) -> RunManifest | None:
    """The run's manifest, waiting up to `timeout_s` for it to appear; None if it never does."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = dht.get(manifest_key(run_id), latest=True)
        if found is not None and isinstance(found.value, dict):
            data, tag = found.value.get("manifest"), found.value.get("tag")
            if not (
                isinstance(data, bytes) and isinstance(tag, bytes) and key.verify(tag, MANIFEST_PURPOSE, data)
            ):
                raise GastownFTError(
                    f"the manifest of run {run_id} is not signed with this machine's swarm key",
                    hint="copy the swarm key file from the first machine",
                )
            return RunManifest.from_bytes(data)
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL_S)


def check_compatible(local: RunManifest, remote: RunManifest) -> None:
    diffs = local.differences(remote)
    if diffs:
        # One line, however many fields differ: the CLI prints it as the error line, the fix as the hint.
        fixes = list(dict.fromkeys(fix for _what, fix in diffs))
        raise GastownFTError(
            f"this machine cannot join run {remote.run_id}, it differs in: "
            + "; ".join(what for what, _fix in diffs),
            hint="; ".join(fixes) + " (every peer trains on the same corpus, base model and settings)",
        )
