from __future__ import annotations

import json
import re
import shlex
from collections import Counter
from pathlib import Path

import pytest

from gastown_ft.corpus.beads import read_beads, render_bead
from gastown_ft.corpus.documents import Document, documents_to_table
from gastown_ft.corpus.examples import BASH_TOOL, ROLE_DESCRIPTIONS, example_id
from gastown_ft.corpus.grammar import validate_command
from gastown_ft.corpus.pairs_beads import (
    CREATE_TYPES,
    TASKS,
    TRIAGE_RULE,
    build_bead_examples,
    dq,
    first_paragraph,
)
from gastown_ft_tests.corpus.helpers import commands, source_rows

COMMAND_PATHS = {
    "bead_create": {"bd create"},
    "bead_update": {"bd update"},
    "bead_close": {"bd close"},
    "bead_deps": {"bd dep add"},
}


def bead(id: str, title: str = "", **fields) -> dict:
    return {
        "id": id,
        "title": title or f"Work on {id}",
        "status": "open",
        "priority": 2,
        "issue_type": "task",
    } | fields


def rows_of(beads: list[dict], *, rig: str | None = "ledger", path: str | None = None) -> list[dict]:
    path = path or (f"{rig}/.beads/issues.jsonl" if rig else ".beads/issues.jsonl")
    docs = [
        Document(
            source="beads",
            kind="export",
            path=path,
            text=render_bead(b),
            rig=rig,
            mtime=500.0 + i,
            role={"ledger/polecats/nux": "polecat", "ledger/crew/max": "crew"}.get(b.get("assignee") or ""),
            key=b["id"],
            meta={"format": "export", "line": i + 1, **b},
        )
        for i, b in enumerate(beads)
    ]
    return documents_to_table(docs).to_pylist()


def check_examples(examples: list[dict]) -> None:
    """The invariants every bead example keeps; every command is valid for the bd grammar."""
    for e in examples:
        assert e["task"] in TASKS
        roles = [m["role"] for m in e["messages"]]
        assert roles[:3] == ["system", "user", "assistant"], roles
        assert all(r == "tool" for r in roles[3:])
        system = e["messages"][0]["content"]
        assert ROLE_DESCRIPTIONS[e["role"]] in system
        assert (f"rig `{e['rig']}`" in system) if e["rig"] else ("town level" in system)
        assert e["example_id"] == example_id(e["messages"], e["tools"])
        assert e["quality"] == 1.0 and e["weight"] == 1.0
        if e["task"] == "bead_triage":
            assert re.fullmatch(r"triage:[^:]+:\d+", e["group_id"]), e["group_id"]
            assert e["group_id"].split(":")[1] == (e["rig"] or "(town)")
        else:
            assert e["group_id"].startswith("bead:") and len(e["source_ids"]) == 1
            assert (
                f"`{e['group_id'].removeprefix('bead:')}`"
                in e["messages"][1]["content"] + e["messages"][2]["content"]
                or e["task"] == "bead_create"
            )
        cmds = commands(e)
        assert bool(cmds) == bool(e["tools"])
        if cmds:
            assert e["tools"] == [BASH_TOOL] and len(cmds) == 1
        for cmd in cmds:
            check = validate_command(cmd)
            assert check.ok, (cmd, check.errors)
            assert check.path in COMMAND_PATHS[e["task"]], (cmd, check.path)
            shlex.split(cmd)


def by_task(examples: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for e in examples:
        out.setdefault(e["task"], []).append(e)
    return out


# ---------------------------------------------------------------------------------------------------
# helpers


def test_first_paragraph_and_quoting():
    text = "## Problem\n\nThe importer drops rows\nwith quoted commas.\n\nSecond paragraph."
    assert first_paragraph(text) == "The importer drops rows with quoted commas."
    assert first_paragraph("```\ncode\n```\n\nAfter code.") == "After code."
    for s in ('Say "hi"', "cost $5", "it's `odd`", "plain words", "back\\slash!"):
        assert shlex.split(f"bd create {dq(s)}") == ["bd", "create", s]


# ---------------------------------------------------------------------------------------------------
# hand-made rows

LEDGER = [
    bead("le-epic", "Multi-currency import", issue_type="epic", status="in_progress", priority=1),
    bead(
        "le-epic.1",
        'Handle "quoted" commas in $payee',
        issue_type="bug",
        status="closed",
        priority=1,
        labels=["importer", "bug"],
        assignee="ledger/polecats/nux",
        created_by="mayor",
        close_reason="Merged in 9567000",
        description='## Context\n\nPayees like `"ACME, Inc"` split\ninto two columns.\n\nMore detail here.',
        dependencies=[{"issue_id": "le-epic.1", "depends_on_id": "le-epic", "type": "parent-child"}],
    ),
    bead(
        "le-fix",
        "EUR fixture",
        parent="le-epic",
        dependencies=[
            {"issue_id": "le-fix", "depends_on_id": "le-epic", "type": "parent-child"},
            {"issue_id": "le-fix", "depends_on_id": "le-epic.1", "type": "blocks"},
            {"issue_id": "le-fix", "depends_on_id": "le-hot", "type": "blocks"},
            {"issue_id": "le-fix", "depends_on_id": "le-found", "type": "discovered-from"},
        ],
    ),
    bead(
        "le-hot",
        "Rounding drifts",
        issue_type="bug",
        status="hooked",
        priority=0,
        assignee="ledger/polecats/nux",
    ),
    bead(
        "le-doc",
        "Document rounding",
        status="blocked",
        priority=3,
        dependencies=[
            {"issue_id": "le-doc", "depends_on_id": "le-gone", "type": "blocks"},
        ],
    ),
    bead("le-later", "OFX import", issue_type="feature", status="deferred", priority=4),
    bead("le-found", "Negative zero", issue_type="bug", priority=3),
    bead("le-mail", "POLECAT_DONE nux", issue_type="message", status="closed", close_reason="archived"),
    bead("le-agent", "Polecat nux", issue_type="agent", status="pinned"),
    bead(
        "le-wisp-abc",
        "Patrol step",
        ephemeral=True,
        dependencies=[
            {"issue_id": "le-wisp-abc", "depends_on_id": "le-fix", "type": "blocks"},
        ],
    ),
    bead(
        "le-mr",
        "Merge: polecat/nux/le-epic.1",
        issue_type="merge-request",
        status="closed",
        close_reason="merged",
    ),
]


@pytest.fixture()
def ledger_rows() -> list[dict]:
    return rows_of(LEDGER)


def test_hand_made_rows(ledger_rows):
    examples = list(build_bead_examples(ledger_rows, triage_sets=5, seed=1))
    check_examples(examples)
    assert set(by_task(examples)) == set(TASKS)
    # Wisps, agents and mail give no single-bead examples.
    subjects = {e["group_id"] for e in examples if e["task"] != "bead_triage"}
    assert "bead:le-wisp-abc" not in subjects and "bead:le-agent" not in subjects
    assert "bead:le-mail" not in subjects


def test_create(ledger_rows):
    creates = {e["group_id"]: e for e in by_task(list(build_bead_examples(ledger_rows)))["bead_create"]}
    created_types = {
        json.loads(r["meta"])["issue_type"] for r in ledger_rows if f"bead:{r['key']}" in creates
    }
    assert created_types <= set(CREATE_TYPES)
    assert "bead:le-mr" not in creates and "bead:le-mail" not in creates
    e = creates["bead:le-epic.1"]
    assert e["role"] == "mayor"  # who filed it
    (cmd,) = commands(e)
    words = shlex.split(cmd)
    assert words[:3] == ["bd", "create", 'Handle "quoted" commas in $payee']
    opts = dict(zip(words[3::2], words[4::2], strict=True))
    assert opts == {
        "-t": "bug",
        "-p": "1",
        "-l": "importer,bug",
        "--parent": "le-epic",
        "-d": 'Payees like `"ACME, Inc"` split into two columns.',
    }
    request = e["messages"][1]["content"]
    # the priority in one of the ways operators say it ("high priority (P1)", "P1", "prio 1", "high
    # priority", ...), ids with or without backticks (typed in a hurry)
    assert re.search(r"\b[Pp]1\b|\bprio(rity)? 1\b|\bhigh\b", request) and "bug" in request
    assert re.search(r"\bimporter\b", request) and re.search(r"\ble-epic\b", request)
    assert 'Payees like `"ACME, Inc"` split into two columns.' in request
    assert "More detail" not in request
    fix = shlex.split(commands(creates["bead:le-fix"])[0])
    opts = dict(zip(fix[3::2], fix[4::2], strict=True))
    assert opts["--deps"] == "le-epic.1,le-hot,discovered-from:le-found" and opts["--parent"] == "le-epic"
    fix_request = creates["bead:le-fix"]["messages"][1]["content"].replace("`", "")
    assert re.search(r"(blocked by|depends on|can't start before) le-epic.1 and le-hot", fix_request) or (
        "le-epic.1 and le-hot must land first" in fix_request
    )


def test_update(ledger_rows):
    updates = by_task(list(build_bead_examples(ledger_rows)))["bead_update"]
    got = {(e["group_id"], commands(e)[0]) for e in updates}
    assert ("bead:le-hot", "bd update le-hot --claim") in got
    assert ("bead:le-epic.1", "bd update le-epic.1 --claim") in got  # closed, had an assignee
    assert ("bead:le-doc", "bd update le-doc --status blocked") in got
    assert ("bead:le-later", "bd update le-later --status deferred") in got
    assert ("bead:le-hot", "bd update le-hot --priority 0") in got
    assert not any(c.endswith("--priority 2") for _, c in got)
    claim = next(e for e in updates if commands(e) == ["bd update le-hot --claim"])
    assert claim["role"] == "polecat" and claim["rig"] == "ledger"


def test_close(ledger_rows):
    closes = by_task(list(build_bead_examples(ledger_rows)))["bead_close"]
    got = {e["group_id"]: commands(e)[0] for e in closes}
    assert got["bead:le-epic.1"] == 'bd close le-epic.1 --reason "Merged in 9567000"'
    assert "bead:le-mail" not in got  # mail is archived by gt, not closed by hand
    assert "bead:le-mr" not in got  # the refinery's merge queue closes merge requests
    assert all(e["role"] is None for e in closes)
    # With the machinery kept ([corpus] machinery = "include"), the merge request's close is an example.
    closes = by_task(list(build_bead_examples(ledger_rows, machinery="include")))["bead_close"]
    assert {e["group_id"]: commands(e)[0] for e in closes}["bead:le-mr"] == 'bd close le-mr --reason "merged"'


def test_deps(ledger_rows):
    deps = by_task(list(build_bead_examples(ledger_rows)))["bead_deps"]
    answers = {e["messages"][1]["content"]: e["messages"][-1]["content"] for e in deps}
    what = next(a for q, a in answers.items() if "`le-fix`" in q and ("depend" in q))
    assert "blocked by `le-epic.1`" in what and "blocked by `le-hot`" in what
    assert "child of `le-epic`" in what and "does not block" in what
    assert "discovered while working on `le-found`" in what
    blocking = answers["What is blocking `le-fix`?"]
    assert "`le-hot`" in blocking and "Already closed: `le-epic.1`" in blocking
    assert "`le-epic`" not in blocking.replace("`le-epic.1`", "")  # the parent is not a blocker
    gone = answers["What is blocking `le-doc`?"]
    assert "`le-gone` (not in this database; status unknown)" in gone
    # bd dep add <issue> <depends-on>: the bead first, then what it depends on.
    adds = {commands(e)[0] for e in deps if commands(e)}
    assert "bd dep add le-fix le-epic.1" in adds and "bd dep add le-fix le-hot" in adds
    assert "bd dep add le-fix le-epic --type parent-child" in adds
    assert "bd dep add le-epic.1 le-epic --type parent-child" in adds
    for e in deps:
        if commands(e) and "blocked by" in e["messages"][1]["content"]:
            a, b = re.findall(r"`([^`]+)`", e["messages"][1]["content"])
            assert shlex.split(commands(e)[0])[3:5] == [a, b]


def ready_ids(prompt: str) -> list[str]:
    """Recompute the answer from the prompt alone, by the stated rule."""
    ready = []
    for pos, line in enumerate(ln for ln in prompt.splitlines() if ln.startswith("- `")):
        m = re.match(r"- `([^`]+)` \[(\w+)(?:, P(\d))?\]", line)
        bid, status, p = m.groups()
        blockers = (
            re.findall(r"`[^`]+` \(([^)]+)\)", line.split(" — blocked by ", 1)[1])
            if " — blocked by " in line
            else []
        )
        if status == "open" and all(b == "closed" for b in blockers):
            ready.append((int(p) if p else 5, pos, bid))
    return [bid for _, _, bid in sorted(ready)]


def test_triage(ledger_rows):
    town = rows_of(
        [
            bead(f"hq-{i}", status=s, priority=i % 4)
            for i, s in enumerate(["open", "closed", "open", "in_progress", "open", "blocked"])
        ],
        rig=None,
    )
    examples = list(build_bead_examples(ledger_rows + town, triage_sets=6, seed=3))
    triage = by_task(examples)["bead_triage"]
    assert triage
    groups = [e["group_id"] for e in triage]
    assert len(groups) == len(set(groups))
    assert {g.rsplit(":", 1)[0] for g in groups} == {"triage:ledger", "triage:(town)"}
    for scope in ("triage:ledger", "triage:(town)"):
        ks = sorted(int(g.rsplit(":", 1)[1]) for g in groups if g.startswith(scope + ":"))
        assert ks == list(range(len(ks)))
    by_id = {r["key"]: r for r in ledger_rows + town}
    for e in triage:
        prompt, answer = e["messages"][1]["content"], e["messages"][-1]["content"]
        assert TRIAGE_RULE in prompt and "ready to work on" in prompt
        shown = re.findall(r"^- `([^`]+)`", prompt, flags=re.M)
        assert 4 <= len(shown) <= 8 and len(set(shown)) == len(shown)
        assert {by_id[b]["path"] for b in shown} == {by_id[shown[0]]["path"]}  # one file
        assert not any("wisp" in b or b in ("le-agent", "le-mail", "le-mr") for b in shown)
        assert sorted(e["source_ids"]) == sorted({by_id[b]["doc_id"] for b in shown})
        expected = ready_ids(prompt)
        got = re.findall(r"^\d+\. `([^`]+)`", answer, flags=re.M)
        assert got == expected, (prompt, answer)
        if not expected:
            assert answer.startswith("None of them is ready")
    # le-fix is blocked by the hooked le-hot; le-doc by a bead nobody knows (counts as open).
    seen = [e for e in triage if "`le-fix`" in e["messages"][1]["content"]]
    assert all(
        "`le-fix`" not in re.sub(r"Not ready:.*", "", e["messages"][-1]["content"], flags=re.S) for e in seen
    )


def test_deterministic(ledger_rows):
    a = list(build_bead_examples(ledger_rows, triage_sets=8, seed=5))
    b = list(build_bead_examples([dict(r) for r in ledger_rows], triage_sets=8, seed=5))
    assert a == b and [e["example_id"] for e in a] == [e["example_id"] for e in b]
    c = list(build_bead_examples(ledger_rows, triage_sets=8, seed=6))
    single = [e for e in a if e["task"] != "bead_triage"]
    assert single == [e for e in c if e["task"] != "bead_triage"]  # the seed only draws triage sets
    assert list(build_bead_examples(ledger_rows, triage_sets=0)) == single


# ---------------------------------------------------------------------------------------------------
# the demo town and the real samples


def bead_rows(root: Path, projects: Path) -> list[dict]:
    return source_rows(read_beads, root, projects)


def test_demo_town(demo_town):
    rows = bead_rows(demo_town.root, demo_town.claude_projects_dir)
    examples = list(build_bead_examples(rows))
    check_examples(examples)
    counts = Counter(e["task"] for e in examples)
    assert set(counts) == set(TASKS)
    for e in by_task(examples)["bead_triage"]:
        got = re.findall(r"^\d+\. `([^`]+)`", e["messages"][-1]["content"], flags=re.M)
        assert got == ready_ids(e["messages"][1]["content"])
    adds = {commands(e)[0] for e in examples if e["task"] == "bead_deps" and commands(e)}
    assert "bd dep add le-robc le-olh" in adds  # le-robc is blocked by le-olh
    assert list(build_bead_examples(rows)) == examples


@pytest.mark.shared
def test_shared_samples(shared_samples):
    rows = bead_rows(shared_samples, shared_samples / "no-transcripts")
    examples = list(build_bead_examples(rows))
    check_examples(examples)
    counts = Counter(e["task"] for e in examples)
    print("bead examples on the samples:", dict(sorted(counts.items())))
    assert set(counts) == set(TASKS)
    for e in by_task(examples)["bead_triage"]:
        got = re.findall(r"^\d+\. `([^`]+)`", e["messages"][-1]["content"], flags=re.M)
        assert got == ready_ids(e["messages"][1]["content"])
