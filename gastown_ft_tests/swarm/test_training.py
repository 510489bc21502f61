"""Real hivemind peers on loopback, as separate processes, in one shared DHT. One scenario proves
several things, so the peers start (imports, tokenizing) once:

- the averagers serve only members: a stranger with the address, the run id and a DHT seat gets
  nothing from the first peer, the same call with a membership proof gets the state;
- two runs in one DHT stay apart: run B, alone, never counts nor averages with run A's peers;
- run A survives a killed peer (one of three) and takes a late one, which loads the swarm's state;
- run A's peers end with one adapter, an ordinary peft adapter that evaluates better than the base.
"""

from __future__ import annotations

import asyncio
import json
import math

import pytest
import torch
from safetensors.torch import load_file

from gastown_ft_tests.swarm.peers import TINY_TRAINING, Swarm

pytestmark = [pytest.mark.swarm, pytest.mark.slow, pytest.mark.timeout(300)]

STEPS_A = 14
STEPS_B = 6


def _adapter(outcome: dict) -> dict[str, torch.Tensor]:
    return load_file(f"{outcome['adapter_dir']}/adapter_model.safetensors")


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _state_downloads(key, maddrs: list[str], run_id: str) -> tuple[int, int]:
    """Messages a stranger gets from the first peer's state averager: without, then with a membership
    proof in the DHT (the gate asks again about a refused peer after 2 s)."""
    from hivemind.optim.state_averager import TrainingStateAverager
    from hivemind.p2p import P2P, PeerID
    from hivemind.proto import averaging_pb2
    from hivemind.utils import get_dht_time

    from gastown_ft.config import SwarmConfig
    from gastown_ft.swarm.auth import members_key, membership_proof
    from gastown_ft.swarm.network import start_dht

    dht = start_dht(SwarmConfig(listen_host="127.0.0.1", listen_port=0), key, maddrs)
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
            await asyncio.sleep(2.5)
            return refused, await download(p2p)
        finally:
            await p2p.shutdown()

    try:
        return asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        dht.shutdown()


def test_members_only_runs_apart_a_killed_peer_a_late_peer_and_the_adapter(swarm: Swarm, swarm_assets):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from gastown_ft.config import TrainingConfig
    from gastown_ft.swarm.keys import load_key
    from gastown_ft.training.lora import evaluate_loss, plan_training

    examples_a, examples_b = swarm_assets["a"], swarm_assets["b"]
    run_a = {"max_steps": STEPS_A}
    go, go_late = swarm.work / "go.json", swarm.work / "go-late.json"
    a1 = swarm.start(
        "a1", run_id="run-a", examples=examples_a, first=True, training=run_a, swarm={"min_peers": 3}
    )
    # The others start now and stand by, ready, until they are let in.
    a2, a3 = (
        swarm.start(
            n, run_id="run-a", examples=examples_a, first=False, initial_peers_file=go, training=run_a
        )
        for n in ("a2", "a3")
    )
    # Run B lives in the same DHT (it bootstraps from a1) with other data, alone.
    b1 = swarm.start(
        "b1",
        run_id="run-b",
        examples=examples_b,
        first=True,
        initial_peers_file=go,
        training={"max_steps": STEPS_B},
        swarm={"min_peers": 1},
    )
    late = swarm.start(
        "late", run_id="run-a", examples=examples_a, first=False, initial_peers_file=go_late, training=run_a
    )

    maddrs = a1.maddrs(timeout=120)
    a1.wait_for(lambda ev: "waiting for peers" in ev.get("message", ""), timeout=60)  # averagers up
    swarm.release(go, maddrs)
    refused, admitted = _state_downloads(load_key(swarm_assets["key"]), maddrs, "run-a")
    assert refused == 0
    assert admitted > 0

    a3.wait_for(lambda ev: ev.get("event") == "step" and ev["step"] >= 3, timeout=180)
    a3.kill()  # no goodbye, as in a crash
    swarm.release(go_late, maddrs)

    done = {p.name: p.outcome(timeout=200) for p in (a1, a2, late, b1)}
    assert all(d["event"] == "done" and d["status"] == "completed" for d in done.values()), done
    assert all(done[n]["steps"] == STEPS_A for n in ("a1", "a2", "late"))
    s1, s2, s_late, s_b = (done[n]["swarm"] for n in ("a1", "a2", "late", "b1"))
    # The late peer took over the swarm's progress, then trained and averaged with the others.
    assert s_late["loaded_state_at_step"] >= 3
    assert s_late["samples"] > 0 and s_late["averaged_rounds"] >= 1
    assert s1["largest_group"] >= 2 and s1["averaged_rounds"] >= STEPS_A // 2
    assert s1["members"] == 5  # a1, a2, the killed a3, late, and the stranger above once it had a proof
    # Run B never counted, nor averaged with, run A's peers.
    assert s_b["peers_seen"] == 1 and s_b["members"] == 1 and s_b["largest_group"] <= 1
    a1_w, a2_w, late_w, b_w = (_adapter(done[n]) for n in ("a1", "a2", "late", "b1"))
    same_run = max(_max_diff(a1_w, a2_w), _max_diff(a1_w, late_w))
    assert same_run < 1e-2  # run A's peers hold one averaged adapter (float16 rounding apart)
    assert _max_diff(a1_w, b_w) > 10 * max(same_run, 1e-3)
    # Only the LoRA parameters travel: a fraction of the model, float16.
    assert s1["grad_bytes_per_round"] < 0.6 * s1["trainable_bytes"]
    assert s1["trainable_bytes"] < s1["full_model_bytes"] / 5

    # The final adapter is an ordinary peft adapter, evaluated like any other.
    data = json.loads(examples_a.read_text())
    cfg = TrainingConfig(**{**TINY_TRAINING, **run_a})
    plan = plan_training(swarm_assets["base"], data["train"], data["validation"], cfg)
    base = AutoModelForCausalLM.from_pretrained(str(swarm_assets["base"]), dtype=torch.float32)
    before = evaluate_loss(base, plan.val_sequences, plan.pad_id, 4)
    tuned = PeftModel.from_pretrained(base, done["a1"]["adapter_dir"])
    after = evaluate_loss(tuned, plan.val_sequences, plan.pad_id, 4)
    assert math.isfinite(after) and after < before - 0.1
    assert abs(after - done["a1"]["val_loss"][-1][1]) < 1e-3
