"""Run rolls in the DHT, one entry per peer id, each with a proof made with the swarm key:

- "members": published first; the averagers serve only peers listed here (see `auth.MemberGate`);
- "ready": published once the peer's optimizer runs (and a joining peer has loaded the state); the
  start barrier counts these, so nobody takes a step before the others can average with it."""

from __future__ import annotations

import time
from collections.abc import Callable

from gastown_ft.swarm.auth import MEMBER_PURPOSE, members_key, membership_proof
from gastown_ft.swarm.keys import SwarmKey

MEMBER_TTL_S = 7 * 24 * 3600.0
POLL_S = 0.5


READY_PURPOSE = "gastown-ft run ready"


def _roll(run_id: str, roll: str) -> tuple[str, str]:
    """(DHT key, proof purpose) of a roll."""
    return (members_key(run_id), MEMBER_PURPOSE) if roll == "members" else (f"{run_id}_ready", READY_PURPOSE)


def announce(dht, key: SwarmKey, run_id: str, roll: str = "members") -> str:
    from hivemind.utils import get_dht_time

    peer_id = str(dht.peer_id)
    dht_key, purpose = _roll(run_id, roll)
    dht.store(
        dht_key,
        membership_proof(key, run_id, peer_id) if roll == "members" else key.tag(purpose, run_id, peer_id),
        expiration_time=get_dht_time() + MEMBER_TTL_S,
        subkey=peer_id,
    )
    return peer_id


def listed(dht, key: SwarmKey, run_id: str, roll: str = "members") -> list[str]:
    """Peer ids on a roll with a valid proof (peers that left stay listed: a roll, not a census)."""
    dht_key, purpose = _roll(run_id, roll)
    found = dht.get(dht_key, latest=True)
    if found is None or not isinstance(found.value, dict):
        return []
    out = []
    for peer_id, entry in found.value.items():
        proof = getattr(entry, "value", None)
        if (
            isinstance(peer_id, str)
            and isinstance(proof, bytes)
            and key.verify(proof, purpose, run_id, peer_id)
        ):
            out.append(peer_id)
    return sorted(out)


def wait_for_peers(
    dht,
    key: SwarmKey,
    run_id: str,
    min_peers: int,
    timeout_s: float,
    *,
    should_stop: Callable[[], bool] | None = None,
    log: Callable[[str], None] | None = None,
) -> int:
    """The start barrier: block until `min_peers` peers are ready, `timeout_s` passed or a stop is
    asked; return how many there are. Without it the first peer reaches the target batch alone."""
    deadline = time.monotonic() + timeout_s
    seen, next_log = 0, 0.0
    while True:
        seen = len(listed(dht, key, run_id, "ready"))
        if seen >= min_peers or time.monotonic() >= deadline or (should_stop is not None and should_stop()):
            return seen
        if log is not None and time.monotonic() >= next_log:
            log(f"waiting for peers: {seen} of {min_peers} here ({deadline - time.monotonic():.0f} s left)")
            next_log = time.monotonic() + 30.0
        time.sleep(POLL_S)
