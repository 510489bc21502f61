"""Sensor and schedule evaluations against a real Dagster instance: cursors, skip reasons, run requests
and their tags, the retrain decision from recorded corpus_splits materializations."""

from __future__ import annotations

import logging
import os
import shutil
import time

import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    build_schedule_context,
    build_sensor_context,
)

from gastown_ft.automation.cursor import encode_cursor
from gastown_ft.config import CONFIG_ENV, AutomationConfig, Settings, load_settings, render_settings_toml
from gastown_ft.definitions import defs
from gastown_ft.resources import GastownSettings
from gastown_ft.sensors.common import REASON_TAG, RIGS_TAG, TRIGGER_TAG, automation_config_at_load
from gastown_ft.sensors.town import town_sensors
from gastown_ft.sensors.training import make_schedules
from gastown_ft_tests.automation.small_town import FORMULA, commit_all, git, make_small_town, transcript_line

CORPUS_STAGES = ["corpus_splits", "instruction_pairs", "quarantine", "scrubbed_documents"]


def write_settings(work, town, **automation) -> Settings:
    cfg = Settings.model_validate(
        {
            "town": {"root": str(town.root), "claude_projects_dir": str(town.projects)},
            "artifacts": {"dir": str(work / "artifacts")},
            "dagster": {"home": str(work / "dagster")},
            "automation": automation,
        }
    )
    work.mkdir(exist_ok=True)
    path = work / "gastown-ft.toml"
    path.write_text(render_settings_toml(cfg))
    return load_settings(path)


@pytest.fixture(scope="module")
def shared_instance(tmp_path_factory):
    """The town sensors read no instance state, so they share one (creating one takes about 2 s)."""
    with DagsterInstance.local_temp(str(tmp_path_factory.mktemp("dagster"))) as instance:
        yield instance


def fresh_instance(tmp_path):
    (tmp_path / "dagster").mkdir()
    return DagsterInstance.local_temp(str(tmp_path / "dagster"))


@pytest.fixture
def setup(tmp_path, shared_instance):
    town = make_small_town(tmp_path / "t", rigs=("alpha", "beta"))
    settings = write_settings(tmp_path, town, transcript_quiet_seconds=0)
    return town, settings, shared_instance


class Ticker:
    """Evaluates one sensor tick after tick, carrying the cursor the way the daemon does."""

    def __init__(self, name: str, settings: Settings, instance: DagsterInstance) -> None:
        self.sensor = defs.get_repository_def().get_sensor_def(name)
        self.settings, self.instance, self.cursor = settings, instance, None

    def tick(self, config_file: str | None = None):
        ctx = build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            definitions=defs,
            resources={
                "settings": GastownSettings(config_file=config_file or str(self.settings.config_path))
            },
        )
        data = self.sensor.evaluate_tick(ctx)
        if data.cursor is not None:
            self.cursor = data.cursor
        return data


def selection(request) -> list[str]:
    return sorted(k.to_user_string() for k in request.asset_selection)


def test_formulas_sensor_baseline_skip_request_and_settle(setup):
    town, settings, instance = setup
    t = Ticker("formulas_sensor", settings, instance)
    first = t.tick()
    assert not first.run_requests and first.skip_message.startswith("baseline recorded: 3 formula files")
    assert t.cursor
    quiet = t.tick()
    assert not quiet.run_requests
    assert quiet.skip_message == "no change in 3 formula files (alpha: 1, beta: 1, town: 1)"

    added_line = 'description = "edited"\n'
    (town.root / "alpha/.beads/formulas/alpha-work.formula.toml").write_text(
        FORMULA.format(name="alpha-work") + added_line
    )
    (town.root / "beta/.beads/formulas/beta-extra.formula.toml").write_text(FORMULA.format(name="extra"))
    changed = t.tick()
    [request] = changed.run_requests
    assert selection(request) == sorted(["raw_formulas", *CORPUS_STAGES])
    assert request.tags[TRIGGER_TAG] == "sensor:formulas_sensor"
    assert request.tags[REASON_TAG] == (
        f"formula files: 1 added, 1 grew: grew alpha/.beads/formulas/alpha-work.formula.toml (+{len(added_line)} B); "
        "added beta/.beads/formulas/beta-extra.formula.toml"
    )
    assert request.tags[RIGS_TAG] == "alpha,beta"
    assert request.run_key.startswith("formulas:")
    again = t.tick()
    assert not again.run_requests and again.skip_message.startswith("no change in 4 formula files")

    # A cursor this code cannot read (another version, hand-edited) starts a new baseline, no run.
    for unreadable in ("not json", encode_cursor("formulas", {"x": "bad"}), encode_cursor("beads", {})):
        t.cursor = unreadable
        data = t.tick()
        assert not data.run_requests and data.skip_message.startswith("baseline recorded: 4 formula files")


def test_rig_heads_sensor_requests_the_rig_sources(setup):
    town, settings, instance = setup
    t = Ticker("rig_heads_sensor", settings, instance)
    assert t.tick().skip_message.startswith("baseline recorded: 2 rig HEAD(s)")
    skip = t.tick().skip_message
    assert skip.startswith("no rig HEAD moved: checked 2 rig(s) (alpha main@") and "beta main@" in skip
    repo = town.root / "alpha"
    old = (repo / ".git/refs/heads/main").read_text().strip()
    (repo / "CLAUDE.md").write_text("# alpha\nnew rule\n")
    new = commit_all(repo, "a new rule")
    [request] = t.tick().run_requests
    assert selection(request) == sorted(["raw_beads", "raw_conventions", "raw_formulas", *CORPUS_STAGES])
    assert request.tags[REASON_TAG] == f"rig alpha: HEAD {old[:7]} -> {new[:7]} (branch main)"
    assert request.tags[RIGS_TAG] == "alpha"
    assert request.tags[TRIGGER_TAG] == "sensor:rig_heads_sensor"

    # Switching back and forth requests a run each time: the same state again is not a retried tick.
    keys = {request.run_key}
    git(repo, "branch", "feature")
    for branch in ("feature", "main", "feature"):
        git(repo, "checkout", "-q", branch)
        [switch] = t.tick().run_requests
        assert switch.tags[REASON_TAG].startswith("rig alpha: branch ")
        assert switch.tags[REASON_TAG].split(" (")[0].endswith(f"-> {branch}")
        keys.add(switch.run_key)
    assert len(keys) == 4

    shutil.rmtree(town.root / "beta")
    [request] = t.tick().run_requests
    assert request.tags[REASON_TAG] == "rig beta: removed from the town"
    assert not t.tick().run_requests


def test_transcripts_wait_until_quiet(setup, tmp_path):
    town, settings, instance = setup
    slow = write_settings(tmp_path / "slow", town, transcript_quiet_seconds=3600)
    t = Ticker("transcripts_sensor", slow, instance)
    assert t.tick().skip_message.startswith("baseline recorded: 2 transcripts (alpha: 1, beta: 1)")
    path = town.transcript("alpha")
    with open(path, "a") as fh:
        fh.write(transcript_line(1))
    waiting = t.tick()
    assert (
        not waiting.run_requests
        and "1 still being written (counted once quiet for 3600s)" in waiting.skip_message
    )
    past = time.time() - 7200
    os.utime(path, (past, past))  # the session has been quiet for two hours now
    [request] = t.tick().run_requests
    assert selection(request) == sorted(["raw_transcripts", *CORPUS_STAGES])
    assert request.tags[REASON_TAG].startswith("transcripts: 1 grew: grew claude-projects/")
    assert request.tags[RIGS_TAG] == "alpha"


def test_beads_sensor_and_a_missing_town_or_config_never_crash(setup, tmp_path):
    town, settings, instance = setup
    t = Ticker("beads_sensor", settings, instance)
    t.tick()
    (town.root / "beta/.beads/issues.jsonl").write_text('{"id": "be-1"}\n{"id": "be-2"}\n')
    [request] = t.tick().run_requests
    assert selection(request) == sorted(["raw_beads", *CORPUS_STAGES])
    cursor = t.cursor

    hidden = town.root.with_name("town-moved")
    town.root.rename(hidden)
    gone = t.tick()
    assert not gone.run_requests and "cannot list the town root" in gone.skip_message
    assert t.cursor == cursor  # kept: a town that is away is not an empty town
    hidden.rename(town.root)
    assert t.tick().skip_message.startswith("no change in 3 beads exports")

    broken = tmp_path / "broken.toml"
    broken.write_text("[town\n")
    bad = t.tick(config_file=str(broken))
    assert (
        not bad.run_requests
        and "could not be loaded" in bad.skip_message
        and "not valid TOML" in bad.skip_message
    )


def test_a_source_left_out_of_town_sources_is_not_watched(setup, tmp_path):
    town, _settings, instance = setup
    settings = write_settings(tmp_path / "nof", town)
    text = settings.config_path.read_text().replace(
        'sources = ["formulas", "beads", "conventions", "transcripts", "events"]', 'sources = ["beads"]'
    )
    settings.config_path.write_text(text)
    data = Ticker("formulas_sensor", load_settings(settings.config_path), instance).tick()
    assert data.skip_message == "formulas is not in town.sources"


# -- retraining -----------------------------------------------------------------------------------------
def record(instance, asset: str, **metadata) -> None:
    instance.report_runless_asset_event(AssetMaterialization(asset_key=AssetKey(asset), metadata=metadata))


def test_retrain_sensor_follows_the_threshold(tmp_path):
    settings = write_settings(tmp_path, make_small_town(tmp_path / "t"))  # retrain_threshold: 0.1
    with fresh_instance(tmp_path) as instance:
        check_retrain_sensor(settings, instance)


def check_retrain_sensor(settings, instance):
    t = Ticker("retrain_sensor", settings, instance)
    assert t.tick().skip_message.startswith("corpus_splits has never been built")
    record(instance, "corpus_splits", corpus_version="v1" * 8, corpus_change_fraction=1.0)
    [first] = t.tick().run_requests
    assert first.job_name in (None, "retrain") and first.tags[TRIGGER_TAG] == "sensor:retrain_sensor"
    assert "no adapter trained yet" in first.tags[REASON_TAG]
    assert t.tick().skip_message.startswith("no new corpus_splits build")

    record(instance, "lora_adapter", corpus_version="v1" * 8)
    record(instance, "corpus_splits", corpus_version="v2" * 8, corpus_change_fraction=0.04)
    small = t.tick()
    assert not small.run_requests
    assert (
        small.skip_message.startswith("corpus changed 4.0% over 1 build(s)") and "10.0%" in small.skip_message
    )
    record(instance, "corpus_splits", corpus_version="v3" * 8, corpus_change_fraction=0.07)
    [second] = t.tick().run_requests
    assert second.tags[REASON_TAG].startswith("corpus changed 11.0% over 2 build(s)")
    assert second.run_key != first.run_key

    record(instance, "lora_adapter", corpus_version="v3" * 8)
    record(instance, "corpus_splits", corpus_version="v4" * 8)  # no corpus_change_fraction: a full change
    [third] = t.tick().run_requests
    assert "100.0%" in third.tags[REASON_TAG]


def test_retrain_schedule_skips_when_the_adapter_is_current(tmp_path):
    with fresh_instance(tmp_path) as instance:
        check_retrain_schedule(instance)


def check_retrain_schedule(instance):
    [_refresh, retrain] = make_schedules(AutomationConfig())

    def evaluate():
        with build_schedule_context(instance=instance) as ctx:
            return retrain.evaluate_tick(ctx)

    assert "never been built" in evaluate().skip_message
    record(instance, "corpus_splits", corpus_version="abc" * 5)
    [request] = evaluate().run_requests
    assert request.tags[TRIGGER_TAG] == "schedule:retrain_schedule"
    record(instance, "lora_adapter", corpus_version="abc" * 5)
    assert evaluate().skip_message.startswith("the adapter is already trained on corpus abcabc")


# -- switches --------------------------------------------------------------------------------------------
def test_switches_set_default_statuses_and_a_broken_config_falls_back(tmp_path, monkeypatch, caplog):
    on = AutomationConfig(formulas_sensor=False, retrain_sensor=True, sensor_interval_seconds=7)
    statuses = {s.name: (s.default_status, s.minimum_interval_seconds) for s in town_sensors(on)}
    assert statuses["formulas_sensor"] == (DefaultSensorStatus.STOPPED, 7)
    assert statuses["rig_heads_sensor"] == (DefaultSensorStatus.RUNNING, 7)
    assert statuses["transcripts_sensor"] == (DefaultSensorStatus.RUNNING, 300)
    refresh, retrain = make_schedules(
        AutomationConfig(retrain_schedule=True, corpus_refresh_cron="30 2 * * 1")
    )
    assert (refresh.default_status, refresh.cron_schedule) == (DefaultScheduleStatus.RUNNING, "30 2 * * 1")
    assert retrain.default_status == DefaultScheduleStatus.RUNNING

    # February 30th passes the config's field check, but the scheduler refuses it: the default is used.
    with caplog.at_level(logging.WARNING, logger="gastown_ft.sensors"):
        refresh, _ = make_schedules(AutomationConfig(corpus_refresh_cron="0 0 30 2 *"))
    assert refresh.cron_schedule == AutomationConfig().corpus_refresh_cron
    assert "not accepted by the scheduler" in caplog.text

    path = tmp_path / "gastown-ft.toml"
    path.write_text('[automation]\nretrain_sensor = true\ncorpus_refresh_cron = "61 * * * *"\n')
    monkeypatch.setenv(CONFIG_ENV, str(path))
    with caplog.at_level(logging.WARNING, logger="gastown_ft.sensors"):
        assert automation_config_at_load() == AutomationConfig()
    assert "corpus_refresh_cron" in caplog.text and "cron" in caplog.text
    path.write_text('[automation]\nretrain_sensor = true\ntimezone = "Europe/Berlin"\n')
    loaded = automation_config_at_load()
    assert loaded.retrain_sensor and loaded.timezone == "Europe/Berlin"
