"""What the stages report about beads: machinery counts in the pairs stats, repeated rows counted
rather than quarantined, and the quarantined files with their line numbers in the CLI summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gastown_ft.artifacts import ArtifactStore
from gastown_ft.config import CorpusConfig, TownConfig
from gastown_ft.corpus import reuse, stages
from gastown_ft.corpus.machinery import summarize_documents
from gastown_ft.corpus.pairs_reuse import build_pairs
from gastown_ft.report import detail_lines

CLEAN = "gastown/.beads/issues.jsonl"
BROKEN = "beta/.beads/issues.jsonl"


def write_town(root: Path, real_lines: list[str]) -> TownConfig:
    """A rig holding a real export written twice over (identical repeats) with one newer version of
    its first row; another rig with rows of the wrong shape."""
    first = json.loads(real_lines[0])
    newer = json.dumps(first | {"title": "Edited title", "updated_at": "2099-01-01T00:00:00Z"})
    clean = root / CLEAN
    clean.parent.mkdir(parents=True)
    clean.write_text("\n".join(real_lines + real_lines + [newer]) + "\n", encoding="utf-8")
    broken = root / BROKEN
    broken.parent.mkdir(parents=True)
    bad = [{"id": f"be-{i}", "title": 1000 + i, "status": "open"} for i in range(14)]
    bad += [{"id": "be-s", "title": "Odd status", "status": "doing"}, {"id": "be-ok", "title": "Fine"}]
    broken.write_text("".join(json.dumps(r) + "\n" for r in bad) + "{not json\n", encoding="utf-8")
    return TownConfig(root=root, claude_projects_dir=root / "no-transcripts", sources=["beads"])


def state_of(read: dict, pairs: dict, quarantine: dict) -> dict:
    """The asset metadata the CLI summary reads (as assets/corpus.py and assets/sources.py name it)."""
    return {
        "raw_beads": {"metadata": {"skipped": read["skipped"]}},
        "instruction_pairs": {"metadata": {"by_task": pairs["by_task"], "machinery": pairs["machinery"]}},
        "quarantine": {
            "metadata": {
                "by_reason": quarantine["by_reason"],
                "file_count": quarantine["files"],
                "by_file": quarantine["by_file"],
            }
        },
    }


@pytest.mark.shared
def test_stage_reports(shared_samples, tmp_path):
    exports = sorted(shared_samples.glob("gastown/history/*/.beads/issues.jsonl"))
    if not exports:
        pytest.skip("no gastown bd export under ../shared/gastown-samples/gastown/history")
    # Every 6th row keeps the mix of work and machinery and the test fast.
    real = [ln for ln in exports[0].read_text(encoding="utf-8").splitlines() if ln.strip()][::6]
    town = write_town(tmp_path / "town", real)
    store = ArtifactStore(tmp_path / "artifacts")

    read = stages.read_stage(town, store, "beads", reuse=False)
    assert read["skipped"]["identical_duplicate_row"] == len(real)
    assert read["quarantine_by_reason"] == {
        "superseded_version": 1,
        "invalid_title": 14,
        "invalid_status": 1,
        "invalid_json": 1,
    }
    # The scrubber is not under test here: the pairs stage reads the raw rows as they are.
    store.write_table("corpus", "scrubbed_documents", store.read_table("raw", "beads"))
    # What pairs_stage runs (without its example checks, which cost seconds to set up).
    docs = store.read_table("corpus", "scrubbed_documents")
    keys = reuse.row_keys(docs, "scrubbed")
    m = summarize_documents(docs, CorpusConfig().machinery)
    assert m["mode"] == "exclude" and m["beads"] == read["rows"] == len(real) + 1
    assert 0 < m["machinery"] < m["beads"] and m["by_kind"]["wisp"] > 0
    excluded = build_pairs(docs, keys, CorpusConfig(), store, reuse_cache=True)
    # The switch reaches the builder, past the unit cache the first build filled.
    included = build_pairs(docs, keys, CorpusConfig(machinery="include"), store, reuse_cache=True)
    assert included.num_rows > excluded.num_rows
    pairs = {"by_task": dict(excluded.report.by_task), "machinery": m}

    quarantine = stages.quarantine_stage(town, store)
    assert quarantine["files"] == 2
    top = quarantine["by_file"]
    assert [f["path"] for f in top] == [BROKEN, CLEAN]  # most quarantined first
    assert top[0]["count"] == 16 and top[0]["reasons"]["invalid_title"] == 14
    assert top[0]["lines"] == list(range(1, stages.QUARANTINE_LINES_SHOWN + 1))
    assert top[0]["more_lines"] == 16 - stages.QUARANTINE_LINES_SHOWN  # lines 1-15 and 17
    assert top[1] == {
        "path": CLEAN,
        "count": 1,
        "reasons": {"superseded_version": 1},
        "lines": [1],
        "more_lines": 0,
    }

    text = "\n".join(detail_lines(state_of(read, pairs, quarantine)))
    print(text)
    assert "machinery beads[/bold] (left out of the bead tasks):" in text
    assert f"{m['machinery']} of {m['beads']}" in text and f"wisp {m['by_kind']['wisp']}" in text
    assert f"bead rows skipped[/bold]: identical_duplicate_row {len(real)}" in text
    assert "quarantined files[/bold]:" in text
    assert f"  {BROKEN}: 16 (invalid_title 14, invalid_status 1, invalid_json 1) at lines 1, 2, 3" in text
    assert "and 4 more" in text
    assert f"  {CLEAN}: 1 (superseded_version 1) at line 1" in text


def test_file_listing_is_capped(tmp_path):
    from gastown_ft.corpus.documents import Quarantined, quarantine_to_table
    from gastown_ft.report import quarantined_file_lines

    items = [
        Quarantined("beads", f"r{i}/.beads/issues.jsonl", "invalid_status", "x", line=i) for i in range(15)
    ]
    items += [Quarantined("formulas", "f.toml", "invalid_toml", "x")] * 2  # a whole file, no line
    table = quarantine_to_table(items)
    top = stages.quarantined_files(table)
    assert len(top) == stages.QUARANTINE_FILES_SHOWN and top[0]["path"] == "f.toml" and top[0]["lines"] == []
    lines = quarantined_file_lines({"by_file": top, "file_count": 16})
    assert lines[0] == "[bold]quarantined files[/bold] (top 10 of 16):"
    assert lines[1] == "  f.toml: 2 (invalid_toml 2)"
    assert lines[2] == "  r0/.beads/issues.jsonl: 1 (invalid_status 1) at line 0"
    assert quarantined_file_lines({}) == []
