"""Fixtures of the swarm tests: a tiny base model, two example sets, a swarm key."""

from __future__ import annotations

import time

import pytest

from gastown_ft_tests.swarm.peers import Swarm, leftover_processes, write_examples


@pytest.fixture(scope="package")
def swarm_assets(tmp_path_factory):
    from gastown_ft.swarm.keys import generate_key_file
    from gastown_ft_tests.training.test_data import chat, make_tokenizer, save_tiny_model

    work = tmp_path_factory.mktemp("swarm_assets")
    base = save_tiny_model(work / "base", make_tokenizer(), hidden=32, layers=2, init_range=0.3)
    examples_a = write_examples(
        work / "a.json", [chat(i) for i in range(48)], [chat(i) for i in range(48, 56)], "corpus-a"
    )
    examples_b = write_examples(
        work / "b.json", [chat(i) for i in range(100, 140)], [chat(i) for i in range(48, 56)], "corpus-b"
    )
    key = work / "swarm.key"
    generate_key_file(key)
    return {"work": work, "base": base, "a": examples_a, "b": examples_b, "key": key}


@pytest.fixture
def swarm(tmp_path, swarm_assets):
    s = Swarm(tmp_path, swarm_assets["base"], swarm_assets["key"])
    try:
        yield s
    finally:
        s.stop_all()
        pgids = [p.pgid for p in s.peers]
        deadline = time.monotonic() + 10  # SIGKILLed orphans take a moment to be gone
        while (left := leftover_processes(pgids)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, f"processes left after the peers stopped: {left}"
