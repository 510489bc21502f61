"""The real Dagster daemon against a real instance: commit to a demo rig and edit a formula, the
sensors request the right runs and they succeed; after a restart the cursors hold and nothing re-runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import pytest
from dagster import DagsterInstance
from dagster._core.scheduler.instigation import InstigatorType, TickStatus

from gastown_ft.config import Settings, load_settings, render_settings_toml
from gastown_ft.orchestrate import asset_names_through, materialize_assets
from gastown_ft.sensors.common import REASON_TAG, RIGS_TAG, TRIGGER_TAG
from gastown_ft_tests.automation.small_town import commit_all

FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}
TOWN_SENSORS = ("rig_heads_sensor", "formulas_sensor", "beads_sensor", "transcripts_sensor")
CORPUS_STAGES = ["corpus_splits", "instruction_pairs", "quarantine", "scrubbed_documents"]
# Sensors evaluated side by side, so one slow tick does not hold up the others.
SENSOR_WORKERS = "sensors:\n  use_threads: true\n  num_workers: 4\n"
CORPUS_LIMIT = "      - key: gastown-ft/stage\n        value: corpus\n        limit: 1\n"


def write_dagster_yaml(home: Path) -> None:
    """The packaged dagster.yaml, with one corpus rebuild at a time (sensor runs carry that tag)."""
    with resources.as_file(resources.files("gastown_ft") / "data" / "dagster.yaml") as src:
        text = src.read_text()
    if "value: corpus" not in text:
        anchor = "        limit: 1\n"
        assert anchor in text, text
        text = text.replace(anchor, anchor + CORPUS_LIMIT, 1)
    (home / "dagster.yaml").write_text(text + SENSOR_WORKERS)


def start_daemon(env: dict, log: Path) -> subprocess.Popen:
    bin_dir = Path(sys.executable).parent
    with open(log, "ab") as out:
        return subprocess.Popen(
            [str(bin_dir / "dagster-daemon"), "run", "-m", "gastown_ft.definitions"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_daemon(daemon: subprocess.Popen) -> None:
    os.killpg(daemon.pid, signal.SIGTERM)
    try:
        daemon.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(daemon.pid, signal.SIGKILL)
        daemon.wait(timeout=30)


def sensor_states(instance) -> dict:
    return {
        s.instigator_name: s for s in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
    }


def cursors(instance) -> dict[str, str | None]:
    return {
        name: s.instigator_data.cursor if s.instigator_data else None
        for name, s in sensor_states(instance).items()
    }


def wait_for(what: str, check, timeout: float, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n--- daemon log ---\n{tail}")


@pytest.mark.slow
def test_daemon_sensors_request_the_right_runs_and_keep_their_cursor_across_a_restart(tmp_path):
    from gastown_ft.demo.town import build_demo_town

    town = build_demo_town(tmp_path / "demo", seed=7)
    cfg = Settings.model_validate(
        {
            "town": {"root": str(town.root), "claude_projects_dir": str(town.claude_projects_dir)},
            "artifacts": {"dir": str(tmp_path / "artifacts")},
            "dagster": {"home": str(tmp_path / "dagster")},
            "automation": {
                "sensor_interval_seconds": 1,
                "transcripts_interval_seconds": 1,
                "transcript_quiet_seconds": 0,
                "corpus_refresh_schedule": False,
            },
        }
    )
    (tmp_path / "gastown-ft.toml").write_text(render_settings_toml(cfg))
    settings = load_settings(tmp_path / "gastown-ft.toml")
    home = Path(settings.dagster.home)
    home.mkdir()
    write_dagster_yaml(home)
    env = {**os.environ, "DAGSTER_HOME": str(home), "GASTOWN_FT_CONFIG": str(settings.config_path)}
    log = tmp_path / "daemon.log"
    instance = DagsterInstance.from_config(str(home))
    try:
        # The operator built the corpus once; the sensors keep it current from here.
        assert materialize_assets(settings, instance, asset_names_through("corpus_splits")).success
        built = {r.run_id for r in instance.get_runs()}
        daemon = start_daemon(env, log)
        try:
            # The first tick of each sensor records its baseline and requests nothing.
            wait_for(
                "every town sensor to record a baseline",
                lambda: all(cursors(instance).get(n) for n in TOWN_SENSORS),
                150,
                log,
            )
            assert {r.run_id for r in instance.get_runs()} == built

            ledger = town.repo("ledger")  # the rig's canonical clone: its HEAD is the rig's
            before = subprocess.run(
                ["git", "-C", str(ledger), "rev-parse", "HEAD"], capture_output=True, text=True
            ).stdout.strip()
            with open(ledger / "CLAUDE.md", "a") as fh:
                fh.write("\n- Run `bd ready` before picking up work.\n")
            after = commit_all(ledger, "CLAUDE.md: check bd ready first")
            formula = town.root / ".beads" / "formulas" / "mol-escalation.formula.toml"
            formula.write_text(formula.read_text() + "\n# escalate to the mayor after two failed patrols\n")

            def two_finished_runs():
                new = [r for r in instance.get_runs() if r.run_id not in built]
                return new if len(new) >= 2 and all(r.status.value in FINISHED for r in new) else None

            runs = wait_for("the two sensor runs to finish", two_finished_runs, 240, log)
            by_trigger = {r.tags[TRIGGER_TAG]: r for r in runs}
            assert sorted(by_trigger) == ["sensor:formulas_sensor", "sensor:rig_heads_sensor"], by_trigger
            assert all(r.status.value == "SUCCESS" for r in runs), [(r.tags, r.status) for r in runs]
            assert all(r.tags["gastown-ft/stage"] == "corpus" for r in runs)

            heads = by_trigger["sensor:rig_heads_sensor"]
            assert heads.tags[REASON_TAG] == f"rig ledger: HEAD {before[:7]} -> {after[:7]} (branch main)"
            assert heads.tags[RIGS_TAG] == "ledger"
            assert sorted(k.to_user_string() for k in heads.asset_selection) == sorted(
                ["raw_beads", "raw_conventions", "raw_formulas", *CORPUS_STAGES]
            )
            formulas = by_trigger["sensor:formulas_sensor"]
            assert formulas.tags[REASON_TAG].startswith(
                "formula files: 1 grew: grew .beads/formulas/mol-escalation.formula.toml (+"
            )
            assert sorted(k.to_user_string() for k in formulas.asset_selection) == sorted(
                ["raw_formulas", *CORPUS_STAGES]
            )
            # The runs really rebuilt the assets they were asked for, blocking checks included.
            for run in runs:
                materialized = {
                    e.dagster_event.asset_key.to_user_string()
                    for e in instance.all_logs(run.run_id)
                    if e.is_dagster_event and e.dagster_event.is_step_materialization
                }
                assert materialized == {k.to_user_string() for k in run.asset_selection}
            kept = cursors(instance)
        finally:
            stop_daemon(daemon)

        restarted_at = time.time()
        daemon = start_daemon(env, log)
        try:
            states = sensor_states(instance)

            def ticks_after_restart():
                done = {}
                for n in TOWN_SENSORS:
                    ticks = instance.get_ticks(
                        states[n].instigator_origin_id, states[n].selector_id, after=restarted_at
                    )
                    finished = [t for t in ticks if t.status != TickStatus.STARTED]
                    if not finished:
                        return None
                    done[n] = finished
                return done

            ticks = wait_for(
                "a finished tick of every town sensor after the restart", ticks_after_restart, 150, log
            )
        finally:
            stop_daemon(daemon)
        for name, sensor_ticks in ticks.items():
            statuses = [(t.status, t.skip_reason) for t in sensor_ticks]
            assert all(t.status == TickStatus.SKIPPED for t in sensor_ticks), (name, statuses)
            assert all(t.skip_reason.startswith("no ") for t in sensor_ticks), (name, statuses)
        assert cursors(instance) == kept
        assert len(instance.get_runs()) == len(built) + 2  # nothing re-ran
    finally:
        instance.dispose()
