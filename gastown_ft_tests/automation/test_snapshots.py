"""Snapshots and diffs without Dagster: git HEADs, formula, beads and transcript files, problems."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from gastown_ft.automation.cursor import Cursor, decode_cursor, encode_cursor
from gastown_ft.automation.diff import (
    describe_file_changes,
    diff_files,
    diff_heads,
    next_file_state,
    next_heads_state,
)
from gastown_ft.automation.git_heads import read_git_head
from gastown_ft.automation.retrain import CorpusBuild, decide_retrain
from gastown_ft.automation.snapshots import (
    beads_files,
    formula_files,
    rig_heads,
    transcript_files_snapshot,
)
from gastown_ft_tests.automation.small_town import FORMULA, commit_all, git, make_small_town, transcript_line
from gastown_ft_tests.unprivileged import run_as_nobody


def kinds(changes) -> list[tuple[str, str]]:
    return [(c.kind, c.path) for c in changes]


# -- git HEADs ----------------------------------------------------------------------------------------
def test_head_matches_git_through_commits_branches_packed_refs_and_worktrees(tmp_path):
    town = make_small_town(tmp_path)
    repo = town.root / "alpha"

    def agrees(path: Path) -> None:
        head = read_git_head(path)
        branch = git(path, "branch", "--show-current") or None
        assert (head.commit, head.branch, head.error) == (git(path, "rev-parse", "HEAD"), branch, None)

    agrees(repo)
    (repo / "CLAUDE.md").write_text("# alpha, second\n")
    commit_all(repo, "second")
    agrees(repo)
    git(repo, "pack-refs", "--all")  # the ref now lives only in packed-refs
    assert not (repo / ".git" / "refs" / "heads" / "main").exists()
    agrees(repo)
    git(repo, "checkout", "-q", "-b", "feature")
    agrees(repo)
    git(repo, "checkout", "-q", "--detach")
    assert read_git_head(repo).branch is None
    agrees(repo)
    git(repo, "checkout", "-q", "main")
    git(repo, "worktree", "add", "-q", "-b", "polecat-nux", str(repo / "polecats" / "nux"))
    agrees(repo / "polecats" / "nux")  # a `.git` file pointing into the main repository

    fresh = tmp_path / "unborn"
    fresh.mkdir()
    git(fresh, "init", "-q", "-b", "trunk")
    assert read_git_head(fresh) == type(read_git_head(fresh))(None, "trunk")
    assert read_git_head(tmp_path) is None  # not a repository


def test_commit_and_branch_switch_are_described(tmp_path):
    town = make_small_town(tmp_path, rigs=("alpha", "beta"))
    repo = town.root / "alpha"
    before = rig_heads(town.config())
    old = before.heads["alpha"]["commit"]
    assert set(before.heads) == {"alpha", "beta"} and not before.unreadable

    (repo / "CLAUDE.md").write_text("# alpha, second\n")
    new = commit_all(repo, "second")
    after = rig_heads(town.config())
    changes = diff_heads(before.heads, after)
    assert [(c.rig, c.kind) for c in changes] == [("alpha", "commit")]
    assert changes[0].describe() == f"rig alpha: HEAD {old[:7]} -> {new[:7]} (branch main)"

    git(repo, "checkout", "-q", "-b", "feature")
    switched = rig_heads(town.config())
    changes = diff_heads(after.heads, switched)
    assert [(c.rig, c.kind) for c in changes] == [("alpha", "branch")]
    assert changes[0].describe() == f"rig alpha: branch main -> feature (HEAD {new[:7]} -> {new[:7]})"
    assert diff_heads(switched.heads, rig_heads(town.config())) == []


def test_deleted_and_new_rigs(tmp_path):
    town = make_small_town(tmp_path, rigs=("alpha", "beta"))
    before = rig_heads(town.config())
    formulas_before = formula_files(town.config())
    shutil.rmtree(town.root / "beta")
    (town.root / "gamma").mkdir()  # a new rig that is not a git repository (yet)
    after = rig_heads(town.config())
    changes = diff_heads(before.heads, after)
    assert [(c.rig, c.kind) for c in changes] == [("beta", "removed"), ("gamma", "added")]
    assert changes[0].describe() == "rig beta: removed from the town"
    assert "not a git repository" in changes[1].describe()
    assert set(next_heads_state(before.heads, after)) == {"alpha", "gamma"}
    removed = diff_files({p: s for p, s in formulas_before.files.items()}, formula_files(town.config()))
    assert kinds(removed) == [("removed", "beta/.beads/formulas/beta-work.formula.toml")]
    assert removed[0].rig == "beta"


def test_town_root_gone_is_reported_not_judged(tmp_path):
    town = make_small_town(tmp_path)
    shutil.rmtree(town.root)
    for snap in (
        rig_heads(town.config()),
        formula_files(town.config()),
        beads_files(town.config()),
        transcript_files_snapshot(town.config()),
    ):
        assert snap.town_missing and str(town.root) in snap.town_missing


# -- files ----------------------------------------------------------------------------------------------
def test_formula_added_changed_removed_in_every_search_path(tmp_path):
    town = make_small_town(tmp_path)
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "outside.formula.json").write_text('{"formula": "outside", "steps": [{"id": "a"}]}')
    embedded = town.root / "alpha" / "internal" / "formula" / "formulas"
    embedded.mkdir(parents=True)
    (embedded / "embedded.formula.toml").write_text(FORMULA.format(name="embedded"))
    cfg = town.config(extra_paths=[extra])
    before = formula_files(cfg)
    assert sorted(before.files) == sorted(
        [
            ".beads/formulas/town-wide.formula.toml",
            "alpha/.beads/formulas/alpha-work.formula.toml",
            "alpha/internal/formula/formulas/embedded.formula.toml",
            (extra / "outside.formula.json").as_posix(),
        ]
    )
    assert before.files["alpha/.beads/formulas/alpha-work.formula.toml"].rig == "alpha"
    assert before.files[".beads/formulas/town-wide.formula.toml"].rig is None
    assert diff_files(before.files, formula_files(cfg)) == []  # nothing changed, nothing reported

    town_formula = town.root / ".beads/formulas/town-wide.formula.toml"
    town_formula.write_text(FORMULA.format(name="town-wide") + 'description = "longer"\n')
    same_size = embedded / "embedded.formula.toml"
    st = same_size.stat()
    same_size.write_text(FORMULA.format(name="embeddeX"))  # same length, new content
    os.utime(same_size, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    (town.root / "alpha/.beads/formulas/new.formula.toml").write_text(FORMULA.format(name="new"))
    (extra / "outside.formula.json").unlink()
    changes = diff_files(before.files, formula_files(cfg))
    assert kinds(changes) == [
        ("grew", ".beads/formulas/town-wide.formula.toml"),
        ("removed", (extra / "outside.formula.json").as_posix()),  # absolute paths sort first
        ("added", "alpha/.beads/formulas/new.formula.toml"),
        ("changed", "alpha/internal/formula/formulas/embedded.formula.toml"),
    ]
    text = describe_file_changes("formula files", changes, limit=2)
    assert text.startswith("formula files: 1 added, 1 changed, 1 grew, 1 removed: grew .beads/formulas/")
    assert text.endswith("; and 2 more")


def test_transcript_grown_and_new(tmp_path):
    town = make_small_town(tmp_path, rigs=("alpha", "alpha-api"))
    before = transcript_files_snapshot(town.config())
    path = town.transcript("alpha-api")
    prov = f"claude-projects/{path.parent.name}/{path.name}"
    assert before.files[prov].rig == "alpha-api"  # the longer rig name wins over its prefix "alpha"
    with open(path, "a") as fh:
        fh.write(transcript_line(1))
    grown = town.transcript("alpha", agent="crew/max")
    grown.parent.mkdir(parents=True)
    grown.write_text(transcript_line(0))
    changes = diff_files(before.files, transcript_files_snapshot(town.config()))
    assert [(c.kind, c.rig) for c in changes] == [("grew", "alpha-api"), ("added", "alpha")]
    assert changes[0].size_after - changes[0].size_before == len(transcript_line(1))
    assert changes[0].describe().endswith(f"(+{len(transcript_line(1))} B)")


def test_new_beads_export_and_backup_side_table(tmp_path):
    town = make_small_town(tmp_path)
    backup = town.root / "alpha" / ".beads" / "backup"
    backup.mkdir()
    (backup / "issues.jsonl").write_text('{"id": "al-2"}\n')
    (backup / "labels.jsonl").write_text('{"issue_id": "al-2", "label": "x"}\n')
    (backup / "backup_state.json").write_text("{}")
    before = beads_files(town.config())
    assert sorted(before.files) == [
        ".beads/issues.jsonl",
        "alpha/.beads/backup/issues.jsonl",
        "alpha/.beads/backup/labels.jsonl",
        "alpha/.beads/issues.jsonl",
    ]
    with open(backup / "labels.jsonl", "a") as fh:
        fh.write('{"issue_id": "al-2", "label": "y"}\n')
    (town.root / "mayor" / ".beads").mkdir()
    (town.root / "mayor" / ".beads" / "issues.jsonl").write_text('{"id": "hq-9"}\n')
    changes = diff_files(before.files, beads_files(town.config()))
    assert kinds(changes) == [
        ("grew", "alpha/.beads/backup/labels.jsonl"),
        ("added", "mayor/.beads/issues.jsonl"),
    ]


def _snapshot_as_nobody(root: Path, projects: Path) -> dict:
    """formula_files and rig_heads seen by an unprivileged user (as root, every file is readable)."""
    from gastown_ft.config import TownConfig

    def snapshot() -> dict:
        cfg = TownConfig(root=root, claude_projects_dir=projects)
        f, h = formula_files(cfg), rig_heads(cfg)
        return {
            "files": {p: s.to_json() for p, s in f.files.items()},
            "unreadable": f.unreadable,
            "heads": h.heads,
            "heads_unreadable": h.unreadable,
        }

    return run_as_nobody(snapshot)


def test_unreadable_directory_and_git_head_keep_their_last_state():
    from gastown_ft.automation.snapshots import FileSnapshot, FileStat, HeadsSnapshot

    base = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        town = make_small_town(base, rigs=("alpha", "beta"))
        for d in [base, *(p for p in base.rglob("*") if p.is_dir())]:
            d.chmod(0o755)
        for f in (p for p in base.rglob("*") if p.is_file()):
            f.chmod(0o644)
        before = formula_files(town.config())
        heads_before = rig_heads(town.config())
        (town.root / "alpha" / ".beads" / "formulas").chmod(0o000)
        (town.root / "beta" / ".git" / "HEAD").chmod(0o000)
        seen = _snapshot_as_nobody(town.root, town.projects)
        assert "error" not in seen, seen
        assert list(seen["unreadable"]) == ["alpha/.beads/formulas"]
        assert "alpha/.beads/formulas/alpha-work.formula.toml" not in seen["files"]
        assert (
            list(seen["heads_unreadable"]) == ["beta"]
            and "Permission denied" in seen["heads_unreadable"]["beta"]
        )

        after = FileSnapshot({p: FileStat.from_json(v) for p, v in seen["files"].items()}, seen["unreadable"])
        assert diff_files(before.files, after) == []  # unreadable is not removed
        assert next_file_state(before.files, after) == before.files
        heads_after = HeadsSnapshot(seen["heads"], seen["heads_unreadable"])
        assert diff_heads(heads_before.heads, heads_after) == []
        assert next_heads_state(heads_before.heads, heads_after) == heads_before.heads
    finally:
        for d in base.rglob("*"):
            if d.is_dir():
                d.chmod(0o755)
        shutil.rmtree(base)


def test_deferred_files_keep_their_old_state(tmp_path):
    town = make_small_town(tmp_path)
    before = transcript_files_snapshot(town.config())
    path = town.transcript("alpha")
    prov = f"claude-projects/{path.parent.name}/{path.name}"
    with open(path, "a") as fh:
        fh.write(transcript_line(1))
    after = transcript_files_snapshot(town.config())
    assert next_file_state(before.files, after, frozenset({prov}))[prov] == before.files[prov]
    assert next_file_state(before.files, after)[prov] == after.files[prov]


# -- cursors and the retrain decision ------------------------------------------------------------------
def test_cursor_round_trip_compression_and_bad_input():
    small = {"a": [1, 2, None]}
    assert decode_cursor("formulas", encode_cursor("formulas", small, 3)) == Cursor(small, 3)
    big = {f"claude-projects/p/{i:05d}.jsonl": [i, i * 7, "alpha"] for i in range(3000)}
    encoded = encode_cursor("transcripts", big)
    assert encoded.startswith("z1:") and len(encoded) < len(json.dumps(big)) / 3
    assert decode_cursor("transcripts", encoded) == Cursor(big, 0)
    assert decode_cursor("formulas", encode_cursor("beads", small)) is None  # another sensor's cursor
    assert decode_cursor("formulas", "not json") is None
    assert decode_cursor("formulas", "z1:!!!") is None
    assert decode_cursor("formulas", None) is None


def test_retrain_decision_adds_up_changes_since_the_trained_corpus():
    b = CorpusBuild
    builds = [b(5, "v5", 0.05), b(4, "v4", 0.04), b(3, "v3", 0.5), b(2, "v2", None)]
    assert decide_retrain([], "v1", 0.1).retrain is False
    d = decide_retrain(builds, "v4", 0.1)
    assert (d.retrain, round(d.pending_change, 3), d.builds_since_training) == (False, 0.05, 1)
    assert "5.0%" in d.reason and "10.0%" in d.reason
    d = decide_retrain(builds, "v3", 0.08)
    assert (d.retrain, round(d.pending_change, 3), d.builds_since_training) == (True, 0.09, 2)
    assert round(decide_retrain(builds, "v2", 0.1).pending_change, 6) == 0.59  # 0.05 + 0.04 + 0.5
    assert decide_retrain(builds, "v1", 0.1).pending_change == 1.0  # a build without the number: full change
    assert decide_retrain(builds, "v5", 0.0).retrain is False  # already trained on the newest
    never = decide_retrain(builds, None, 0.99)
    assert never.retrain and "no adapter" in never.reason


def test_cron_check_agrees_with_the_scheduler():
    from dagster._utils.schedules import is_valid_cron_string

    from gastown_ft.automation.cron import cron_problem

    cases = [
        "0 3 * * *",
        "*/15 * * * *",
        "0 4 * * sun",
        "0 0 1 jan *",
        "30 2 * * 1-5",
        "0 0,12 * * *",
        "5-10/2 * * * *",
        "@daily",
        "61 * * * *",
        "0 3 * *",
        "0 0 32 * *",
        "0 0 * 13 *",
        "0 */0 * * *",
        "a b c d e",
        "0 0 * * 8",
        "",
    ]
    assert [cron_problem(c) is None for c in cases] == [is_valid_cron_string(c) for c in cases]
    assert "minute field '61'" in cron_problem("61 * * * *")


def test_real_layout_heads_are_the_canonical_clones_and_copies_are_not_watched(tmp_path):
    """In Gas Town's layout a rig's HEAD is `<rig>/mayor/rig`'s; its worktrees and crew clones are
    not watched by the rig-HEAD, formula or beads sensors (the readers do not read them)."""
    from gastown_ft.automation.git_heads import rig_dirs
    from gastown_ft_tests.corpus.real_layout import make_real_town

    town = make_real_town(tmp_path)
    assert rig_dirs(town.config()) == {r: town.clone(r) for r in ("alpha", "beta")}
    before = rig_heads(town.config())
    assert before.heads == {
        r: {"commit": town.heads[r], "branch": "main", "git": True} for r in ("alpha", "beta")
    }
    worker = town.root / "alpha/polecats/nux/alpha"
    (worker / "CLAUDE.md").write_text("# alpha, polecat's edit\n")
    commit_all(worker, "wip on the polecat branch")
    assert diff_heads(before.heads, rig_heads(town.config())) == []
    (town.clone("alpha") / "CLAUDE.md").write_text("# alpha, merged\n")
    merged = commit_all(town.clone("alpha"), "merged")
    changes = diff_heads(before.heads, rig_heads(town.config()))
    assert [(c.rig, c.kind) for c in changes] == [("alpha", "commit")]
    assert changes[0].describe().endswith(f"-> {merged[:7]} (branch main)")
    copies = ("/refinery/", "/polecats/", "/crew/")
    for snap in (formula_files(town.config()), beads_files(town.config())):
        assert snap.files and not [p for p in snap.files if any(c in f"/{p}" for c in copies)]
    assert sorted(beads_files(town.config()).rigs()) == ["alpha", "beta"]
