"""The real pipeline with town reporting on (the corpus build's own events are checked here too: a
separate corpus-only run cost the suite half a minute)."""

from __future__ import annotations

import pytest
from dagster import DagsterInstance

from gastown_ft.config import TownReportingConfig, load_settings, render_settings_toml
from gastown_ft.town.feed import read_events
from gastown_ft_tests.town.fake_clis import install_fake_clis, recorded


@pytest.mark.training
@pytest.mark.slow
def test_a_full_run_of_the_real_pipeline_tells_the_town(tmp_path, monkeypatch):
    """Corpus, tiny embedded model, evaluation (gate opened: the tiny model is barely trained) and
    export, with reporting on: every bd/gt command grammatical, one bead with the whole story."""
    import json
    import shlex

    from gastown_ft.config import EvaluationConfig, ExportConfig
    from gastown_ft.corpus.grammar import validate_command
    from gastown_ft.demo.town import build_demo_town
    from gastown_ft.export.registry import Registry, registry_root
    from gastown_ft.instance import latest_metadata
    from gastown_ft.orchestrate import materialize_assets
    from gastown_ft_tests.tiny import tiny_settings

    install_fake_clis(tmp_path / "bin", tmp_path / "calls.jsonl", monkeypatch)
    town = build_demo_town(tmp_path / "demo", seed=7)
    settings = tiny_settings(tmp_path, town)
    quick = EvaluationConfig(
        max_cases_per_task=2,
        heldout_max_per_task=2,
        guard_docstrings=4,
        max_new_tokens=32,
        suite_min_gain=-1.0,
        suite_floor=0.0,
        guard_max_ppl_ratio=100.0,
    )
    on = settings.model_copy(
        update={
            "town_reporting": TownReportingConfig(enabled=True),
            "evaluation": quick,
            "export": ExportConfig(gguf=False, gguf_quantize=[]),
        }
    )
    settings.config_path.write_text(render_settings_toml(on))
    settings = load_settings(settings.config_path)
    with DagsterInstance.local_temp(str(settings.dagster.home)) as instance:
        result = materialize_assets(settings, instance)
        assert result.success, [e.message for e in result.all_events if e.is_step_failure]
        bead = latest_metadata(instance, "lora_adapter")["town_bead"]
        assert latest_metadata(instance, "exported_model")["town_bead"] == bead
        assert latest_metadata(instance, "lora_adapter")["yield_pauses"] == 0
    calls = [c["argv"] for c in recorded(tmp_path / "calls.jsonl")]
    for argv in calls:
        assert validate_command(shlex.join(argv)).ok, argv
    assert [a[1] for a in calls].count("create") == 1 and calls[0][1] == "create"
    assert calls[-2][1] == "close" and calls[-2][2] == bead
    assert calls[-1][:4] == ["gt", "mail", "send", "mayor/"]
    stories = [a[4].split(" ")[0] for a in calls if a[1:3] == ["comments", "add"]]
    # (base_model needs only the scrubbed documents: the corpus split may finish after training began)
    assert [s for s in stories if s != "corpus"] == ["trained", "evaluation", "exported"]
    ours = read_events(town.root / ".events.jsonl")
    stages = [(e["type"], e["payload"]["stage"]) for e in ours]
    assert stages[0] == ("ft_started", "corpus")
    assert sorted(stages[1:3]) == [("ft_started", "training"), ("ft_succeeded", "corpus")]
    assert stages[3:] == [
        ("ft_succeeded", "training"),
        ("ft_started", "evaluation"),
        ("ft_succeeded", "evaluation"),
        ("ft_started", "export"),
        ("ft_succeeded", "export"),
        ("ft_succeeded", "promotion"),
    ]
    corpus = next(
        e["payload"] for e in ours if (e["type"], e["payload"]["stage"]) == ("ft_succeeded", "corpus")
    )
    f = corpus["figures"]
    assert f["row_count"] == f["train_count"] + f["validation_count"] + f["test_count"] > 0
    assert corpus["message"].startswith(f"corpus built: {f['row_count']:,} examples")
    version = Registry(registry_root(settings)).current()
    assert json.loads((version.path / "manifest.json").read_text())["town_bead"] == bead
