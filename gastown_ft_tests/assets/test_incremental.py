"""Incremental corpus builds through the Dagster assets: a second materialization after a formula edit
reuses the unchanged work, reports it in the metadata, and leaves the outputs of a clean build."""

from __future__ import annotations

from dagster import AssetKey, DagsterInstance

from gastown_ft.artifacts import ArtifactStore
from gastown_ft.corpus import stages
from gastown_ft.corpus.documents import SOURCES
from gastown_ft.corpus.reuse import output_differences
from gastown_ft.corpus.town_edits import edit_formula, formula_files
from gastown_ft.demo.town import build_demo_town
from gastown_ft.orchestrate import asset_names_through, materialize_assets
from gastown_ft_tests.assets.test_sources import write_config


def _meta(instance: DagsterInstance, asset: str) -> dict:
    event = instance.get_latest_materialization_event(AssetKey(asset))
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def _clean_build(settings, artifacts) -> None:
    store = ArtifactStore(artifacts)
    for s in SOURCES:
        stages.read_stage(settings.town, store, s, reuse=False)
    stages.scrub_stage(store, reuse=False, town_root=settings.town.root)
    corpus = settings.corpus.model_copy(update={"reuse": False})
    stages.pairs_stage(store, corpus)
    stages.splits_stage(store, corpus)
    stages.quarantine_stage(settings.town, store)


def test_second_materialization_reuses_and_reports_the_change(tmp_path):
    demo = build_demo_town(tmp_path / "town", seed=9)
    settings = write_config(tmp_path / "run", root=demo.root, claude_projects_dir=demo.claude_projects_dir)
    assets = asset_names_through("corpus_splits")
    with DagsterInstance.local_temp(str(settings.dagster.home)) as instance:
        assert materialize_assets(settings, instance, assets).success
        first = _meta(instance, "corpus_splits")
        assert first["corpus_change_fraction"] == 1.0 and first["examples_added"] == first["row_count"]

        edit_formula(formula_files(demo.root)[0], "Edited: wait for the witness first.")
        assert materialize_assets(settings, instance, assets).success
        splits = _meta(instance, "corpus_splits")
        assert splits["examples_added"] > 0 and splits["examples_removed"] > 0
        expected = (splits["examples_added"] + splits["examples_removed"]) / first["row_count"]
        assert splits["corpus_change_fraction"] == expected and 0 < expected < 0.2
        assert _meta(instance, "raw_beads")["reused"] and not _meta(instance, "raw_formulas")["reused"]
        scrubbed = _meta(instance, "scrubbed_documents")
        assert scrubbed["recomputed_documents"] == 1 and scrubbed["reused_documents"] > 50
        pairs = _meta(instance, "instruction_pairs")
        assert pairs["recomputed_documents"] == 1 and pairs["reused_documents"] > 50
        assert 0 < pairs["validated_examples"] < pairs["row_count"] / 5

    _clean_build(settings, tmp_path / "clean")
    assert output_differences(settings.artifacts.dir, tmp_path / "clean") == []
