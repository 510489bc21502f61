"""Issue 12's "done when", end to end on one town in Gas Town's real layout built from the real files in
../shared/gastown-samples (architecture.md, "Directory Structure"): provenance, formula tiers,
directives and overlays, counts, no worktree or crew copy read, no learned name left after the scrub,
machinery beads out of the agent tasks.

The town: `mayor/rigs.json` with rigs gastown and beads; town `.beads/` with `routes.jsonl` (hq-, gt-,
bd-) and a town formula; a town directive and overlay. gastown's canonical clone `gastown/mayor/rig`
holds its old tracked `bd export` beside its `bd backup` dump (the same beads at two ages), embedded
formulas, role templates and a rig formula, all committed, so its refinery and polecat worktrees and
its crew clone carry copies of every one of them; rig directive and overlay from the contrib harness.
beads' canonical `.beads/` redirects to its export outside the town. A polecat's session in its
worktree is the one transcript.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from gastown_ft.corpus.beads import read_beads
from gastown_ft.corpus.conventions import read_conventions
from gastown_ft.corpus.documents import ReadLog, documents_to_table
from gastown_ft.corpus.formulas import read_formulas
from gastown_ft.corpus.identities import IdentityMap, learn_all
from gastown_ft.corpus.machinery import classify
from gastown_ft.corpus.pairs_beads import build_bead_examples
from gastown_ft.corpus.scan import TownScan
from gastown_ft.corpus.scrub import Scrubber
from gastown_ft.corpus.scrubbing import RedactionReport, learn_row, scrub_rows
from gastown_ft.corpus.transcripts import read_transcripts
from gastown_ft_tests.corpus.helpers import commands
from gastown_ft_tests.corpus.real_layout import RealTown, add_rig, add_transcript, write

pytestmark = pytest.mark.shared

GASTOWN_EXPORT = "gastown/history/a98299b84-parent/.beads/issues.jsonl"
BEADS_EXPORT = "beads/history/7993ed65c-parent/.beads/issues.jsonl"
BACKUP = "gastown/.beads/backup"
FORMULAS = "gastown/internal/formula/formulas"
EMBEDDED = ("mol-polecat-work", "mol-deacon-patrol", "mol-witness-patrol", "code-review")
TEMPLATES = ("polecat", "crew", "witness")
CONTRIB = "gastown/docs/contrib-harnesses/polecat-pr-flow"
COPY_PARTS = ("/refinery/", "/polecats/", "/crew/")
SCRUBBED_FIELDS = ("text", "title", "path", "key", "meta")


def _ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def build_town(samples: Path, base: Path) -> RealTown:
    needed = [GASTOWN_EXPORT, BEADS_EXPORT, f"{BACKUP}/issues.jsonl", f"{CONTRIB}/polecat.md"]
    if missing := [p for p in needed if not (samples / p).is_file()]:
        pytest.skip(f"../shared/gastown-samples lacks {missing}")

    def text(rel: str) -> str:
        return (samples / rel).read_text(encoding="utf-8")

    town = RealTown(base / "town", base / "claude-projects")
    root = town.root
    write(root / "mayor/rigs.json", json.dumps({"version": 1, "rigs": {"gastown": {}, "beads": {}}}))
    routes = [("hq-", "."), ("gt-", "gastown/mayor/rig"), ("bd-", "beads/mayor/rig")]
    write(
        root / ".beads/routes.jsonl", "".join(json.dumps({"prefix": p, "path": d}) + "\n" for p, d in routes)
    )
    write(
        root / ".beads/formulas/towers-of-hanoi.formula.toml",
        text(f"{FORMULAS}/towers-of-hanoi.formula.toml"),
    )
    write(root / "directives/witness.md", "## Town policy\nNudge a stuck polecat once, then escalate.\n")
    write(root / "formula-overlays/mol-polecat-work.toml", text(f"{CONTRIB}/mol-polecat-work.toml"))

    files = {
        ".beads/issues.jsonl": text(GASTOWN_EXPORT),
        ".beads/formulas/shiny.formula.toml": text(f"{FORMULAS}/shiny.formula.toml"),
        "AGENTS.md": text("gastown/AGENTS.md"),
    }
    for name in ("issues", "events", "comments", "dependencies", "labels", "config"):
        files[f".beads/backup/{name}.jsonl"] = text(f"{BACKUP}/{name}.jsonl")
    files[".beads/backup/backup_state.json"] = text(f"{BACKUP}/backup_state.json")
    for name in EMBEDDED:
        files[f"internal/formula/formulas/{name}.formula.toml"] = text(f"{FORMULAS}/{name}.formula.toml")
    for role in TEMPLATES:
        files[f"internal/templates/roles/{role}.md.tmpl"] = text(
            f"gastown/internal/templates/roles/{role}.md.tmpl"
        )
    add_rig(town, "gastown", files, polecat="nux", crew="max")
    write(root / "gastown/directives/polecat.md", text(f"{CONTRIB}/polecat.md"))
    write(root / "gastown/formula-overlays/mol-polecat-work.toml", text(f"{CONTRIB}/mol-polecat-work.toml"))

    outside = base / "beads-data/.beads"
    write(outside / "issues.jsonl", text(BEADS_EXPORT))
    add_rig(
        town,
        "beads",
        {"README.md": "# beads\n", ".beads/redirect": f"{outside}\n"},
        polecat="rictus",
        crew="joe",
    )
    worker = root / "gastown/polecats/nux/gastown"
    add_transcript(
        town, worker, "Hooked bead gt-t2bjt: skip digests in the feed. Working in /Users/maraq/gt."
    )
    return town


@pytest.fixture(scope="module")
def town(shared_samples, tmp_path_factory):
    return build_town(shared_samples, tmp_path_factory.mktemp("real-town"))


@pytest.fixture(scope="module")
def read_all(town):
    """Every reader over one walk of the town: {source: (documents, log)}, and the walk."""
    scan = TownScan(town.config())
    out = {}
    for name, reader in (
        ("beads", read_beads),
        ("formulas", read_formulas),
        ("conventions", read_conventions),
        ("transcripts", read_transcripts),
    ):
        log = ReadLog()
        out[name] = (list(reader(scan, log)), log)
    return out, scan


def in_a_copy(path: str) -> bool:
    return any(part in f"/{path}" for part in COPY_PARTS)


def test_layout_rigs_and_what_was_not_read(town, read_all):
    out, scan = read_all
    assert scan.rig_source == "rigs.json" and sorted(scan.rigs) == ["beads", "gastown"]
    assert {n: r.commit for n, r in scan.rigs.items()} == town.heads
    assert scan.layout_counts() == {
        "worktree_not_read": 4,
        "clone_not_read": 2,
        "redirect_followed": 1,
        "redirect_already_read": 2,
    }
    assert [(r.prefix, r.rig, r.town) for r in scan.routes] == [
        ("bd-", "beads", False),
        ("gt-", "gastown", False),
        ("hq-", None, True),
    ]
    for source, (docs, log) in out.items():
        if source != "transcripts":  # a session in a worktree is still the polecat's work
            assert not [d.path for d in docs if in_a_copy(d.path)], source
        assert not [q for q in log.quarantined if q.reason == "duplicate_id"]


def test_beads_provenance_and_counts(town, read_all, shared_samples):
    (docs, log), scan = read_all[0]["beads"], read_all[1]
    gastown = set(_ids(shared_samples / GASTOWN_EXPORT)) | set(_ids(shared_samples / BACKUP / "issues.jsonl"))
    beads_rows = _ids(shared_samples / BEADS_EXPORT)
    hq = [i for i in beads_rows if i.startswith("hq-")]
    assert len(gastown) == 1092 and len(beads_rows) == 704 and len(hq) == 4
    by_rig = Counter(d.rig for d in docs)
    # The export's hq- beads are the town's (routes.jsonl); its other prefixes stay with their file.
    assert by_rig == {"gastown": 1092, "beads": 700, None: 4}
    assert len({d.key for d in docs}) == len(docs) == 1796
    for d in docs:
        assert d.commit == (town.heads[d.rig] if d.rig else None), d.path
    assert {d.path for d in docs if d.rig == "gastown"} == {
        "gastown/mayor/rig/.beads/issues.jsonl",
        "gastown/mayor/rig/.beads/backup/issues.jsonl",
    }
    assert {d.path for d in docs if d.rig != "gastown"} == {
        str(town.root.parent / "beads-data/.beads/issues.jsonl")
    }
    # The old export and the backup share 518 beads: 454 the same version, 64 updated since.
    assert log.skipped["identical_duplicate_in_other_file"] == 454
    superseded = [q for q in log.quarantined if q.reason == "superseded_version"]
    assert len(superseded) == 64 and {q.path for q in superseded} == {"gastown/mayor/rig/.beads/issues.jsonl"}
    assert all("gastown/mayor/rig/.beads/backup/issues.jsonl" in q.detail for q in superseded)
    assert {q.reason for q in log.quarantined} == {"superseded_version"}
    for reason, n in scan.layout_counts().items():
        assert log.skipped[reason] == n
    print("beads:", dict(by_rig), "skipped:", dict(log.skipped), "quarantined:", len(log.quarantined))


def test_formula_tiers(town, read_all):
    docs, log = read_all[0]["formulas"]
    tiers = {d.meta["name"]: (d.meta["tier"], d.rig, d.commit) for d in docs}
    expected = {"towers-of-hanoi": ("town", None, None), "shiny": ("rig", "gastown", town.heads["gastown"])}
    expected |= {n: ("embedded", "gastown", town.heads["gastown"]) for n in EMBEDDED}
    assert tiers == expected
    assert not log.quarantined


def test_directives_and_overlays_with_their_role(town, read_all):
    docs, _ = read_all[0]["conventions"]
    policy = {
        d.path: (d.kind, d.role, d.meta.get("scope"), d.meta.get("precedence"))
        for d in docs
        if d.kind in ("directive", "formula_overlay") and d.meta.get("scope")
    }
    assert policy == {
        "directives/witness.md": ("directive", "witness", "town", "concatenate"),
        "gastown/directives/polecat.md": ("directive", "polecat", "gastown", "concatenate"),
        "formula-overlays/mol-polecat-work.toml": ("formula_overlay", "polecat", "town", "replace"),
        "gastown/formula-overlays/mol-polecat-work.toml": (
            "formula_overlay",
            "polecat",
            "gastown",
            "replace",
        ),
    }
    by_path = {d.path: d for d in docs}
    assert by_path["formula-overlays/mol-polecat-work.toml"].meta["replaced_in"] == ["gastown"]
    templates = {d.role for d in docs if d.kind == "role_template"}
    assert templates == set(TEMPLATES)
    assert all(d.commit == town.heads["gastown"] for d in docs if d.rig == "gastown")


def test_worktree_transcript_counts(town, read_all):
    docs, _ = read_all[0]["transcripts"]
    assert [(d.role, d.rig, d.commit) for d in docs] == [("polecat", "gastown", town.heads["gastown"])]


def test_no_learned_name_survives_the_scrub(read_all):
    out, _ = read_all
    rows = [r for docs, _ in out.values() for r in documents_to_table(docs).to_pylist()]
    evidence: set = set()
    for row in rows:
        learn_row(row, evidence.add)
    people = IdentityMap.build(evidence)
    assert people.people >= 5 and {"max", "joe", "maraq"} <= {*people.everywhere, *people.context}
    scrubbed = list(scrub_rows(rows, Scrubber().with_identities(people), RedactionReport(), []))
    assert len(scrubbed) == len(rows)
    texts = [r[f] for r in scrubbed for f in SCRUBBED_FIELDS if isinstance(r.get(f), str)]
    # No form of a learned person is left to find: distinctive names anywhere, common-word names
    # (`max`) in any identity context, mention or name-like prose; learning again finds no one.
    left: list[tuple[int, int, str]] = []
    for t in texts:
        people.find(t, left.append)
    assert left == []
    joined = "\n".join(texts)
    for name in people.everywhere:
        assert not re.search(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", joined, re.I), "a name"
    assert {e for e in learn_all(texts) if e[0] != "handle"} == set()
    assert "crew/max" not in joined and "crew/joe" not in joined and "/Users/maraq" not in joined
    # The crew list in gastown's beads, `(like joe, max)`, is two people now; `max` the word stays.
    assert re.search(r"Crew workers \(like person-\d+, person-\d+\)", joined)
    assert "max expected silence interval" in joined and "Mad Max" in joined
    # Agents keep their handles and roles.
    assert "gastown/polecats/nux" in joined and "gastown/refinery" in joined


def test_machinery_is_out_of_the_agent_tasks(read_all):
    docs, _ = read_all[0]["beads"]
    rows = documents_to_table(docs).to_pylist()
    machinery = {d.key for d in docs if classify(d.meta) is not None}
    assert len(machinery) > 50
    examples = list(build_bead_examples(rows, triage_sets=5))
    assert examples
    for e in examples:
        if e["task"] == "bead_triage":
            assert not set(re.findall(r"^- `([^`]+)`", e["messages"][1]["content"], flags=re.M)) & machinery
        else:
            assert e["group_id"].removeprefix("bead:") not in machinery
    closes = [c for e in examples for c in commands(e) if c.startswith("bd close")]
    assert closes and not [
        c for c in closes if re.search(r"Squashed from|auto-closed by reaper|patrol cycle", c)
    ]
    print("machinery beads:", len(machinery), "of", len(docs), "examples:", len(examples))
