"""Admission with real hivemind peers: without the swarm key a peer can neither reach the run's DHT,
write its records, nor get anything from its averagers."""

from __future__ import annotations

import asyncio
import time

import pytest

from gastown_ft.config import SwarmConfig
from gastown_ft.errors import GastownFTError
from gastown_ft.swarm.keys import generate_key_file, load_key
from gastown_ft.swarm.network import start_dht, visible_maddrs
from gastown_ft_tests.swarm.peers import descendant_p2pd

pytestmark = [pytest.mark.swarm, pytest.mark.timeout(180)]

LOOPBACK = SwarmConfig(listen_host="127.0.0.1", listen_port=0)


def test_a_peer_without_the_key_cannot_join_nor_write(tmp_path):
    import hivemind
    from hivemind.utils import get_dht_time

    key = generate_key_file(tmp_path / "key")
    wrong = generate_key_file(tmp_path / "wrong")
    first = start_dht(LOOPBACK, key, [])
    dhts = [first]
    try:
        maddrs = visible_maddrs(first)
        second = start_dht(LOOPBACK, key, maddrs)  # the key admits
        dhts.append(second)
        assert second.store("run_x_record", b"ok", get_dht_time() + 60)
        assert first.get("run_x_record", latest=True).value == b"ok"
        assert second.store("run_x_secret", b"members only", get_dht_time() + 60)

        with pytest.raises(GastownFTError, match="no initial peer let this machine in"):
            dhts.append(start_dht(LOOPBACK, wrong, maddrs))
        # No key at all, and not giving up at bootstrap: its writes reach nobody.
        rogue = hivemind.DHT(initial_peers=maddrs, start=True, ensure_bootstrap_success=False)
        dhts.append(rogue)
        rogue.store("run_x_record", b"evil", get_dht_time() + 120)
        rogue.store("run_x_other", b"evil", get_dht_time() + 120)
        assert rogue.get("run_x_secret", latest=True) is None  # nor can it read the run's records
        assert first.get("run_x_record", latest=True).value == b"ok"
        assert first.get("run_x_other", latest=True) is None
        assert second.get("run_x_other", latest=True) is None
    finally:
        for dht in dhts:
            dht.shutdown()
    deadline = time.monotonic() + 10
    while descendant_p2pd() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not descendant_p2pd(), "p2pd daemons outlived their DHT"


def test_averagers_serve_only_members(swarm, swarm_assets):
    """A peer that has the address and the run id (and even a DHT seat) but no membership proof gets
    nothing from a member's state averager; the same call with a proof gets the state."""
    from hivemind.optim.state_averager import TrainingStateAverager
    from hivemind.p2p import P2P, PeerID
    from hivemind.proto import averaging_pb2
    from hivemind.utils import get_dht_time

    from gastown_ft.swarm.auth import members_key, membership_proof

    run_id = "adm"
    first = swarm.start(
        "first", run_id=run_id, examples=swarm_assets["a"], first=True, swarm={"min_peers": 2}
    )
    maddrs = first.maddrs(timeout=90)
    first.wait_for(lambda ev: "waiting for peers" in ev.get("message", ""), timeout=90)  # averagers up
    key = load_key(swarm_assets["key"])
    dht = start_dht(LOOPBACK, key, maddrs)
    target = PeerID.from_base58(maddrs[0].rsplit("/p2p/", 1)[1])

    async def download(p2p) -> int:
        stub = TrainingStateAverager.get_stub(p2p, target, namespace=f"{run_id}_state_averager")
        stream = await stub.rpc_download_state(averaging_pb2.DownloadRequest())
        return sum([1 async for _message in stream])

    async def scenario() -> tuple[int, int]:
        p2p = await P2P.create(initial_peers=maddrs)
        try:
            refused = await download(p2p)
            peer_id = str(p2p.peer_id)
            await asyncio.to_thread(
                dht.store,
                members_key(run_id),
                membership_proof(key, run_id, peer_id),
                get_dht_time() + 60,
                subkey=peer_id,
            )
            await asyncio.sleep(2.5)  # the gate asks again about a refused peer after 2 s
            admitted = await download(p2p)
            return refused, admitted
        finally:
            await p2p.shutdown()

    try:
        refused, admitted = asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        dht.shutdown()
    assert refused == 0
    assert admitted > 0
