"""At most one training run at a time: with the real Dagster daemon and the packaged dagster.yaml,
a second `train` run waits in the queue until the first is done."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import pytest
from dagster import DagsterInstance

from gastown_ft.orchestrate import asset_names_through, materialize_assets
from gastown_ft_tests.tiny import tiny_settings

FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


@pytest.mark.slow
@pytest.mark.training
def test_a_second_training_run_waits_in_the_queue(tmp_path):
    from gastown_ft.demo.town import build_demo_town

    town = build_demo_town(tmp_path / "demo", seed=7)
    settings = tiny_settings(tmp_path, town)
    home = Path(settings.dagster.home)
    with resources.as_file(resources.files("gastown_ft") / "data" / "dagster.yaml") as src:
        shutil.copyfile(src, home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "GASTOWN_FT_CONFIG": str(settings.config_path)}
    instance = DagsterInstance.from_config(str(home))
    try:
        assert materialize_assets(settings, instance, asset_names_through("corpus_splits")).success
        bin_dir = Path(sys.executable).parent
        # Both runs are queued before the daemon starts: on a busy machine a launch can take longer
        # than the tiny training, and the first run would be done before the second was queued.
        for _ in range(2):
            launched = subprocess.run(
                [str(bin_dir / "dagster"), "job", "launch", "-m", "gastown_ft.definitions", "-j", "train"],
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert launched.returncode == 0, launched.stderr[-2000:]
        daemon = subprocess.Popen(
            [str(bin_dir / "dagster-daemon"), "run", "-m", "gastown_ft.definitions"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            one_waiting = False
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                runs = [r for r in instance.get_runs() if r.job_name == "train"]
                assert len(runs) == 2 and all(r.tags["gastown-ft/stage"] == "training" for r in runs)
                states = sorted(r.status.value for r in runs)
                assert states.count("STARTED") + states.count("STARTING") <= 1, states
                one_waiting |= states in (["QUEUED", "STARTED"], ["QUEUED", "STARTING"])
                if all(s in FINISHED for s in states):
                    break
                time.sleep(1)
            assert states == ["SUCCESS", "SUCCESS"], states
            assert one_waiting, "never saw one training run waiting while the other ran"
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)
            daemon.wait(timeout=60)
    finally:
        instance.dispose()


@pytest.mark.slow
@pytest.mark.training
def test_terminating_a_training_run_saves_a_checkpoint_first(tmp_path):
    """What the UI's Terminate button does (the run coordinator's cancel_run), on a daemon-launched run."""
    from gastown_ft.demo.town import build_demo_town

    town = build_demo_town(tmp_path / "demo", seed=7)
    settings = tiny_settings(tmp_path, town)
    text = settings.config_path.read_text()
    text = text.replace("max_steps = 16", "max_steps = 5000").replace(
        "checkpoint_every = 8", "checkpoint_every = 4000"
    )
    settings.config_path.write_text(text)
    home = Path(settings.dagster.home)
    with resources.as_file(resources.files("gastown_ft") / "data" / "dagster.yaml") as src:
        shutil.copyfile(src, home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "GASTOWN_FT_CONFIG": str(settings.config_path)}
    instance = DagsterInstance.from_config(str(home))
    bin_dir = Path(sys.executable).parent
    try:
        assert materialize_assets(settings, instance, asset_names_through("corpus_splits")).success
        daemon = subprocess.Popen(
            [str(bin_dir / "dagster-daemon"), "run", "-m", "gastown_ft.definitions"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            launched = subprocess.run(
                [str(bin_dir / "dagster"), "job", "launch", "-m", "gastown_ft.definitions", "-j", "train"],
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert launched.returncode == 0, launched.stderr[-2000:]
            runs_dir = Path(settings.artifacts.dir) / "training" / "runs"
            deadline = time.monotonic() + 240
            # Wait until the adapter is really training (its run directory exists), then terminate.
            while time.monotonic() < deadline and not (runs_dir.exists() and any(runs_dir.iterdir())):
                time.sleep(1)
            time.sleep(8)
            run = next(r for r in instance.get_runs() if r.job_name == "train")
            assert run.status.value == "STARTED", run.status
            assert instance.run_coordinator.cancel_run(run.run_id)
            while (
                time.monotonic() < deadline
                and instance.get_run_by_id(run.run_id).status.value not in FINISHED
            ):
                time.sleep(1)
            assert instance.get_run_by_id(run.run_id).status.value in ("CANCELED", "FAILURE")
            checkpoints = sorted(runs_dir.glob("*/checkpoints/step-*"))
            assert checkpoints, "no checkpoint was saved on termination"
            step = int(checkpoints[-1].name.split("-")[1])
            assert 0 < step < 5000 and step % 4000 != 0  # written by the cancellation, not the schedule
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)
            daemon.wait(timeout=60)
    finally:
        instance.dispose()
