"""Town reporting through real Dagster runs of stand-in assets: the bd/gt commands a run sends (checked
against the gt/bd grammar), the feed events, the bead in the metadata, failure, refusal, and the outbox
when bd and gt are not installed."""

from __future__ import annotations

import json
import shlex

import pytest
from dagster import DagsterInstance

from gastown_ft.corpus.grammar import validate_command
from gastown_ft.instance import latest_metadata
from gastown_ft.town import clis
from gastown_ft.town.feed import read_events
from gastown_ft.town.outbox import Outbox
from gastown_ft.town.reporting import with_town_bead
from gastown_ft_tests.town import standins
from gastown_ft_tests.town.fake_clis import install_fake_clis, recorded


@pytest.fixture
def town(tmp_path, monkeypatch):
    """Settings with reporting on, fake bd/gt on PATH, a fast clock for the progress limit."""
    install_fake_clis(tmp_path / "bin", tmp_path / "calls.jsonl", monkeypatch)
    clock = iter(range(0, 10**9, 100))
    monkeypatch.setattr("gastown_ft.town.hooks.time.monotonic", lambda: next(clock))
    monkeypatch.setattr(standins, "BEHAVIOUR", {"fail_training": False, "eval_passes": True})
    settings = standins.reporting_settings(tmp_path / "w", progress_every_s=60)
    with DagsterInstance.ephemeral() as instance:
        yield settings, instance, tmp_path / "calls.jsonl"


def _commands(log) -> list[list[str]]:
    return [c["argv"] for c in recorded(log)]


def _assert_grammatical(argvs: list[list[str]]) -> None:
    for argv in argvs:
        check = validate_command(shlex.join(argv))
        assert check.ok, (argv, check.errors)


def test_a_full_run_tells_its_story_in_bead_feed_and_mail(town):
    settings, instance, log = town
    result = standins.run(settings, instance)
    assert result.success
    calls = _commands(log)
    _assert_grammatical(calls)
    paths = [" ".join(a[:3] if a[1] in ("comments", "mail") else a[:2]) for a in calls]
    assert paths[0] == "bd create" and paths[-1] == "gt mail send"
    assert paths.count("bd create") == 1  # one bead for the run
    create = calls[0]
    assert "--labels" in create and create[create.index("--labels") + 1] == "gastown-ft,training"
    bead = latest_metadata(instance, "lora_adapter")["town_bead"]
    assert bead.startswith("hq-")
    for asset in ("eval_report", "exported_model"):
        assert latest_metadata(instance, asset)["town_bead"] == bead
    assert ["bd", "update", bead, "--status", "in_progress", "--actor", "gastown-ft"] in calls
    comments = [a[4] for a in calls if a[1:3] == ["comments", "add"]]
    assert any(c.startswith("training: lora: step") for c in comments)  # progress
    assert any("trained 3 steps" in c and "2.5000 -> 1.2500" in c for c in comments)
    assert any("evaluation passed" in c and "suite_score: 0.5400 -> 0.6100" in c for c in comments)
    close = next(a for a in calls if a[1] == "close")
    assert close[2] == bead and "exported v1 and promoted" in close[close.index("--reason") + 1]
    mail = calls[-1]
    assert mail[3] == "mayor/"
    subject, body = mail[mail.index("-s") + 1], mail[mail.index("-m") + 1]
    assert "succeeded" in subject and "v1" in subject
    for part in ("What ran:", "corpus built: 120 examples", "Base vs tuned", "Where the model is", "Next:"):
        assert part in body
    # every bd call ran in the town root (the town's own beads, hq-)
    assert {c["cwd"] for c in recorded(log) if c["argv"][0] == "bd"} == {str(settings.town.root)}
    events = read_events(settings.town.root / ".events.jsonl")
    assert all(set(e) == {"ts", "source", "type", "actor", "payload", "visibility"} for e in events)
    kinds = [(e["type"], e["payload"]["stage"]) for e in events]
    assert kinds[0] == ("ft_succeeded", "corpus")
    assert ("ft_started", "training") in kinds and ("ft_progress", "training") in kinds
    assert kinds[-2:] == [("ft_succeeded", "export"), ("ft_succeeded", "promotion")]
    assert sum(1 for k in kinds if k == ("ft_started", "training")) == 1


def test_a_rig_bead_is_made_in_the_rigs_canonical_clone(town, tmp_path):
    settings, instance, log = town
    clone = settings.town.root / "ledger" / "mayor" / "rig"
    clone.mkdir(parents=True)
    settings = settings.model_copy(
        update={"town_reporting": settings.town_reporting.model_copy(update={"rig": "ledger"})}
    )
    from gastown_ft.config import render_settings_toml

    settings.config_path.write_text(render_settings_toml(settings))
    assert standins.run(settings, instance).success
    assert {c["cwd"] for c in recorded(log) if c["argv"][0] == "bd"} == {str(clone)}


def test_failure_blocks_the_bead_and_the_next_training_takes_it_over(town, monkeypatch):
    settings, instance, log = town
    monkeypatch.setitem(standins.BEHAVIOUR, "fail_training", True)
    assert not standins.run(settings, instance).success
    calls = _commands(log)
    _assert_grammatical(calls)
    bead = [a for a in calls if a[1] == "update"][0][2]
    assert ["bd", "update", bead, "--status", "blocked", "--actor", "gastown-ft"] in calls
    mail = calls[-1]
    assert mail[:3] == ["gt", "mail", "send"] and "FAILED in training" in mail[mail.index("-s") + 1]
    assert "resumes from the last checkpoint" in mail[mail.index("-m") + 1]
    assert not any(a[1] == "close" for a in calls)

    monkeypatch.setitem(standins.BEHAVIOUR, "fail_training", False)
    assert standins.run(settings, instance).success
    again = _commands(log)[len(calls) :]
    assert not any(a[1] == "create" for a in again)  # the same training, the same bead
    assert any(
        a[1:3] == ["comments", "add"] and a[3] == bead and a[4].startswith("resumed by run") for a in again
    )
    assert latest_metadata(instance, "lora_adapter")["town_bead"] == bead


def test_a_gate_refusal_closes_the_bead_with_the_reason_and_mails(town, monkeypatch):
    settings, instance, log = town
    monkeypatch.setitem(standins.BEHAVIOUR, "eval_passes", False)
    standins.run(settings, instance)
    calls = _commands(log)
    _assert_grammatical(calls)
    close = next(a for a in calls if a[1] == "close")
    assert "refused by the evaluation gate: suite 0.50 is not above base 0.54" in close
    assert "refused" in calls[-1][calls[-1].index("-s") + 1]
    types = [e["type"] for e in read_events(settings.town.root / ".events.jsonl")]
    assert "ft_refused" in types and "ft_succeeded" in types
    assert not any(
        e["payload"]["stage"] == "export" for e in read_events(settings.town.root / ".events.jsonl")
    )


def test_without_bd_and_gt_the_run_succeeds_and_the_outbox_has_it_all(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(clis, "_said", set())
    monkeypatch.setattr(standins, "BEHAVIOUR", {"fail_training": False, "eval_passes": True})
    settings = standins.reporting_settings(tmp_path / "w")
    with DagsterInstance.ephemeral() as instance:
        result = standins.run(settings, instance)
        assert result.success
        warnings = [
            e.message
            for e in instance.all_logs(result.run_id)
            if e.message and "is not installed" in e.message
        ]
        assert len(warnings) == 2  # bd and gt, each said once
        bead = latest_metadata(instance, "lora_adapter")["town_bead"]
    assert bead.startswith("outbox:")
    records = Outbox(settings.artifacts.dir).records()
    kinds = [r["kind"] for r in records]
    assert kinds[0] == "bead_create" and kinds[-1] == "mail" and "bead_close" in kinds
    _assert_grammatical([r["argv"] for r in records])
    assert all(r["why"].endswith("(not found on PATH as 'bd')") or "'gt'" in r["why"] for r in records)
    # the events still reach the feed: that is a file, no gt needed
    assert read_events(settings.town.root / ".events.jsonl")
    assert Outbox(settings.artifacts.dir).summary()["by_kind"]["mail"] == 1


def test_the_registry_manifest_carries_the_bead(tmp_path):
    run_dir = tmp_path / "runs" / "abc"
    (run_dir / "adapter").mkdir(parents=True)
    assert with_town_bead({"a": 1}, run_dir / "adapter") == {"a": 1}
    (run_dir / "town.json").write_text(json.dumps({"bead": "hq-12345", "closed": False}))
    assert with_town_bead({"a": 1}, run_dir / "adapter") == {"a": 1, "town_bead": "hq-12345"}


def test_reporting_off_sends_nothing(tmp_path, monkeypatch):
    install_fake_clis(tmp_path / "bin", tmp_path / "calls.jsonl", monkeypatch)
    settings = standins.reporting_settings(tmp_path / "w")
    from gastown_ft.config import render_settings_toml

    off = settings.model_copy(
        update={"town_reporting": settings.town_reporting.model_copy(update={"enabled": False})}
    )
    settings.config_path.write_text(render_settings_toml(off))
    with DagsterInstance.ephemeral() as instance:
        assert standins.run(settings, instance).success
        assert "town_bead" not in latest_metadata(instance, "lora_adapter")
    assert recorded(tmp_path / "calls.jsonl") == []
    assert not (settings.town.root / ".events.jsonl").exists()


def test_status_and_the_closing_note_show_the_outbox_and_the_run(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from gastown_ft import cli
    from gastown_ft.config import CONFIG_ENV
    from gastown_ft.town.status import run_town_lines

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(clis, "_said", set())
    settings = standins.reporting_settings(tmp_path / "w")
    with DagsterInstance.ephemeral() as instance:
        result = standins.run(settings, instance)
    note = "\n".join(run_town_lines(settings, result.run_id))
    assert "event(s) in the feed" in note and "not created: bd is missing" in note
    assert "mail to mayor/: gastown-ft: training run succeeded" in note
    assert "message(s) went to the outbox" in note
    # `gastown-ft status` (an empty instance: only the town's files speak)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))  # (restored afterwards)
    monkeypatch.setenv(CONFIG_ENV, str(settings.config_path))
    monkeypatch.setitem(cli._state, "config", None)
    out = CliRunner().invoke(cli.app, ["--config", str(settings.config_path), "status"])
    assert out.exit_code == 0, out.output
    assert "town reporting: on; last run" in out.output
    assert "town outbox: 7 message(s) the town did not get" in out.output
    assert "bd is not installed" in out.output


def test_a_pause_for_the_town_reaches_the_feed_and_the_bead(town, monkeypatch):
    settings, instance, log = town
    monkeypatch.setitem(standins.BEHAVIOUR, "pause", True)
    assert standins.run(settings, instance, ["base_model", "lora_adapter"]).success
    events = read_events(settings.town.root / ".events.jsonl")
    notes = [(e["type"], e["payload"]["message"]) for e in events if e["type"] in ("ft_paused", "ft_resumed")]
    assert notes[0] == (
        "ft_paused",
        "paused at step 1/3: available memory 100 MB is below the floor of 512 MB",
    )
    assert notes[1][0] == "ft_resumed" and notes[1][1].startswith("resumed after a pause of")
    comments = [a[4] for a in _commands(log) if a[1:3] == ["comments", "add"]]
    assert "training: paused at step 1/3: available memory 100 MB is below the floor of 512 MB" in comments
