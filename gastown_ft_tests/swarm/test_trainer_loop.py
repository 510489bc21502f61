"""The hivemind trainer's loop without a swarm: a stand-in for hivemind.Optimizer (no peers, no network)
shows that a swarm peer runs the local trainer's step (`StepRunner`) and reports like it."""

from __future__ import annotations

import json
import random
from types import SimpleNamespace

import pytest
import torch

from gastown_ft.training.lora import StepRunner, plan_training, prepare_model, seed_everything
from gastown_ft_tests.swarm.peers import TINY_TRAINING
from gastown_ft_tests.training.test_data import chat, make_tokenizer, save_tiny_model

pytestmark = pytest.mark.training


class LoneOptimizer:
    """What swarm.trainer._train uses of hivemind.Optimizer, for one peer: gradients add up over
    `calls_per_step` step() calls (hivemind accumulates them up to the target batch), then AdamW."""

    def __init__(self, params, lr: float, calls_per_step: int) -> None:
        self.inner = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        self.calls_per_step, self.calls, self.local_epoch = calls_per_step, 0, 0
        self.group_sizes: list[int] = []
        self.tracker = SimpleNamespace(global_progress=SimpleNamespace(num_peers=1))
        self.state_averager = SimpleNamespace(optimizer=self.inner, step=lambda **_kw: None)

    def step(self, batch_size: int) -> None:
        self.calls += 1
        if self.calls % self.calls_per_step == 0:
            self.inner.step()
            self.inner.zero_grad(set_to_none=True)
            self.local_epoch += 1

    def zero_grad(self) -> None:
        pass  # the accumulated gradients stay until the step


def test_a_swarm_peer_runs_the_shared_training_step(tmp_path):
    from gastown_ft.config import TrainingConfig
    from gastown_ft.swarm.trainer import SwarmStats, _train

    base = save_tiny_model(tmp_path / "base", make_tokenizer(), hidden=32, layers=2, init_range=0.3)
    train = [{**chat(i), "weight": 3.0 if i % 3 == 0 else 1.0} for i in range(12)]
    cfg = TrainingConfig(**{**TINY_TRAINING, "max_steps": 3})
    plan = plan_training(base, train, [chat(i) for i in range(12, 15)], cfg)

    # The first two micro-batches of the peer's own shuffle (its first swarm step), through the shared
    # step on a fresh model (no dropout; run() only accumulates gradients, so both see the same weights).
    seed_everything(cfg.seed)
    fresh = prepare_model(plan).train()
    order = list(range(len(plan.train_sequences)))
    random.Random(f"{cfg.seed}:peer").shuffle(order)
    runner = StepRunner(fresh, plan.train_sequences, plan.pad_id)
    b = cfg.batch_size
    expected = [runner.run([order[:b]]), runner.run([order[b : 2 * b]])]

    seed_everything(cfg.seed)  # every peer starts from the same initialisation
    model = prepare_model(plan).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = LoneOptimizer(params, cfg.learning_rate, calls_per_step=2)
    stats = SwarmStats(run_id="r", peer_id="peer", maddrs=[], first=True)
    events: list[dict] = []
    result = _train(
        plan, tmp_path / "out", opt, model, stats, True, events.append, None, lambda: 1, sync_timeout_s=1
    )

    assert result.status == "completed" and result.steps_done == 3 and len(result.train_loss) == 3
    assert [e["step"] for e in events] == [1, 2, 3]
    assert set(events[0]) == {"step", "total_steps", "loss", "lr", "tokens_per_s", "eta_s", "peers"}
    assert stats.samples == 3 * 2 * cfg.batch_size and result.tokens_per_s > 0
    # A swarm step's loss: the mean of its micro-batches' losses, each the shared step's.
    assert opt.calls == 6
    assert result.train_loss[0] == events[0]["loss"] == pytest.approx(sum(expected) / 2, rel=1e-6)
    assert [v[0] for v in result.val_loss] == [0, 3]
    state = json.loads((tmp_path / "out" / "training_state.json").read_text())
    assert state["backend"] == "hivemind" and (tmp_path / "out" / "adapter").is_dir()
