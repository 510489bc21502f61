from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

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


# ---------------------------------------------------------------------------------------------------
# repeated ids and rows of the wrong shape


def reasons(log: ReadLog) -> Counter:
    return Counter(q.reason for q in log.quarantined)


def test_identical_repeats_are_deduplicated_not_quarantined(tmp_path):
    row = {"id": "al-1", "title": "Fix", "status": "open", "updated_at": "2026-01-01T00:00:00Z"}
    other = {"id": "al-2", "title": "Other", "status": "open"}
    jsonl(tmp_path / "town/alpha/.beads/issues.jsonl", [row, other, row, json.dumps(row, indent=None), row])
    docs, log = read(tmp_path / "town")
    assert sorted(docs) == ["al-1", "al-2"]
    assert not log.quarantined
    assert log.skipped["identical_duplicate_row"] == 3


def test_conflicting_versions_keep_the_newest(tmp_path):
    rows = [
        {"id": "al-1", "title": "Fix v2", "status": "closed", "updated_at": "2026-02-01T10:00:00Z"},
        {"id": "al-1", "title": "Fix v1", "status": "open", "updated_at": "2026-01-01T10:00:00+00:00"},
        {"id": "al-1", "title": "Fix v1", "status": "open", "updated_at": "2026-01-01T10:00:00+00:00"},
        {"id": "al-2", "title": "Tie a", "status": "open", "updated_at": "2026-01-05 08:00:00"},
        {"id": "al-2", "title": "Tie b", "status": "open", "updated_at": "2026-01-05 08:00:00"},
        {"id": "al-3", "title": "Deleted later", "status": "open", "updated_at": "2026-01-01T00:00:00Z"},
        {"id": "al-3", "title": "Deleted later", "status": "tombstone", "updated_at": "2026-01-09T00:00:00Z"},
        {"id": "al-4", "title": "No time", "status": "open"},
        {"id": "al-4", "title": "Has time", "status": "open", "updated_at": "2025-12-01T00:00:00Z"},
    ]
    jsonl(tmp_path / "town/alpha/.beads/issues.jsonl", rows)
    docs, log = read(tmp_path / "town")
    assert sorted(docs) == ["al-1", "al-2", "al-4"]
    assert docs["al-1"].meta["title"] == "Fix v2" and docs["al-1"].meta["line"] == 1
    assert docs["al-2"].meta["title"] == "Tie b"  # same updated_at: the later line
    assert docs["al-4"].meta["title"] == "Has time"  # a missing updated_at is the oldest
    assert log.skipped["identical_duplicate_row"] == 1 and log.skipped["tombstone"] == 1
    superseded = {q.line: q for q in log.quarantined if q.reason == "superseded_version"}
    assert sorted(superseded) == [2, 4, 6, 8] and reasons(log) == {"superseded_version": 4}
    assert "bead al-1" in superseded[2].detail and "line 1" in superseded[2].detail
    assert "2026-02-01T10:00:00Z" in superseded[2].detail
    assert "same updated_at" in superseded[4].detail
    assert all(q.path == "alpha/.beads/issues.jsonl" and q.rig == "alpha" for q in superseded.values())


def test_rows_of_the_wrong_type_are_quarantined_naming_the_field(tmp_path):
    rows = [
        {"id": "al-1", "title": 42, "status": "open"},
        {"id": "al-2", "title": "Fine", "status": "opn"},
        {"id": "al-3", "title": "Fine", "status": "open", "priority": 7},
        {"id": "al-4", "title": "Fine", "status": "open", "labels": "bug"},
        {"id": "al-5", "title": "Fine", "status": "open", "dependencies": ["al-1"]},
        {"id": "al-6", "title": "Fine", "status": "open", "assignee": ["a", "b"]},
        {"id": "al-7", "title": "Fine", "status": "open", "priority": True},
        {"id": "al-8", "title": None, "status": "open", "priority": "P1", "labels": None},
        {"id": "al-9", "title": "Fine", "status": "in_review"},
    ]
    jsonl(tmp_path / "town/alpha/.beads/issues.jsonl", rows)
    docs, log = read(tmp_path / "town")
    assert sorted(docs) == ["al-8"]
    by_line = {q.line: q for q in log.quarantined}
    assert {n: q.reason for n, q in by_line.items()} == {
        1: "invalid_title",
        2: "invalid_status",
        3: "invalid_priority",
        4: "invalid_labels",
        5: "invalid_dependencies",
        6: "invalid_assignee",
        7: "invalid_priority",
        9: "invalid_status",
    }
    assert "title is a number (42), expected text" in by_line[1].detail and "al-1" in by_line[1].detail
    assert 'status "opn" is not a bd status' in by_line[2].detail


def test_custom_statuses_of_a_backup_are_known(tmp_path):
    b = tmp_path / "town/beta/.beads/backup"
    jsonl(b / "issues.jsonl", [{"id": "be-1", "title": "Review me", "status": "in_review", "priority": 2}])
    jsonl(b / "config.jsonl", [{"key": "status.custom", "value": "in_review:active,qa:wip"}])
    (b / "backup_state.json").write_text("{}")
    docs, log = read(tmp_path / "town")
    assert list(docs) == ["be-1"] and not log.quarantined
    (b / "config.jsonl").unlink()
    (b.parent / "config.yaml").write_text('status.custom: "in_review:active"\n')
    docs, log = read(tmp_path / "town")
    assert list(docs) == ["be-1"] and not log.quarantined


@pytest.mark.shared
def test_real_exports_pass_the_checks(shared_samples):
    """Every row of the real exports is well-formed: the checks quarantine none of them. gastown's old
    tracked export and its later `bd backup` share 518 beads: 454 the same version (counted), 64
    updated since (the export's copy reported as superseded by the backup's)."""
    log = ReadLog()
    docs = list(
        read_beads(TownScan(TownConfig(root=shared_samples, claude_projects_dir=shared_samples / "x")), log)
    )
    if not docs:
        pytest.skip("no beads export under ../shared/gastown-samples")
    assert {q.reason for q in log.quarantined} <= {"superseded_version"}, log.quarantined[:5]
    assert not log.skipped.get("identical_duplicate_row")
    assert len({d.key for d in docs}) == len(docs)  # each bead once across files
    superseded = [q for q in log.quarantined if q.reason == "superseded_version"]
    if any("/history/a98299b84-parent/" in q.path for q in superseded):
        assert len(superseded) == 64 and log.skipped["identical_duplicate_in_other_file"] == 454
        assert all("gastown/.beads/backup/issues.jsonl" in q.detail for q in superseded)


@pytest.mark.shared
def test_repeats_of_real_rows(shared_samples, tmp_path):
    """A real export with every row repeated (as a union merge of two clones leaves it) and a newer
    version of a few rows: the same beads come out, the repeats are counted and the conflicts listed."""
    exports = sorted(shared_samples.glob("*/history/*/.beads/issues.jsonl"))
    if not exports:
        pytest.skip("no bd export under ../shared/gastown-samples/*/history")
    source = exports[0]
    lines = [ln for ln in source.read_text(encoding="utf-8").splitlines() if ln.strip()]
    newer = []
    for ln in lines[:3]:
        row = json.loads(ln)
        newer.append(
            json.dumps(row | {"title": row["title"] + " (edited)", "updated_at": "2099-01-01T00:00:00Z"})
        )
    target = tmp_path / "town/rig/.beads/issues.jsonl"
    target.parent.mkdir(parents=True)
    target.write_text("\n".join(lines + lines + newer) + "\n", encoding="utf-8")
    docs, log = read(tmp_path / "town")
    rows = [json.loads(ln) for ln in lines]
    assert set(docs) == {r["id"] for r in rows if r.get("status") != "tombstone"}
    assert log.skipped["identical_duplicate_row"] == len(lines)
    assert reasons(log) == {"superseded_version": 3}
    assert sorted(q.line for q in log.quarantined) == [1, 2, 3]
    edited = [json.loads(ln)["id"] for ln in newer]
    assert all(docs[i].meta["title"].endswith("(edited)") for i in edited)
    assert [docs[i].meta["line"] for i in edited] == [2 * len(lines) + k for k in (1, 2, 3)]
