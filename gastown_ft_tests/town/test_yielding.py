"""Training yields to the town: the pause conditions (driven through fake box readings and a real flag
file, never by loading the box), the pause/resume loop, the lower priority, and a paused-and-resumed
training that ends in the same adapter as an uninterrupted one."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from gastown_ft.config import Settings, TrainingConfig, YieldConfig
from gastown_ft.town.yielding import BoxReading, YieldGuard, flag_path, read_box
from gastown_ft_tests.training.test_lora import base_dir  # noqa: F401  (the tiny base model fixture)

CALM = BoxReading(available_mb=8000, load_1m=0.5, cpus=2, flag=False)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def guard(cfg: YieldConfig, readings, **kw) -> tuple[YieldGuard, Clock, list[str]]:
    """A guard whose box reads `readings(clock_time)`."""
    clock, logs = Clock(), []
    g = YieldGuard(
        cfg,
        None,
        own_threads=2,
        read=lambda _f: readings(clock.t),
        clock=clock,
        sleep=clock.sleep,
        log=logs.append,
        **kw,
    )
    return g, clock, logs


def test_each_condition_makes_the_box_busy_and_the_trainings_own_load_does_not():
    g, _, _ = guard(YieldConfig(min_available_mb=512, max_load_per_cpu=1.0), lambda t: CALM)
    assert g.busy(CALM, training=True) is None
    low = BoxReading(300, 0.5, 2, False)
    assert "available memory 300 MB is below the floor of 512 MB" in g.busy(low, training=True)
    # load 3.5 on 2 cores: 2 of it are the training's own threads -> 0.75 per core from others
    loaded = BoxReading(8000, 3.5, 2, False)
    assert g.busy(loaded, training=True) is None
    assert "1.75 per core, above the ceiling of 1" in g.busy(loaded, training=False)
    assert "flag file" in g.busy(BoxReading(8000, 0.5, 2, True), training=True)
    off, _, _ = guard(YieldConfig(min_available_mb=0, max_load_per_cpu=0, flag_file=""), lambda t: CALM)
    assert off.busy(BoxReading(1, 99.0, 1, False), training=True) is None


def test_the_box_is_read_at_most_every_check_every_s():
    reads = []
    g, clock, _ = guard(YieldConfig(check_every_s=5), lambda t: reads.append(t) or CALM)
    for _ in range(10):
        assert g.should_stop() is False
        clock.t += 1
    assert reads == [0, 5]


def test_it_resumes_only_after_the_box_was_clear_for_resume_after_s():
    # busy until t=20, clear 20-30, busy again 30-40 (a flap), then clear for good
    def box(t):
        return BoxReading(8000, 0.5, 2, flag=t < 20 or 30 <= t < 40)

    g, clock, _ = guard(YieldConfig(check_every_s=5, resume_after_s=15), box)
    assert g.wait_until_clear() == 55  # clear from 40, and 15 s of it


@dataclass
class FakeResult:
    """What the trainer returns (training/lora.TrainResult's fields that the loop reads)."""

    status: str
    steps_done: int
    total_steps: int = 6
    wall_seconds: float = 1.0
    last_checkpoint: str | None = None
    log: list = field(default_factory=list)


def test_run_pauses_with_a_checkpoint_resumes_and_reports():
    # The town needs the box from t=3 to t=10; each step takes 1 s; the trainer asks between steps.
    clock_box = {"busy": lambda t: 3 <= t < 10}
    notes = []
    g, clock, logs = guard(
        YieldConfig(check_every_s=1, resume_after_s=2),
        lambda t: BoxReading(8000, 0.5, 2, clock_box["busy"](t)),
        notify=lambda type_, msg, **kw: notes.append((type_, msg)),
    )
    done = {"steps": 0}

    def trainer(should_stop):
        while done["steps"] < 6:
            if should_stop():
                return FakeResult("cancelled", done["steps"], last_checkpoint=f"step-{done['steps']}")
            done["steps"] += 1
            clock.t += 1
        return FakeResult("completed", 6)

    result = g.run(trainer)
    assert result.status == "completed" and done["steps"] == 6
    assert result.wall_seconds == 2.0  # both sessions
    assert [p["at"] for p in g.pauses] == ["step 3/6"]
    assert g.pauses[0]["seconds"] == 9  # 3 -> clear at 10, +2 s clear = 12
    assert "training paused at step 3/6" in logs[0] and "checkpoint step-3" in logs[0]
    assert logs[1] == "training resumed after a pause of 0m09s"
    assert [t for t, _ in notes] == ["ft_paused", "ft_resumed"]
    meta = g.metadata()
    assert (meta["yield_pauses"], meta["yield_paused_seconds"]) == (1, 9)


def test_a_stop_for_another_reason_is_not_a_pause():
    g, _, _ = guard(YieldConfig(), lambda t: CALM)
    result = g.run(lambda should_stop: FakeResult("cancelled", 2))  # Ctrl-C: the trainer stopped by itself
    assert result.status == "cancelled" and g.pauses == []


def test_the_flag_file_is_relative_to_the_config_and_read_for_real(tmp_path):
    settings = Settings(config_path=tmp_path / "gastown-ft.toml")
    path = flag_path(YieldConfig(), settings)
    assert path == tmp_path / ".gastown-ft" / "pause-training"
    assert flag_path(YieldConfig(flag_file=""), settings) is None
    assert read_box(path).flag is False
    path.parent.mkdir()
    path.touch()
    reading = read_box(path)
    assert reading.flag is True and reading.available_mb > 0 and reading.cpus >= 1


def test_yield_settings_do_not_change_the_resume_fingerprint(tmp_path):
    from gastown_ft.training.lora import _fingerprint  # what a checkpoint must share with its resumer

    plain = _fingerprint(tmp_path, TrainingConfig(), [])
    yielding = TrainingConfig(yield_when=YieldConfig(min_available_mb=100, flag_file="/tmp/x"))
    assert _fingerprint(tmp_path, yielding, []) == plain  # a changed pause setting still resumes
    assert _fingerprint(tmp_path, TrainingConfig(learning_rate=1e-3), []) != plain


@pytest.mark.training
def test_a_paused_and_resumed_training_equals_an_uninterrupted_one(base_dir, tmp_path):  # noqa: F811
    """The real trainer on the tiny model; the pause is an operator's flag file, touched after step 4
    and removed while the guard waits."""
    import torch

    from gastown_ft.training.lora import plan_training, train_lora
    from gastown_ft_tests.training.test_data import chat
    from gastown_ft_tests.training.test_lora import _adapter, small_cfg

    plan = plan_training(
        base_dir, [chat(i) for i in range(14)], [chat(i) for i in range(14, 17)], small_cfg()
    )
    straight = train_lora(plan, tmp_path / "a")

    flag = tmp_path / "pause-training"
    cfg = YieldConfig(min_available_mb=0, check_every_s=1e-3, resume_after_s=0, flag_file=str(flag))
    waits, logs = [], []

    def operator_sleep(s):  # the operator removes the flag while the training waits
        waits.append(s)
        flag.unlink(missing_ok=True)

    g = YieldGuard(cfg, flag, own_threads=1, sleep=operator_sleep, log=logs.append)

    def progress(ev):
        if ev["step"] == 4 and not g.pauses:
            flag.touch()

    result = g.run(lambda stop: train_lora(plan, tmp_path / "b", progress=progress, should_stop=stop))
    assert result.status == "completed" and result.resumed_from_step == 4
    assert [p["at"] for p in g.pauses] == ["step 4/7"] and waits
    assert result.train_loss == straight.train_loss and result.val_loss == straight.val_loss
    a, b = _adapter(tmp_path / "a"), _adapter(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert "paused at step 4/7: the flag file" in logs[0]


def test_priority_is_lowered_for_every_thread(tmp_path):
    # In a child process: an unprivileged process can never raise its priority back.
    code = """
import json, os, threading, time
from gastown_ft.town.priority import lower_priority
ev = threading.Event(); seen = {}
def worker():
    ev.wait(); seen["nice"] = os.getpriority(os.PRIO_PROCESS, 0)
t = threading.Thread(target=worker); t.start()  # a thread that exists before, like torch's pool
out = lower_priority()
ev.set(); t.join()
print(json.dumps({**out, "thread": seen["nice"]}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out = json.loads(done.stdout)
    assert out["nice"] >= 10 and out["thread"] >= 10
    if sys.platform.startswith("linux"):
        assert out["ionice"] == "best-effort 7"
