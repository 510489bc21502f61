"""Admission with real hivemind DHT nodes: without the swarm key a peer can neither reach the run's DHT,
nor read or write its records. (That the averagers serve only members is checked in test_training.py,
against a training peer.)"""

from __future__ import annotations

import time

import pytest

from gastown_ft.config import SwarmConfig
from gastown_ft.errors import GastownFTError
from gastown_ft.swarm.keys import generate_key_file
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
