"""Real hivemind peers on loopback, as separate processes: runs that share a DHT stay apart, a
mismatched peer is refused, and a run survives a killed peer and takes a late one."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

pytestmark = [pytest.mark.swarm, pytest.mark.slow, pytest.mark.timeout(300)]


def _adapter(outcome: dict) -> dict[str, torch.Tensor]:
    return load_file(f"{outcome['adapter_dir']}/adapter_model.safetensors")


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_two_runs_in_one_dht_stay_apart_and_a_mismatched_peer_is_refused(swarm, swarm_assets):
    a1 = swarm.start("a1", run_id="run-a", examples=swarm_assets["a"], first=True, swarm={"min_peers": 2})
    maddrs = a1.maddrs(timeout=120)
    # Run B lives in the same DHT (it bootstraps from a1) with other data, alone.
    b1 = swarm.start(
        "b1",
        run_id="run-b",
        examples=swarm_assets["b"],
        first=True,
        initial_peers=maddrs,
        swarm={"min_peers": 1},
    )
    a2 = swarm.start("a2", run_id="run-a", examples=swarm_assets["a"], first=False, initial_peers=maddrs)
    # Other data (and corpus version), asking for run A: refused, naming what differs.
    bad = swarm.start("bad", run_id="run-a", examples=swarm_assets["b"], first=False, initial_peers=maddrs)
    refused = bad.outcome(timeout=150)
    assert refused["event"] == "error"
    assert "corpus version" in refused["message"]
    assert "this machine corpus-b, the run corpus-a" in refused["message"]
    assert "training plan" in refused["message"]

    done = {p.name: p.outcome(timeout=200) for p in (a1, a2, b1)}
    assert all(d["event"] == "done" and d["status"] == "completed" for d in done.values()), done
    swarm_a1, swarm_a2, swarm_b = done["a1"]["swarm"], done["a2"]["swarm"], done["b1"]["swarm"]
    assert swarm_a1["peers_seen"] == 2 and swarm_a2["peers_seen"] == 2
    assert swarm_b["peers_seen"] == 1  # run A's peers never counted in run B's progress
    assert swarm_a1["members"] == 2 and swarm_b["members"] == 1
    assert swarm_a2["samples"] > 0 and swarm_a1["samples"] > 0  # both A peers did work
    a1_w, a2_w, b_w = (_adapter(done[n]) for n in ("a1", "a2", "b1"))
    same_run = _max_diff(a1_w, a2_w)
    assert same_run < 1e-2  # run A's peers hold the same averaged adapter (float16 rounding apart)
    assert _max_diff(a1_w, b_w) > 10 * max(same_run, 1e-3)  # run B was never averaged with run A
    # Only the LoRA parameters travel: a fraction of the model, float16.
    assert swarm_a1["grad_bytes_per_round"] < 0.6 * swarm_a1["trainable_bytes"]
    assert swarm_a1["trainable_bytes"] < swarm_a1["full_model_bytes"] / 5


def test_a_killed_peer_does_not_stop_the_run_and_a_late_peer_loads_the_state(swarm, swarm_assets):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from gastown_ft.training.lora import evaluate_loss, plan_training
    from gastown_ft_tests.swarm.peers import TINY_TRAINING

    long_run = {"max_steps": 40}
    p1 = swarm.start(
        "p1",
        run_id="faults",
        examples=swarm_assets["a"],
        first=True,
        training=long_run,
        swarm={"min_peers": 3},
    )
    maddrs = p1.maddrs(timeout=120)
    p2 = swarm.start(
        "p2",
        run_id="faults",
        examples=swarm_assets["a"],
        first=False,
        initial_peers=maddrs,
        training=long_run,
    )
    p3 = swarm.start(
        "p3",
        run_id="faults",
        examples=swarm_assets["a"],
        first=False,
        initial_peers=maddrs,
        training=long_run,
    )
    p3.wait_for(lambda ev: ev.get("event") == "step" and ev["step"] >= 3, timeout=180)
    p3.kill()
    p4 = swarm.start(
        "late",
        run_id="faults",
        examples=swarm_assets["a"],
        first=False,
        initial_peers=maddrs,
        training=long_run,
    )
    done = {p.name: p.outcome(timeout=240) for p in (p1, p2, p4)}
    assert all(d["event"] == "done" and d["status"] == "completed" for d in done.values()), done
    assert all(d["steps"] == 40 for d in done.values())
    assert done["late"]["swarm"]["loaded_state_at_step"] >= 3  # it took over the swarm's progress
    assert done["p1"]["swarm"]["peers_seen"] >= 3

    # The final adapter is an ordinary peft adapter, evaluated like any other.
    import json

    data = json.loads(swarm_assets["a"].read_text())
    from gastown_ft.config import TrainingConfig

    plan = plan_training(
        swarm_assets["base"],
        data["train"],
        data["validation"],
        TrainingConfig(**{**TINY_TRAINING, **long_run}),
    )
    base = AutoModelForCausalLM.from_pretrained(str(swarm_assets["base"]), dtype=torch.float32)
    before = evaluate_loss(base, plan.val_sequences, plan.pad_id, 4)
    tuned = PeftModel.from_pretrained(base, done["p1"]["adapter_dir"])
    after = evaluate_loss(tuned, plan.val_sequences, plan.pad_id, 4)
    assert math.isfinite(after) and after < before - 0.1
    assert abs(after - done["p1"]["val_loss"][-1][1]) < 1e-3
