from __future__ import annotations

import json
from pathlib import Path

from gastown_ft.config import TownConfig
from gastown_ft.corpus.beads import read_beads, render_bead
from gastown_ft.corpus.documents import ReadLog
from gastown_ft.corpus.scan import TownScan


def jsonl(path: Path, rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def read(root: Path) -> tuple[dict, ReadLog]:
    log = ReadLog()
    docs = {
        d.key: d for d in read_beads(TownScan(TownConfig(root=root, claude_projects_dir=root / "x")), log)
    }
    return docs, log


def test_export_form_with_tombstones_and_bad_lines(tmp_path):
    root = tmp_path / "town"
    jsonl(
        root / "alpha/.beads/issues.jsonl",
        [
            {"id": "al-1", "title": "Epic", "issue_type": "epic", "priority": 1, "status": "open"},
            {
                "id": "al-1.1",
                "title": "Child",
                "issue_type": "task",
                "priority": 2,
                "status": "in_progress",
                "assignee": "alpha/polecats/nux",
                "labels": ["gt:core"],
                "dependencies": [{"issue_id": "al-1.1", "depends_on_id": "al-1", "type": "parent-child"}],
                "comments": [{"id": 1, "author": "mayor", "text": "looks good", "created_at": "2026-01-01"}],
            },
            {"id": "al-2", "title": "gone", "status": "tombstone", "deleted_at": "2026-01-02"},
            {"id": "al-3", "title": "gone too", "status": "tombstone"},
            [1, 2, 3],
            {"title": "no id"},
            "{broken json",
        ],
    )
    docs, log = read(root)
    assert sorted(docs) == ["al-1", "al-1.1"]
    child = docs["al-1.1"]
    assert child.rig == "alpha" and child.role == "polecat" and child.meta["parent"] == "al-1"
    assert "depends on al-1 (parent-child)" in child.text and "looks good" in child.text
    assert log.skipped["tombstone"] == 2
    assert sorted(q.reason for q in log.quarantined) == ["invalid_json", "missing_id", "not_an_object"]


def test_backup_form_is_joined(tmp_path):
    b = tmp_path / "town/beta/.beads/backup"
    jsonl(
        b / "issues.jsonl",
        [
            {
                "id": "be-1",
                "title": "Fix",
                "issue_type": "bug",
                "priority": 0,
                "status": "closed",
                "close_reason": "merged",
                "hook_bead": None,
            },
            {"id": "be-2", "title": "Feature", "issue_type": "feature", "priority": 2, "status": "open"},
        ],
    )
    jsonl(
        b / "dependencies.jsonl",
        [
            {"issue_id": "be-2", "depends_on_id": "be-1", "type": "blocks"},
            {"issue_id": "be-9", "depends_on_id": "be-1", "type": "blocks"},
        ],
    )
    jsonl(
        b / "labels.jsonl", [{"issue_id": "be-1", "label": "p0"}, {"issue_id": "be-1", "label": "area:cli"}]
    )
    jsonl(
        b / "comments.jsonl",
        [{"id": 1, "issue_id": "be-1", "author": "beta/refinery", "text": "merged at abc"}],
    )
    jsonl(
        b / "events.jsonl",
        [
            {
                "id": 1,
                "issue_id": "be-1",
                "event_type": "closed",
                "actor": "beta/refinery",
                "new_value": "x" * 5000,
            }
        ],
    )
    (b / "backup_state.json").write_text("{}")
    docs, log = read(tmp_path / "town")
    assert docs["be-1"].meta["labels"] == ["area:cli", "p0"]
    assert docs["be-1"].meta["format"] == "backup"
    assert len(docs["be-1"].meta["events"][0]["new_value"]) < 500
    assert docs["be-2"].meta["dependencies"][0]["depends_on_id"] == "be-1"
    assert "merged at abc" in docs["be-1"].text and "closed: merged" in docs["be-1"].text
    assert log.skipped["dependencies_of_unknown_or_tombstoned_issue"] == 1
    assert not log.quarantined


def test_binary_and_empty_issue_files(tmp_path):
    root = tmp_path / "town"
    (root / "a/.beads").mkdir(parents=True)
    (root / "a/.beads/issues.jsonl").write_bytes(b"\x00\x00\xff\xfe binary junk")
    (root / "b/.beads").mkdir(parents=True)
    (root / "b/.beads/issues.jsonl").write_text("")
    docs, log = read(root)
    assert not docs
    assert sorted(q.reason for q in log.quarantined) == ["binary_file", "empty_file"]


def test_render_is_readable():
    text = render_bead(
        {
            "id": "gt-0anl",
            "title": "Title",
            "status": "open",
            "priority": 1,
            "description": "Body",
            "labels": ["x"],
        }
    )
    assert text.splitlines()[0] == "gt-0anl: Title" and "## description\nBody" in text
