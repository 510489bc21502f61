"""Gas Town's real layout, read once: rigs from `mayor/rigs.json`, each rig's canonical clone
`<rig>/mayor/rig` (its HEAD is the rig's commit), worktrees and crew clones not read again,
`.beads/redirect` followed once, directives and overlays read with their role, formula tiers.

Towns here are built with real `git worktree add` / `git clone`, in the layout of
../shared/gastown-samples/gastown/docs/design/architecture.md ("Directory Structure")."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from gastown_ft.config import TownConfig
from gastown_ft.corpus.beads import read_beads
from gastown_ft.corpus.conventions import read_conventions
from gastown_ft.corpus.documents import ReadLog
from gastown_ft.corpus.formulas import formula_tier, read_formulas
from gastown_ft.corpus.scan import TownScan, discover_rigs, follow_redirect
from gastown_ft.corpus.transcripts import read_transcripts
from gastown_ft_tests.corpus.real_layout import FORMULA, add_rig, git, jsonl, make_real_town, write

COPY_PARTS = ("/refinery/", "/polecats/", "/crew/")


def read(reader, cfg: TownConfig) -> tuple[list, ReadLog, TownScan]:
    scan = TownScan(cfg)
    log = ReadLog()
    return list(reader(scan, log)), log, scan


def in_a_copy(path: str) -> bool:
    return any(part in f"/{path}" for part in COPY_PARTS)


@pytest.fixture(scope="module")
def town(tmp_path_factory):
    return make_real_town(tmp_path_factory.mktemp("real"))


def test_rigs_come_from_the_registry_and_their_canonical_clones(town):
    scan = TownScan(town.config())
    assert scan.rig_source == "rigs.json"
    assert sorted(scan.rigs) == ["alpha", "beta"]  # not `directives`, not `formula-overlays`
    assert scan.left_out == {"scratch": "not in mayor/rigs.json"}
    for name, rig in scan.rigs.items():
        assert rig.path == town.root / name and rig.clone == town.clone(name)
        assert rig.commit == town.heads[name] and rig.branch == "main"
    assert sorted(c.path.relative_to(town.root).as_posix() for c in scan.copies) == sorted(town.copies)
    assert Counter(c.kind for c in scan.copies) == {"worktree": 4, "clone": 2}
    walked = [scan.rel(p) for p in scan.files]
    assert not [p for p in walked if in_a_copy(p) or p.startswith("scratch/")]


def test_beads_are_read_once_with_the_canonical_commit(town):
    docs, log, _ = read(read_beads, town.config())
    by_rig = Counter(d.rig for d in docs)
    # canonical count: 2 town (hq-), 3 in alpha's clone, 2 behind beta's redirect
    assert len(docs) == 7 and by_rig == {None: 2, "alpha": 3, "beta": 2}
    assert len({d.key for d in docs}) == len(docs)
    assert not [q for q in log.quarantined if q.reason == "duplicate_id"]
    assert not [d for d in docs if in_a_copy(d.path)]
    for d in docs:
        if d.rig:
            assert d.commit == town.heads[d.rig], d.path
    alpha = {d.path for d in docs if d.rig == "alpha"}
    assert alpha == {"alpha/mayor/rig/.beads/issues.jsonl"}
    beta = {d.path for d in docs if d.rig == "beta"}
    assert beta == {str(town.root.parent / "beta-beads/.beads/issues.jsonl")}


def test_redirects_are_followed_once(town):
    scan = TownScan(town.config())
    outcomes = {scan.rel(r.stub): (r.outcome, r.rig) for r in scan.redirects}
    # alpha/.beads -> alpha/mayor/rig/.beads (walked already); beta's chain ends outside the town.
    assert outcomes["alpha/.beads"] == ("already_read", "alpha")
    assert Counter(o for o, _ in outcomes.values()) == {"already_read": 2, "read": 1}
    assert {r for _, r in outcomes.values()} == {"alpha", "beta"}
    external = town.root.parent / "beta-beads/.beads/issues.jsonl"
    assert scan.files.count(external) == 1
    assert scan.beads_dirs_of("beta")[-1] == str(town.root.parent / "beta-beads/.beads")


def test_formula_tiers_and_no_copy(town):
    docs, log, _ = read(read_formulas, town.config())
    tiers = {d.meta["name"]: (d.meta["tier"], d.rig, d.commit) for d in docs}
    assert tiers == {
        "town-wide": ("town", None, None),
        "alpha-work": ("rig", "alpha", town.heads["alpha"]),
        "embedded-one": ("embedded", "alpha", town.heads["alpha"]),
    }
    assert not log.quarantined
    by_name = {d.meta["name"]: d for d in docs}
    assert by_name["alpha-work"].meta["active_in"] == ["alpha"]
    assert "wip" not in tiers  # a polecat's worktree is not a formula tier


@pytest.mark.parametrize(
    "rel,rig,tier",
    [
        (".beads/formulas/x.formula.toml", None, "town"),
        ("gastown/.beads/formulas/x.formula.toml", "gastown", "rig"),
        ("gastown/mayor/rig/.beads/formulas/x.formula.toml", "gastown", "rig"),
        ("gastown/mayor/rig/internal/formula/formulas/x.formula.toml", "gastown", "embedded"),
        ("gastown/refinery/rig/.beads/formulas/x.formula.toml", "gastown", "embedded"),
        ("/elsewhere/.beads/formulas/x.formula.toml", "gastown", "embedded"),
    ],
)
def test_formula_tier(rel, rig, tier):
    assert formula_tier(rel, rig) == tier
    assert (
        formula_tier("/elsewhere/.beads/formulas/x.formula.toml", "gastown", ["/elsewhere/.beads"]) == "rig"
    )


def test_directives_and_overlays_are_conventions_with_their_role(town):
    docs, log, _ = read(read_conventions, town.config())
    by_path = {d.path: d for d in docs}
    town_directive = by_path["directives/polecat.md"]
    assert town_directive.kind == "directive" and town_directive.role == "polecat"
    assert town_directive.meta["role"] == "polecat" and town_directive.meta["scope"] == "town"
    assert town_directive.meta["precedence"] == "concatenate" and town_directive.rig is None
    rig_directive = by_path["alpha/directives/witness.md"]
    assert (rig_directive.kind, rig_directive.role, rig_directive.rig) == ("directive", "witness", "alpha")
    assert rig_directive.meta["scope"] == "alpha" and rig_directive.commit == town.heads["alpha"]
    town_overlay = by_path["formula-overlays/alpha-work.toml"]
    assert town_overlay.kind == "formula_overlay" and town_overlay.meta["formula"] == "alpha-work"
    assert town_overlay.meta["replaced_in"] == ["alpha"] and town_overlay.meta["precedence"] == "replace"
    assert by_path["alpha/formula-overlays/alpha-work.toml"].meta["scope"] == "alpha"
    # The rig's CLAUDE.md sits in the canonical clone: it speaks to no role (not to the mayor).
    assert by_path["alpha/mayor/rig/CLAUDE.md"].role is None
    assert not [p for p in by_path if in_a_copy(p)]
    assert not log.quarantined


def test_worktree_transcripts_still_count(town):
    docs, _, _ = read(read_transcripts, town.config())
    assert len(docs) == 1
    (doc,) = docs
    assert (doc.role, doc.rig, doc.commit) == ("polecat", "alpha", town.heads["alpha"])


def test_rig_layout_without_a_registry(town, tmp_path):
    """No mayor/rigs.json: rigs are found by layout, each with its canonical clone."""
    root = tmp_path / "town"
    shutil.copytree(town.root, root, symlinks=True)
    (root / "mayor/rigs.json").unlink()
    found = discover_rigs(TownConfig(root=root))
    assert found.source == "layout"
    assert sorted(found.rigs) == ["alpha", "beta", "scratch"]
    assert found.rigs["alpha"].clone == root / "alpha/mayor/rig"
    assert found.rigs["scratch"].clone == root / "scratch"  # a flat rig is its own clone
    assert "directives" not in found.rigs and "formula-overlays" not in found.rigs


def test_bad_registry_and_missing_rig_are_reported(tmp_path):
    root = tmp_path / "town"
    write(root / "mayor/rigs.json", "{not json")
    write(root / "alpha/.beads/issues.jsonl", jsonl([{"id": "al-1"}]))
    scan = TownScan(TownConfig(root=root))
    assert scan.rig_source == "layout" and list(scan.rigs) == ["alpha"]
    assert [(i.reason, i.path.name) for i in scan.issues] == [("invalid_rigs_json", "rigs.json")]
    write(root / "mayor/rigs.json", json.dumps({"version": 1, "rigs": {"alpha": {}, "gone": {}}}))
    scan = TownScan(TownConfig(root=root))
    assert list(scan.rigs) == ["alpha"]
    assert [(i.reason, i.path.name) for i in scan.issues] == [("missing_rig", "gone")]
    log = ReadLog()
    scan.town_level_issues(log, lambda p: False)
    assert [q.reason for q in log.quarantined] == ["missing_rig"]


def test_broken_redirects_are_quarantined_not_followed(tmp_path):
    root = tmp_path / "town"
    write(root / "alpha/.beads/redirect", "../nowhere/.beads\n")
    write(root / "alpha/.beads/issues.jsonl", jsonl([{"id": "al-stale"}]))  # a stub's own beads: not read
    write(root / "beta/.beads/redirect", "../beta/other/.beads\n")
    write(root / "beta/other/.beads/redirect", "../.beads\n")  # back to beta/.beads: a loop
    docs, log, scan = read(read_beads, TownConfig(root=root))
    assert docs == []
    # Both stubs of the loop are reported; nothing is read twice or forever.
    expected = ["redirect_loop", "redirect_loop", "redirect_target_missing"]
    assert sorted(r.outcome for r in scan.redirects) == expected
    town_log = ReadLog()
    scan.town_level_issues(town_log, lambda p: False)
    assert sorted(q.reason for q in town_log.quarantined) == expected
    assert follow_redirect(root / "alpha/.beads") == (None, "redirect_target_missing")


def test_flat_rig_with_worktrees_inside_is_read_once(tmp_path):
    """An older flat rig (a git clone at the top level) whose polecats work in worktrees under it."""
    root = tmp_path / "town"
    rig = root / "gamma"
    write(rig / ".beads/issues.jsonl", jsonl([{"id": "ga-1"}, {"id": "ga-2"}]))
    write(rig / ".beads/formulas/gamma.formula.toml", FORMULA.format(name="gamma"))
    git(rig, "init", "-q", "-b", "main")
    git(rig, "add", "-A")
    git(rig, "commit", "-q", "-m", "initial")
    git(rig, "worktree", "add", "-q", "-b", "polecat/nux", str(rig / "polecats/nux"), "HEAD")
    head = git(rig, "rev-parse", "HEAD")
    docs, log, scan = read(read_beads, TownConfig(root=root))
    assert sorted(d.key for d in docs) == ["ga-1", "ga-2"] and {d.commit for d in docs} == {head}
    assert [c.path for c in scan.copies] == [rig / "polecats/nux"]
    formulas, _, _ = read(read_formulas, TownConfig(root=root))
    assert [(f.path, f.meta["tier"]) for f in formulas] == [
        ("gamma/.beads/formulas/gamma.formula.toml", "rig")
    ]


def test_read_once_on_the_demo_town(demo_town, tmp_path):
    """The demo town has 5 worktrees and 2 crew clones: every reader gives what it gives on the same
    town with those copies removed, and no duplicate_id quarantine."""
    stripped = tmp_path / "town"
    copies = {demo_town.root / rel for rel in demo_town.copies}

    def ignore(directory: str, names: list[str]) -> list[str]:
        return [n for n in names if Path(directory) / n in copies]

    shutil.copytree(demo_town.root, stripped, symlinks=True, ignore=ignore)
    real = TownConfig(root=demo_town.root, claude_projects_dir=demo_town.claude_projects_dir)
    canonical = TownConfig(root=stripped, claude_projects_dir=tmp_path / "none")
    for reader in (read_beads, read_formulas, read_conventions):
        docs, log, scan = read(reader, real)
        expected, expected_log, _ = read(reader, canonical)
        assert sorted((d.path, d.key) for d in docs) == sorted((d.path, d.key) for d in expected)
        assert not [q for q in log.quarantined if q.reason == "duplicate_id"]
        assert len(log.quarantined) == len(expected_log.quarantined)
        assert not [d for d in docs if in_a_copy(d.path)]
        assert {d.commit for d in docs if d.rig} <= set(demo_town.heads.values())
        assert all(d.commit == demo_town.heads[d.rig] for d in docs if d.rig)
    assert len(scan.copies) == 7


def test_demo_town_formula_tiers_and_directives(demo_town):
    cfg = TownConfig(root=demo_town.root, claude_projects_dir=demo_town.claude_projects_dir)
    formulas, _, _ = read(read_formulas, cfg)
    tiers = Counter(d.meta["tier"] for d in formulas)
    for d in formulas:
        if d.meta["tier"] == "rig":
            assert d.path.startswith(f"{d.rig}/mayor/rig/.beads/formulas/"), d.path
    assert set(tiers) == {"rig", "town", "embedded"}
    conventions, _, _ = read(read_conventions, cfg)
    directives = {d.path: (d.role, d.meta["scope"]) for d in conventions if d.kind == "directive"}
    assert directives == {
        "directives/polecat.md": ("polecat", "town"),
        "directives/witness.md": ("witness", "town"),
        "ledger/directives/polecat.md": ("polecat", "ledger"),
        "courier/directives/refinery.md": ("refinery", "courier"),
    }
    overlays = {d.path: d.meta for d in conventions if d.kind == "formula_overlay"}
    assert overlays["formula-overlays/mol-polecat-work.toml"]["replaced_in"] == ["ledger"]
    assert overlays["formula-overlays/mol-polecat-work.toml"]["role"] == "polecat"


# ------------------------------------------------------------------------------------------------
# the real beads exports in ../shared, in the real layout
# ------------------------------------------------------------------------------------------------


@pytest.mark.shared
def test_shared_beads_in_the_real_layout_are_read_once(shared_samples, tmp_path):
    """gastown's and beads' last tracked `bd export`s as two rigs' beads (the gastown one committed
    in its canonical clone, so every worktree and crew clone carries a copy; the beads one behind a
    redirect out of the town): documents are the canonical rows, once each."""
    from gastown_ft_tests.corpus.real_layout import RealTown

    gastown_export = next((shared_samples / "gastown/history").glob("*/.beads/issues.jsonl"))
    beads_export = next((shared_samples / "beads/history").glob("*/.beads/issues.jsonl"))
    town = RealTown(tmp_path / "town", tmp_path / "claude-projects")
    write(town.root / "mayor/rigs.json", json.dumps({"version": 1, "rigs": {"gastown": {}, "beads": {}}}))
    write(town.root / ".beads/issues.jsonl", jsonl([{"id": "hq-1", "title": "town"}]))
    add_rig(town, "gastown", {".beads/issues.jsonl": gastown_export.read_text(encoding="utf-8")})
    outside = tmp_path / "beads-data" / ".beads"
    outside.mkdir(parents=True)
    shutil.copyfile(beads_export, outside / "issues.jsonl")
    add_rig(town, "beads", {"README.md": "# beads\n", ".beads/redirect": f"{outside}\n"})

    def ids(path: Path) -> set[str]:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return {r["id"] for r in rows if r.get("status") != "tombstone"}

    docs, log, scan = read(read_beads, town.config())
    by_rig = Counter(d.rig for d in docs)
    assert by_rig == {"gastown": len(ids(gastown_export)), "beads": len(ids(beads_export)), None: 1}
    assert len(docs) == 933 + 704 + 1  # MANIFEST.md: 933 and 704 rows, no tombstones
    assert not [q for q in log.quarantined if q.reason == "duplicate_id"]
    assert len(scan.copies) == 6 and not [d for d in docs if in_a_copy(d.path)]
    assert all(d.commit == town.heads[d.rig] for d in docs if d.rig)


# ------------------------------------------------------------------------------------------------
# routes.jsonl, one bead in several files, what the walk left out
# ------------------------------------------------------------------------------------------------


def test_layout_counts_say_what_was_not_read_and_why(town):
    docs, log, scan = read(read_beads, town.config())
    assert scan.layout_counts() == {
        "worktree_not_read": 4,  # alpha's and beta's refinery/rig and polecat worktree
        "clone_not_read": 2,  # their crew clones
        "rig_left_out": 1,  # scratch: not in mayor/rigs.json
        "redirect_followed": 1,  # beta's canonical .beads -> outside the town
        "redirect_already_read": 2,  # alpha/.beads and beta/.beads: their targets are read once
    }
    for reason, n in scan.layout_counts().items():
        assert log.skipped[reason] == n  # the beads reader's report carries them


def test_the_read_report_shows_the_layout_apart_from_bead_rows():
    from gastown_ft.report import detail_lines

    skipped = {"tombstone": 3, "identical_duplicate_in_other_file": 5, "worktree_not_read": 4}
    skipped |= {"clone_not_read": 2, "redirect_followed": 1}
    lines = detail_lines({"raw_beads": {"metadata": {"skipped": skipped}}})
    assert "[bold]bead rows skipped[/bold]: identical_duplicate_in_other_file 5, tombstone 3" in lines
    assert "[bold]town layout[/bold]: worktree_not_read 4, clone_not_read 2, redirect_followed 1" in lines


def routed_town(base: Path):
    """The real-layout town plus: routes for beta and a place no rig read, a bad route line; town
    beads that repeat alpha's (one the same, one newer, one older) and an `hq-` bead filed in alpha."""
    town = make_real_town(base)
    root = town.root
    routes = [
        {"prefix": "hq-", "path": "."},
        {"prefix": "al-", "path": "alpha/mayor/rig"},
        {"prefix": "be-", "path": "beta/mayor/rig"},
        {"prefix": "zz-", "path": "gone/mayor/rig"},
    ]
    write(root / ".beads/routes.jsonl", jsonl(routes) + "{not json\n")
    alpha = [
        {"id": "al-1", "title": "alpha 1", "updated_at": "2026-03-01T10:00:00Z"},
        {"id": "al-2", "title": "alpha 2", "updated_at": "2026-03-01T10:00:00Z"},
        {"id": "al-3", "title": "alpha 3", "updated_at": "2026-03-01T10:00:00Z", "ephemeral": 1},
        {"id": "hq-7", "title": "mail filed from alpha"},
    ]
    write(town.clone("alpha") / ".beads/issues.jsonl", jsonl(alpha))
    hq = [
        {"id": "hq-1", "title": "convoy"},
        {"id": "al-1", "title": "alpha 1 retitled", "updated_at": "2026-03-02T09:00:00Z"},
        {"id": "al-2", "title": "alpha 2 stale", "updated_at": "2026-02-01T00:00:00Z"},
        # the same version as alpha's, as a backup writes it (0/1) beside an export (true/false)
        {"id": "al-3", "title": "alpha 3", "updated_at": "2026-03-01T10:00:00Z", "ephemeral": True},
        {"id": "be-1", "title": "beta 1"},  # beta's row, copied
        {"id": "zz-1", "title": "a bead of a rig nobody reads"},
    ]
    write(root / ".beads/issues.jsonl", jsonl(hq))
    return town


def test_routes_map_bead_prefixes_to_rigs(tmp_path):
    town = routed_town(tmp_path)
    docs, log, scan = read(read_beads, town.config())
    assert [(r.prefix, r.rig, r.town) for r in scan.routes] == [
        ("al-", "alpha", False),
        ("be-", "beta", False),
        ("hq-", None, True),
        ("zz-", None, False),
    ]
    by_key = {d.key: d for d in docs}
    # A bead belongs where its prefix routes, whichever file it was read from (with that rig's HEAD).
    assert (by_key["hq-7"].rig, by_key["hq-7"].path) == (None, "alpha/mayor/rig/.beads/issues.jsonl")
    assert by_key["al-1"].path == ".beads/issues.jsonl"  # the town's copy is the newest ...
    assert (by_key["al-1"].rig, by_key["al-1"].commit) == ("alpha", town.heads["alpha"])  # ... alpha's bead
    # be-1 is in beta's beads and in the town's: the same version, counted; beta's own copy is kept.
    assert by_key["be-1"].path.endswith("beta-beads/.beads/issues.jsonl") and by_key["be-1"].rig == "beta"
    # zz- routes to no rig that is read: the bead stays the town file's.
    assert by_key["zz-1"].rig is None
    assert scan.layout_counts()["route_to_unread_place"] == 1
    town_log = ReadLog()
    scan.town_level_issues(town_log, lambda p: False)
    assert [(q.reason, q.path) for q in town_log.quarantined] == [("invalid_route", ".beads/routes.jsonl")]


def test_one_bead_in_several_files_is_resolved_like_repeats_in_one(tmp_path):
    town = routed_town(tmp_path)
    docs, log, _ = read(read_beads, town.config())
    keys = [d.key for d in docs]
    assert len(keys) == len(set(keys))  # each bead once
    by_key = {d.key: d for d in docs}
    assert by_key["al-1"].title == "bead al-1: alpha 1 retitled"  # the newest updated_at wins
    assert by_key["al-2"].title == "bead al-2: alpha 2"
    assert by_key["al-3"].path == "alpha/mayor/rig/.beads/issues.jsonl"  # same version: its home copy
    # Identical versions are counted; conflicting ones are reported on the older copy, naming the kept one.
    assert log.skipped["identical_duplicate_in_other_file"] == 2  # al-3, be-1
    superseded = sorted(
        (q.path, q.line, q.detail) for q in log.quarantined if q.reason == "superseded_version"
    )
    assert superseded == [
        (
            ".beads/issues.jsonl",
            3,
            "line 3 is another version of bead al-2 (updated_at 2026-02-01T00:00:00Z; the newest is kept: "
            "alpha/mayor/rig/.beads/issues.jsonl line 2, updated_at 2026-03-01T10:00:00Z)",
        ),
        (
            "alpha/mayor/rig/.beads/issues.jsonl",
            1,
            "line 1 is another version of bead al-1 (updated_at 2026-03-01T10:00:00Z; the newest is kept: "
            ".beads/issues.jsonl line 2, updated_at 2026-03-02T09:00:00Z)",
        ),
    ]
    assert {q.reason for q in log.quarantined} == {"superseded_version"}


def test_same_updated_at_but_different_fields_is_a_conflict_kept_at_home(tmp_path):
    root = tmp_path / "town"
    write(root / ".beads/routes.jsonl", jsonl([{"prefix": "al-", "path": "alpha"}]))
    row = {"id": "al-1", "title": "one", "updated_at": "2026-03-01T10:00:00Z"}
    write(root / ".beads/issues.jsonl", jsonl([row | {"title": "one (town)"}]))
    write(root / "alpha/.beads/issues.jsonl", jsonl([row]))
    docs, log, _ = read(read_beads, TownConfig(root=root))
    assert [(d.key, d.path, d.rig) for d in docs] == [("al-1", "alpha/.beads/issues.jsonl", "alpha")]
    (q,) = log.quarantined
    assert (q.reason, q.path) == ("superseded_version", ".beads/issues.jsonl")
    assert "the same updated_at; the copy where the town's routes send the id is kept" in q.detail
