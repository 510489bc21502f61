"""The source assets materialized in-process through real Dagster, on the demo town and the samples."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from dagster import AssetKey, DagsterInstance

from gastown_ft.config import (
    ArtifactsConfig,
    DagsterConfig,
    Settings,
    TownConfig,
    load_settings,
    render_settings_toml,
)
from gastown_ft.corpus.documents import SOURCES
from gastown_ft.definitions import defs
from gastown_ft.orchestrate import all_asset_names, asset_names_through, materialize_assets
from gastown_ft.status import asset_status
from gastown_ft_tests.unprivileged import run_as_nobody


def write_config(dir_: Path, **town) -> Settings:
    dir_.mkdir(parents=True, exist_ok=True)
    cfg = Settings(
        town=TownConfig(**town),
        artifacts=ArtifactsConfig(dir=dir_ / "artifacts"),
        dagster=DagsterConfig(home=dir_ / "dagster"),
    )
    path = dir_ / "gastown-ft.toml"
    path.write_text(render_settings_toml(cfg))
    (dir_ / "dagster").mkdir(exist_ok=True)
    return load_settings(path)


CORPUS_ASSETS = asset_names_through("corpus_splits")


def run_all(settings: Settings, instance: DagsterInstance):
    """Every asset up to the splits (training has its own tests, with a tiny model)."""
    result = materialize_assets(settings, instance, CORPUS_ASSETS)
    assert result.success, [e.message for e in result.all_events if e.is_step_failure]
    return result


def table(settings: Settings, stage: str, name: str):
    return pq.read_table(settings.artifacts.dir / stage / f"{name}.parquet").to_pylist()


def test_definitions_load():
    from dagster import Definitions

    Definitions.validate_loadable(defs)
    assert set(all_asset_names()) >= {f"raw_{s}" for s in SOURCES} | {"quarantine"}
    graph = defs.resolve_asset_graph()
    assert {graph.get(AssetKey(f"raw_{s}")).group_name for s in SOURCES} == {"sources"}
    assert graph.get(AssetKey("quarantine")).parent_keys == {AssetKey(f"raw_{s}") for s in SOURCES} | {
        AssetKey("scrubbed_documents")
    }
    assert graph.get(AssetKey("corpus_splits")).parent_keys == {AssetKey("instruction_pairs")}
    assert graph.get(AssetKey("instruction_pairs")).parent_keys == {AssetKey("scrubbed_documents")}
    assert graph.get(AssetKey("lora_adapter")).parent_keys == {
        AssetKey("corpus_splits"),
        AssetKey("base_model"),
    }
    assert {graph.get(AssetKey(n)).group_name for n in ("base_model", "lora_adapter")} == {"training"}
    # Training runs carry the tag the run queue limits to one at a time.
    assert defs.get_job_def("train").tags["gastown-ft/stage"] == "training"
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert checks == {
        ("scrubbed_documents", "schema"),
        ("scrubbed_documents", "no_secret_residue"),
        ("instruction_pairs", "schema"),
        ("instruction_pairs", "no_secret_residue"),
        ("instruction_pairs", "token_lengths"),
        ("instruction_pairs", "roles_in_order"),
        ("corpus_splits", "schema"),
        ("corpus_splits", "no_group_in_two_splits"),
        ("eval_report", "tuned_not_worse_than_base"),
    }
    # The evaluation gates the release: exported_model hangs below eval_report, whose check is blocking.
    assert graph.get(AssetKey("exported_model")).parent_keys == {AssetKey("eval_report")}
    assert graph.get(AssetKey("eval_report")).group_name == "evaluation"
    assert graph.get(AssetKey("exported_model")).group_name == "release"


@pytest.fixture(scope="module")
def demo_run(demo_town, tmp_path_factory):
    settings = write_config(
        tmp_path_factory.mktemp("demo-run"),
        root=demo_town.root,
        claude_projects_dir=demo_town.claude_projects_dir,
    )
    with DagsterInstance.local_temp(str(settings.dagster.home)) as instance:
        result = run_all(settings, instance)
        yield settings, instance, result


def test_demo_town_every_source_has_documents(demo_run):
    settings, instance, _ = demo_run
    state = asset_status(instance)
    for source in SOURCES:
        rows = table(settings, "raw", source)
        assert rows, f"no {source} documents"
        meta = state[f"raw_{source}"]["metadata"]
        assert meta["row_count"] == len(rows)
        assert meta["bytes"] == sum(r["bytes"] for r in rows)
        assert state[f"raw_{source}"]["outputs"]["path"].endswith(f"raw/{source}.parquet")
        for r in rows:  # provenance on every row
            assert r["doc_id"] and r["content_hash"] and r["path"] and r["mtime"]
    assert state["quarantine"]["materialized"]


def test_demo_town_provenance(demo_run, demo_town):
    settings, _, _ = demo_run
    heads = {
        rig: subprocess.run(
            ["git", "-C", str(demo_town.repo(rig)), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for rig in demo_town.rigs
    }
    formulas = table(settings, "raw", "formulas")
    rig_rows = [r for r in formulas if r["rig"]]
    assert rig_rows and all(r["commit"] == heads[r["rig"]] for r in rig_rows)
    transcripts = table(settings, "raw", "transcripts")
    assert {r["role"] for r in transcripts} >= {"mayor", "polecat", "witness", "refinery"}
    assert {r["kind"] for r in transcripts} == {"main", "sidechain"}
    tiers = {json.loads(r["meta"])["tier"] for r in formulas}
    assert tiers == {"rig", "town", "embedded"}
    assert {r["kind"] for r in formulas} == {"workflow", "convoy", "expansion", "aspect"}


def test_demo_town_bad_inputs_are_quarantined_with_reasons(demo_run, demo_town):
    settings, _, _ = demo_run
    q = table(settings, "corpus", "quarantine")
    got = {(r["path"], r["reason"]) for r in q}
    for rel, reason in demo_town.bad_inputs:
        assert any(path.endswith(rel) and why == reason for path, why in got), (rel, reason, got)


def test_demo_town_formula_files_all_accounted_for(demo_run, demo_town):
    settings, _, _ = demo_run
    copies = tuple(f"{rel}/" for rel in demo_town.copies)  # worktrees and crew clones: not read again
    on_disk = {
        p.relative_to(demo_town.root).as_posix()
        for pattern in ("*.formula.toml", "*.formula.json")
        for p in demo_town.root.rglob(pattern)
    }
    on_disk = {p for p in on_disk if not p.startswith(copies)}
    read = {r["path"] for r in table(settings, "raw", "formulas")}
    quarantined = {r["path"] for r in table(settings, "quarantine", "formulas")}
    assert on_disk == read | quarantined and not read & quarantined


def test_status_json_lists_every_asset(demo_run):
    settings, _, _ = demo_run
    env = {**os.environ, "GASTOWN_FT_CONFIG": str(settings.config_path)}
    out = subprocess.run(
        [sys.executable, "-m", "gastown_ft.cli", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    state = json.loads(out.stdout)
    assert set(state) == set(all_asset_names())
    assert {name for name in state if state[name]["materialized"]} == set(CORPUS_ASSETS)
    assert state["raw_formulas"]["numbers"]["row_count"] > 0
    assert state["raw_formulas"]["failed_checks"] == []


# -- the real samples ---------------------------------------------------------------------------------

CONVENTION_GLOBS = ("CLAUDE.md", "*-CLAUDE.md", "AGENTS.md", "AGENT_INSTRUCTIONS.md", "*.md.tmpl")


@pytest.mark.shared
def test_shared_samples_zero_lost(shared_samples, tmp_path):
    settings = write_config(tmp_path, root=shared_samples, claude_projects_dir=tmp_path / "none")
    with DagsterInstance.local_temp(str(settings.dagster.home)) as instance:
        run_all(settings, instance)
        state = asset_status(instance)
    # The whole corpus was built from the real samples, and every check passed.
    for name in ("scrubbed_documents", "instruction_pairs", "corpus_splits"):
        assert state[name]["failed_checks"] == [] and state[name]["metadata"]["row_count"] > 0, name
    assert state["scrubbed_documents"]["metadata"]["redactions_by_kind"].get("email", 0) > 0
    assert {"bead_create", "formula_steps", "convention_qa"} <= set(
        state["instruction_pairs"]["metadata"]["by_task"]
    )
    quarantined = {r["path"] for r in table(settings, "corpus", "quarantine")}

    def accounted(source: str, files: set[str]) -> None:
        read = {r["path"] for r in table(settings, "raw", source)}
        lost = {f for f in files if f not in read and f not in quarantined}
        assert not lost, f"{source}: lost {sorted(lost)}"

    rel = lambda ps: {p.relative_to(shared_samples).as_posix() for p in ps}  # noqa: E731
    formula_files = rel(shared_samples.rglob("*.formula.toml")) | rel(shared_samples.rglob("*.formula.json"))
    assert len(formula_files) >= 40
    accounted("formulas", formula_files)

    convention_files = set().union(*(rel(shared_samples.rglob(g)) for g in CONVENTION_GLOBS))
    convention_files |= rel(p for p in shared_samples.rglob("*.md") if "/.claude/" in p.as_posix())
    convention_files |= rel(shared_samples.rglob("config/roles/*.toml"))
    assert len(convention_files) >= 30
    accounted("conventions", convention_files)

    # Beads: every non-tombstone row of every issues.jsonl is a document, or its line is quarantined,
    # or the same version of that bead was read from another file (a backup beside the export:
    # counted as a duplicate, not lost).
    beads = table(settings, "raw", "beads")
    qlines = {(r["path"], r["line"]) for r in table(settings, "corpus", "quarantine")}
    read_ids = {r["key"] for r in beads}
    for f in shared_samples.rglob("issues.jsonl"):
        path = f.relative_to(shared_samples).as_posix()
        live = [
            (i, json.loads(line).get("id"))
            for i, line in enumerate(f.read_text().splitlines(), 1)
            if line.strip() and json.loads(line).get("status") != "tombstone"
        ]
        docs = [r for r in beads if r["path"] == path]
        lost = [i for i, bead in live if (path, i) not in qlines and bead not in read_ids]
        assert not lost, f"{path}: lines {lost[:10]} neither read, quarantined nor read elsewhere"
        assert len(docs) <= len(live), path


# -- bad input: each ends in quarantine with its reason, and the run succeeds ----------------------------


def build_bad_town(root: Path, projects: Path) -> dict[str, str]:
    """Write one of each kind of bad input; returns {relative path: expected reason}."""
    from gastown_ft.corpus.transcripts import encode_project_dir

    (root / ".beads/formulas").mkdir(parents=True)
    (root / "alpha/.beads").mkdir(parents=True)
    (root / ".beads/formulas/ok.formula.toml").write_text('formula="ok"\n[[steps]]\nid="a"\n')
    (root / ".beads/formulas/bad.formula.toml").write_text("formula = [unclosed\n")
    (root / ".beads/formulas/empty.formula.toml").write_text("")
    (root / ".beads/formulas/cycle.formula.toml").write_text(
        'formula="c"\n[[steps]]\nid="a"\nneeds=["b"]\n[[steps]]\nid="b"\nneeds=["a"]\n'
    )
    (root / "alpha/.beads/issues.jsonl").write_text('{"id":"al-1","title":"ok"}\n[1,2]\n')
    (root / "alpha/CLAUDE.md").write_text("")
    (root / ".events.jsonl").write_bytes(b"\x00\x01\x02\x03" * 100)
    (root / "alpha/AGENTS.md").symlink_to(root / "alpha/loop.md")
    (root / "alpha/loop.md").symlink_to(root / "alpha/AGENTS.md")
    sessions = projects / encode_project_dir(root / "alpha/polecats/nux")
    sessions.mkdir(parents=True)
    line = (
        json.dumps(
            {
                "type": "user",
                "uuid": "u",
                "parentUuid": None,
                "sessionId": "s",
                "message": {"role": "user", "content": "x" * 1000},
            }
        )
        + "\n"
    )
    with open(sessions / "0f0f0f0f-0000-4000-8000-000000000000.jsonl", "w") as fh:
        for _ in range(50 * 1024):  # ~50 MB
            fh.write(line)
    return {
        ".beads/formulas/bad.formula.toml": "invalid_toml",
        ".beads/formulas/empty.formula.toml": "empty_file",
        ".beads/formulas/cycle.formula.toml": "needs_cycle",
        "alpha/.beads/issues.jsonl": "not_an_object",
        "alpha/CLAUDE.md": "empty_file",
        ".events.jsonl": "binary_file",
        "alpha/AGENTS.md": "symlink_loop",
        "0f0f0f0f-0000-4000-8000-000000000000.jsonl": "too_large",
    }


@pytest.mark.slow
def test_bad_inputs_end_in_quarantine_and_the_run_succeeds(tmp_path):
    root, projects = tmp_path / "town", tmp_path / "projects"
    expected = build_bad_town(root, projects)
    settings = write_config(tmp_path / "cfg", root=root, claude_projects_dir=projects, max_file_mb=20)
    with DagsterInstance.local_temp(str(settings.dagster.home)) as instance:
        run_all(settings, instance)
    got = {(r["path"], r["reason"]) for r in table(settings, "corpus", "quarantine")}
    for rel, reason in expected.items():
        assert any(p.endswith(rel) and why == reason for p, why in got), (rel, reason, sorted(got))
    assert [r["key"] for r in table(settings, "raw", "formulas")] == ["ok"]
    assert [r["key"] for r in table(settings, "raw", "beads")] == ["al-1"]


def read_formulas_as_nobody(root: Path) -> dict:
    """Run the formulas reader in a forked child that dropped to an unprivileged user when root."""
    from gastown_ft.config import TownConfig
    from gastown_ft.corpus.documents import ReadLog
    from gastown_ft.corpus.scan import TownScan
    from gastown_ft.corpus.sources import READERS

    def read() -> dict:
        log = ReadLog()
        docs = [
            d.path
            for d in READERS["formulas"](TownScan(TownConfig(root=root, claude_projects_dir=root)), log)
        ]
        return {"docs": docs, "q": [[q.path, q.reason] for q in log.quarantined]}

    return run_as_nobody(read)


def test_unreadable_file_is_quarantined():
    # As root every file is readable, so the reader runs as an unprivileged user there.
    base = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        base.chmod(0o755)
        formulas = base / "town/.beads/formulas"
        formulas.mkdir(parents=True)
        for d in (base / "town", base / "town/.beads", formulas):
            d.chmod(0o755)
        (formulas / "ok.formula.toml").write_text('formula="ok"\n[[steps]]\nid="a"\n')
        (formulas / "ok.formula.toml").chmod(0o644)
        (formulas / "locked.formula.toml").write_text('formula="locked"\n[[steps]]\nid="a"\n')
        (formulas / "locked.formula.toml").chmod(0o000)
        res = read_formulas_as_nobody(base / "town")
        assert res.get("docs") == [".beads/formulas/ok.formula.toml"], res
        assert res["q"] == [[".beads/formulas/locked.formula.toml", "unreadable"]]
    finally:
        shutil.rmtree(base)
