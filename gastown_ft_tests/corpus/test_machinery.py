"""The machinery filter: beads Gas Town's patrols, molecules, mail and merge queue wrote are told apart
from agent work, kept out of the bead tasks (unless `[corpus] machinery = "include"`) and counted."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from gastown_ft.config import CorpusConfig
from gastown_ft.corpus.beads import read_beads
from gastown_ft.corpus.documents import documents_to_table
from gastown_ft.corpus.machinery import classify, machinery_close, summarize, summarize_documents
from gastown_ft.corpus.pairs_beads import build_bead_examples
from gastown_ft_tests.corpus.helpers import commands, source_rows
from gastown_ft_tests.corpus.test_pairs_beads import bead, rows_of

# (bead, kind): every rule of the machinery table, from rows shaped like the real ones.
MACHINERY = [
    # `gt mol squash` of a patrol: the digest the issue quotes
    (
        bead(
            "hq-d1",
            "Digest: mol-deacon-patrol",
            status="closed",
            description="Patrol 8: Stable",
            close_reason="Squashed from 12 wisps",
        ),
        "digest",
    ),
    (bead("hq-d2", "Patrol summary", status="closed", close_reason="Squashed from 1 wisp"), "digest"),
    (bead("gt-gastown-polecat-nux", "gt-gastown-polecat-nux", issue_type="agent", ephemeral=1), "agent"),
    (bead("gt-gastown-polecat-max", "Agent: gt-gastown-polecat-max", labels=["gt:agent"]), "agent"),
    (bead("gt-rig-gastown", "gastown", labels=["gt:rig"]), "agent"),
    (bead("gt-mr1", "Merge: gt-w0br", labels=["gt:merge-request"]), "merge_request"),
    (bead("gt-mr2", "Merge: rictus-mkbxjxrt", created_by="gastown/polecats/rictus"), "merge_request"),
    (bead("bd-m1", "Plugin run: rebuild-gt", issue_type="message"), "message"),
    (bead("bd-m2", "POLECAT_DONE rictus", labels=["delivery:acked"]), "message"),
    (bead("bd-m3", "MERGE_FAILED quartz bd-05an", labels=["gt:message", "from:beads/refinery"]), "message"),
    (bead("gt-m4", "🤝 HANDOFF: Investigate beads-sync divergence (221 files)"), "message"),
    (bead("gt-m5", "refinery Handoff", status="pinned"), "message"),
    (bead("gt-m6", "WORK_DONE: gt-r8m9"), "message"),
    (
        bead(
            "gt-p1",
            "Plugin run: rebuild-gt",
            labels=["plugin:rebuild-gt", "result:success", "type:plugin-run"],
        ),
        "plugin_run",
    ),
    (
        bead(
            "gt-p2", "dolt-janitor: maintenance completed", labels=["plugin:dolt-janitor", "result:success"]
        ),
        "plugin_run",
    ),
    (bead("bd-p3", "Dolt Doctor Diagnostic", created_by="dog"), "plugin_run"),
    (bead("gt-p4", "[PLUGIN] rebuild-gt completed"), "plugin_run"),
    (bead("hq-cv-d46qe", "Work: Flaky test", issue_type="convoy", created_by="mayor"), "convoy"),
    (bead("gt-group-test", "Group: test-group", labels=["gt:group"]), "group"),
    (bead("gt-eph-04p3", "mol-deacon-patrol", issue_type="epic", status="hooked"), "patrol"),
    (bead("gt-x1", "Patrol loop", wisp_type="patrol"), "patrol"),
    (bead("gt-wisp-9q", "mol-polecat-work", ephemeral=True, assignee="gastown/polecats/nux"), "molecule"),
    (bead("gt-wisp-7z", "Check own context limit", ephemeral=True), "wisp"),
    (bead("gt-eph-1", "Run test suite"), "wisp"),
    (bead("gt-w1", "Some step", ephemeral=1), "wisp"),
    (bead("gt-w2", "Some step", ephemeral="true"), "wisp"),
]
# Agent work that merely looks like machinery: these stay in the bead tasks.
WORK = [
    bead("gt-t2bjt", "Skip digest creation for patrol molecules by default", issue_type="feature"),
    bead("gt-mzal", "mol-gastown-boot: Mayor-driven town bootstrap", issue_type="epic"),
    bead("gt-vpy9", "LIFECYCLE:Shutdown beads accumulate as open issues in HQ", issue_type="bug"),
    bead("gt-r8m9", "Dog dispatch fails: dogs have no agent beads", issue_type="bug", created_by="deacon"),
    bead(
        "gt-71h",
        "Consolidate agent hook installers",
        labels=["gt:improvement"],
        created_by="gastown/crew/max",
    ),
    bead("gt-2ab", "Pre-existing test failure", issue_type="bug", created_by="gastown/refinery"),
    bead("gt-0wk", "Merged PRs need a changelog entry", ephemeral=0, wisp_type=""),
    bead("gt-hlp", "HELP wanted on flaky tests", ephemeral=False),
]


@pytest.mark.parametrize(("row", "kind"), MACHINERY, ids=[r["id"] for r, _ in MACHINERY])
def test_machinery_kinds(row, kind):
    assert classify(row) == kind


@pytest.mark.parametrize("row", WORK, ids=[r["id"] for r in WORK])
def test_agent_work_is_not_machinery(row):
    assert classify(row) is None


def test_machinery_closes():
    closed = {"status": "closed"}
    assert machinery_close(closed | {"close_reason": "stale:auto-closed by reaper"}) == "reaper"
    assert machinery_close(closed | {"close_reason": "Squashed from 7 wisps"}) == "squash"
    assert machinery_close(closed | {"close_reason": "patrol cycle complete: Empty queue"}) == "patrol"
    assert machinery_close(closed | {"close_reason": "burned: polecat nuked"}) == "burn"
    assert machinery_close(closed | {"close_reason": "Merged to main at b45d1511"}) is None
    assert machinery_close({"status": "open", "close_reason": "stale:auto-closed by reaper"}) is None


def test_filter_in_the_bead_tasks():
    reaped = bead(
        "gt-old",
        "Split queries.go",
        issue_type="task",
        status="closed",
        close_reason="stale:auto-closed by reaper",
    )
    fixed = bead(
        "gt-fix", "Fix the importer", issue_type="bug", status="closed", close_reason="Fixed in abc123"
    )
    blocked = bead(
        "gt-blk",
        "Wait for the patrol",
        dependencies=[{"issue_id": "gt-blk", "depends_on_id": "gt-wisp-7z", "type": "blocks"}],
    )
    rows = rows_of([r for r, _ in MACHINERY] + [reaped, fixed, blocked] + WORK)
    machinery_ids = {r["id"] for r, _ in MACHINERY}

    examples = list(build_bead_examples(rows, triage_sets=30, seed=2))
    subjects = {e["group_id"].removeprefix("bead:") for e in examples if e["task"] != "bead_triage"}
    assert not subjects & machinery_ids
    assert {"gt-fix", "gt-old", "gt-t2bjt", "gt-r8m9"} <= subjects  # work, even filed by the deacon
    cmds = [c for e in examples for c in commands(e)]
    assert not any("Digest:" in c or "Squashed from" in c or "auto-closed by reaper" in c for c in cmds)
    assert 'bd close gt-fix --reason "Fixed in abc123"' in cmds
    for e in examples:
        if e["task"] == "bead_triage":
            shown = set(re.findall(r"^- `([^`]+)`", e["messages"][1]["content"], flags=re.M))
            assert not shown & machinery_ids
    # A machinery bead still blocks: it is named with its status, not "not in this database".
    blocking = next(e for e in examples if e["messages"][1]["content"] == "What is blocking `gt-blk`?")
    assert "`gt-wisp-7z` — Check own context limit (open)" in blocking["messages"][-1]["content"]

    # "include": the digest and the reaper's close are examples again (wisps stay out, as before).
    included = list(build_bead_examples(rows, triage_sets=30, seed=2, machinery="include"))
    cmds = [c for e in included for c in commands(e)]
    assert any(
        c.startswith('bd create "Digest: mol-deacon-patrol"') and "Patrol 8: Stable" in c for c in cmds
    )
    assert 'bd close hq-d1 --reason "Squashed from 12 wisps"' in cmds
    assert 'bd close gt-old --reason "stale:auto-closed by reaper"' in cmds
    assert not any(e["group_id"] == "bead:gt-wisp-7z" for e in included)
    assert len(included) > len(examples)
    with pytest.raises(ValueError):
        list(build_bead_examples(rows, machinery="maybe"))


def test_summary_counts():
    metas = (
        [r for r, _ in MACHINERY]
        + WORK
        + [bead("gt-old", status="closed", close_reason="stale:auto-closed by reaper")]
    )
    s = summarize(metas, "exclude")
    assert s["beads"] == len(metas) and s["machinery"] == len(MACHINERY)
    assert s["by_kind"] == dict(Counter(k for _, k in MACHINERY).most_common())
    assert s["machinery_closes"] == {"reaper": 1}
    table = documents_to_table([])  # an empty corpus counts nothing
    assert summarize_documents(table, "include") == {
        "mode": "include",
        "beads": 0,
        "machinery": 0,
        "by_kind": {},
        "machinery_closes": {},
    }


def test_config_switch():
    assert CorpusConfig().machinery == "exclude"
    assert CorpusConfig(machinery="include").machinery == "include"
    assert CorpusConfig(machinery=False).machinery == "exclude"  # "no machinery"
    assert CorpusConfig(machinery=True).machinery == "include"
    with pytest.raises(ValueError):
        CorpusConfig(machinery="sometimes")


# ---------------------------------------------------------------------------------------------------
# the real exports


def sample_rows(samples: Path) -> list[dict]:
    return source_rows(read_beads, samples, samples / "no-transcripts")


@pytest.mark.shared
def test_real_exports(shared_samples):
    rows = sample_rows(shared_samples)
    if not rows:
        pytest.skip("no beads export under ../shared/gastown-samples")
    metas = [json.loads(r["meta"]) for r in rows]  # an id can be in several files (history, backup)
    kinds = {m["id"]: classify(m) for m in metas}
    want = {
        "bd-gb8vd": "digest",  # "Digest: mol-witness-patrol", "Squashed from 7 wisps"
        "gt-eph-04p3": "patrol",  # an old-style ephemeral patrol root
        "gt-gastown-polecat-nux": "agent",  # ephemeral=1 in the backup, but an agent bead
        "gt-wisp-1bmva": "merge_request",
        "bd-wisp-bje6rq": "message",  # MERGE_FAILED mail
        "gt-j30x": "plugin_run",
        "hq-cv-d46qe": "convoy",
        "gt-t2bjt": None,  # the feature asking to skip digests is work
    }
    present = {k: v for k, v in want.items() if k in kinds}
    if not present:
        pytest.skip("the known sample beads are not in ../shared/gastown-samples")
    assert {k: kinds[k] for k in present} == present
    s = summarize(metas, "exclude")
    print("machinery on the samples:", s)
    assert s["machinery"] > 0 and s["by_kind"].get("wisp", 0) > 0
    # Real agent work stays the larger part of the permanent beads (the backup has no wisps).
    backup = [m for r, m in zip(rows, metas, strict=True) if r["path"].endswith("backup/issues.jsonl")]
    if backup:
        assert summarize(backup, "exclude")["machinery"] < len(backup) / 2

    examples = list(build_bead_examples(rows))
    machinery_ids = {k for k, v in kinds.items() if v}
    for e in examples:
        if e["task"] == "bead_triage":
            shown = set(re.findall(r"^- `([^`]+)`", e["messages"][1]["content"], flags=re.M))
            assert not shown & machinery_ids
        else:
            assert e["group_id"].removeprefix("bead:") not in machinery_ids
    closes = [c for e in examples for c in commands(e) if c.startswith("bd close")]
    assert closes and not any(
        re.search(r"Squashed from|auto-closed by reaper|patrol cycle complete|burned:", c) for c in closes
    )
    included = list(build_bead_examples(rows, machinery="include"))
    assert len(included) > len(examples)
