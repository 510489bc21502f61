"""Drift: the corpus changed past the retrain threshold since the adapter's corpus while retraining is
off; `status` says so with the change fraction and what changed, and with reporting on, a bead does."""

from __future__ import annotations

import shlex

import pytest
from dagster import AssetMaterialization, DagsterInstance

from gastown_ft.config import AutomationConfig, Settings
from gastown_ft.corpus.grammar import validate_command
from gastown_ft.town.drift import drift_state, drift_text
from gastown_ft.town.status import town_lines, town_state
from gastown_ft_tests.town import standins
from gastown_ft_tests.town.fake_clis import install_fake_clis, recorded


def build(instance, version: str, fraction: float, tasks: dict[str, int], added=0, removed=0) -> None:
    instance.report_runless_asset_event(
        AssetMaterialization(
            "corpus_splits",
            metadata={
                "corpus_version": version,
                "corpus_change_fraction": fraction,
                "examples_added": added,
                "examples_removed": removed,
                "by_split_and_task": {"train": tasks},
            },
        )
    )


def trained_on(instance, version: str) -> None:
    instance.report_runless_asset_event(
        AssetMaterialization("lora_adapter", metadata={"corpus_version": version})
    )


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as inst:
        yield inst


def test_no_drift_below_the_threshold_or_with_the_sensor_on(instance):
    settings = Settings()
    build(instance, "v1", 1.0, {"bead_create": 10})
    trained_on(instance, "v1")
    assert drift_state(instance, settings) is None  # trained on the newest corpus
    build(instance, "v2", 0.04, {"bead_create": 11}, added=1)
    assert drift_state(instance, settings) is None  # 4% < 10%
    build(instance, "v3", 0.07, {"bead_create": 11, "formula_vars": 2}, added=2)
    on = Settings(automation=AutomationConfig(retrain_sensor=True))
    assert drift_state(instance, on) is None  # the sensor retrains by itself


def test_drift_past_the_threshold_says_how_much_and_what_changed(instance):
    build(instance, "v1", 1.0, {"bead_create": 10, "bead_close": 5})
    trained_on(instance, "v1")
    build(instance, "v2", 0.04, {"bead_create": 11, "bead_close": 5}, added=1)
    build(instance, "v3", 0.07, {"bead_create": 11, "bead_close": 4, "formula_vars": 2}, added=2, removed=1)
    d = drift_state(instance, Settings())
    assert d["change_fraction"] == pytest.approx(0.11)
    assert d["builds_since_training"] == 2 and (d["examples_added"], d["examples_removed"]) == (3, 1)
    assert d["by_task"] == {
        "bead_close": {"before": 5, "now": 4},
        "bead_create": {"before": 10, "now": 11},
        "formula_vars": {"before": 0, "now": 2},
    }
    text = drift_text(d)
    assert "changed 11.0%" in text and "threshold 10.0%" in text and "retraining is off" in text
    lines = town_lines(town_state(Settings(), instance))
    assert any(line.startswith("[yellow]drift[/yellow]") and "11.0%" in line for line in lines)


def test_with_reporting_on_a_drift_bead_is_made_once_then_commented_then_closed(tmp_path, monkeypatch):
    install_fake_clis(tmp_path / "bin", tmp_path / "calls.jsonl", monkeypatch)
    monkeypatch.setattr(standins, "BEHAVIOUR", {"fail_training": False, "eval_passes": True})
    settings = standins.reporting_settings(tmp_path / "w")
    with DagsterInstance.ephemeral() as instance:
        build(instance, "old", 1.0, {"bead_create": 3})
        trained_on(instance, "old")
        assert standins.run(settings, instance, ["corpus_splits"]).success  # +100%: drift
        calls = [c["argv"] for c in recorded(tmp_path / "calls.jsonl")]
        assert [a[:2] for a in calls] == [["bd", "create"]]
        create = calls[0]
        assert create[create.index("--labels") + 1] == "gastown-ft,training,drift"
        assert "changed 100.0%" in create[create.index("--description") + 1]
        bead = "hq-" + __import__("hashlib").sha1(b"1").hexdigest()[:5]

        assert standins.run(settings, instance, ["corpus_splits"]).success
        calls = [c["argv"] for c in recorded(tmp_path / "calls.jsonl")]
        assert calls[1][:4] == ["bd", "comments", "add", bead]  # the same bead, not a second one

        assert standins.run(settings, instance).success  # a training run: the drift bead is done
        calls = [c["argv"] for c in recorded(tmp_path / "calls.jsonl")]
        closes = [a for a in calls if a[1] == "close"]
        assert closes[0][2] == bead and closes[0][4].startswith("retrained in run")
        for argv in calls:
            assert validate_command(shlex.join(argv)).ok, argv
