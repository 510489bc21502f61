"""The corpus stages through real Dagster on the demo town: checks pass, no planted secret survives,
splits are stable when the town grows, and the dataset loads with `datasets`."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance

from gastown_ft.orchestrate import materialize_assets
from gastown_ft.status import asset_status
from gastown_ft_tests.assets.test_sources import CORPUS_ASSETS, run_all, table, write_config


def split_of(settings) -> dict[str, str]:
    out = {}
    for split in ("train", "validation", "test"):
        path = settings.artifacts.dir / "corpus" / "splits" / "data" / f"{split}.parquet"
        if path.exists():
            for eid in pq.read_table(path, columns=["example_id"])["example_id"].to_pylist():
                out[eid] = split
    return out


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory):
    # A private demo town (same seed as the shared one): the stability test adds to it.
    from gastown_ft.demo.town import build_demo_town

    work = tmp_path_factory.mktemp("corpus-run")
    town = build_demo_town(work / "demo", seed=7)
    root = town.root
    settings = write_config(work / "cfg", root=root, claude_projects_dir=town.claude_projects_dir)
    with DagsterInstance.local_temp(str(settings.dagster.home)) as instance:
        run_all(settings, instance)
        yield settings, instance, root


def test_every_check_passed_and_every_stage_has_rows(corpus_run):
    _, instance, _ = corpus_run
    state = asset_status(instance)
    for name in ("scrubbed_documents", "instruction_pairs", "corpus_splits"):
        assert state[name]["materialized"] and state[name]["checks"]
        assert state[name]["failed_checks"] == [], name
        assert state[name]["metadata"]["row_count"] > 0
    by_task = state["instruction_pairs"]["metadata"]["by_task"]
    for task in (
        "formula_explain",
        "formula_steps",
        "formula_next_step",
        "formula_author",
        "formula_vars",
        "bead_create",
        "bead_update",
        "bead_close",
        "bead_deps",
        "bead_triage",
        "convention_qa",
        "agent_turns",
    ):
        assert by_task.get(task, 0) > 0, task
    assert state["scrubbed_documents"]["metadata"]["redactions"] > 0


def test_no_planted_secret_survives(corpus_run, demo_town):
    settings, _, _ = corpus_run
    blobs = []
    for stage, name in (("corpus", "scrubbed_documents"), ("corpus", "instruction_pairs")):
        t = pq.read_table(settings.artifacts.dir / stage / f"{name}.parquet")
        blobs.append(json.dumps(t.to_pylist(), default=str))
    for split in (settings.artifacts.dir / "corpus" / "splits" / "data").glob("*.parquet"):
        blobs.append(json.dumps(pq.read_table(split).to_pylist(), default=str))
    everything = "\n".join(blobs)
    leaked = [(p.kind, p.value) for p in demo_town.planted if len(p.value) >= 8 and p.value in everything]
    assert not leaked
    # ... while the Gas Town strings the corpus needs are still there.
    assert "gt done" in everything and "127.0.0.1" in everything


def test_splits_are_stable_when_the_town_grows(corpus_run):
    settings, instance, root = corpus_run
    before = split_of(settings)
    assert before
    issues = root / "ledger" / "mayor" / "rig" / ".beads" / "issues.jsonl"  # the canonical clone's beads
    with open(issues, "a") as fh:
        fh.write(
            json.dumps(
                {
                    "id": "le-zz9",
                    "title": "Add a CSV dialect sniffer",
                    "status": "open",
                    "priority": 2,
                    "issue_type": "feature",
                    "description": "Guess delimiters.",
                }
            )
            + "\n"
        )
    result = materialize_assets(settings, instance, CORPUS_ASSETS)
    assert result.success
    after = split_of(settings)
    moved = {
        eid: (before[eid], after[eid]) for eid in before.keys() & after.keys() if before[eid] != after[eid]
    }
    assert not moved
    assert len(after.keys() - before.keys()) > 0  # the new bead brought new examples
    assert any(eid for eid in after.keys() - before.keys())


def test_the_dataset_loads_with_datasets(corpus_run):
    import datasets

    settings, _, _ = corpus_run
    ds = datasets.load_dataset(str(settings.artifacts.dir / "corpus" / "splits"))
    assert set(ds) <= {"train", "validation", "test"} and ds["train"].num_rows > 0
    row = ds["train"][0]
    assert row["messages"][0]["role"] == "system" and row["task"]


def test_quarantine_lists_every_stage(corpus_run):
    settings, _, _ = corpus_run
    q = table(settings, "corpus", "quarantine")
    assert {r["reason"] for r in q} >= {
        "needs_cycle",
        "invalid_toml",
        "unknown_step",
        "not_an_object",
        "truncated_last_line",
    }
