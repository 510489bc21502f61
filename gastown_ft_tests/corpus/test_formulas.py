from __future__ import annotations

import json
from pathlib import Path

import pytest

from gastown_ft.config import TownConfig
from gastown_ft.corpus.documents import ReadLog
from gastown_ft.corpus.formulas import FormulaError, check_needs, parse_formula, read_formulas
from gastown_ft.corpus.scan import TownScan

WORKFLOW = """
formula = "{name}"
description = "{desc}"
version = 1
[vars.issue]
description = "the bead"
required = true
[[steps]]
id = "load"
title = "Load the hook"
description = "gt hook"
[[steps]]
id = "work"
title = "Do it"
needs = ["load"]
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def scan_of(root: Path) -> TownScan:
    return TownScan(TownConfig(root=root, claude_projects_dir=root / "nowhere"))


def test_check_needs_finds_cycle_and_unknown():
    with pytest.raises(FormulaError) as e:
        check_needs([{"id": "a", "needs": ["c"]}, {"id": "b", "needs": ["a"]}, {"id": "c", "needs": ["b"]}])
    assert e.value.reason == "needs_cycle" and "a -> c -> b -> a" in str(e.value)
    with pytest.raises(FormulaError) as e:
        check_needs([{"id": "a", "needs": ["ghost"]}])
    assert e.value.reason == "unknown_step"
    with pytest.raises(FormulaError) as e:
        check_needs([{"id": "a"}, {"id": "a"}])
    assert e.value.reason == "duplicate_step"
    check_needs([{"id": "a"}, {"id": "b", "needs": "a"}, {"id": "c", "needs": ["a", "b"]}])


@pytest.mark.parametrize(
    "data,ftype,part",
    [
        ({"formula": "w", "steps": [{"id": "s"}]}, "workflow", "steps"),
        ({"formula": "c", "type": "convoy", "legs": [{"id": "l1", "focus": "x"}]}, "convoy", "legs"),
        (
            {
                "formula": "e",
                "type": "expansion",
                "template": [{"id": "{target}.a"}, {"id": "{target}.b", "needs": ["{target}.a"]}],
            },
            "expansion",
            "template",
        ),
        (
            {"formula": "a", "type": "aspect", "advice": [{"around": "*"}], "pointcuts": [{"glob": "*"}]},
            "aspect",
            "advice",
        ),
    ],
)
def test_every_type_parses(data, ftype, part):
    parsed = parse_formula(data, "fallback")
    assert parsed["type"] == ftype and parsed[part]


def test_bad_formulas_are_rejected_with_reasons():
    for data, reason in [
        ({"formula": "x", "type": "banana", "steps": [{"id": "a"}]}, "unknown_type"),
        ({"formula": "x"}, "no_steps"),
        ({"formula": "x", "type": "convoy"}, "no_steps"),
        ({"formula": "x", "steps": "nope"}, "bad_schema"),
        ([1, 2], "bad_schema"),
    ]:
        with pytest.raises(FormulaError) as e:
            parse_formula(data, "x")
        assert e.value.reason == reason


def test_resolution_rig_then_town_then_embedded(tmp_path):
    root = tmp_path / "town"
    write(root / ".beads/formulas/shared.formula.toml", WORKFLOW.format(name="shared", desc="town copy"))
    write(
        root / "alpha/.beads/formulas/shared.formula.toml", WORKFLOW.format(name="shared", desc="alpha copy")
    )
    write(
        root / "alpha/internal/formula/formulas/shared.formula.toml",
        WORKFLOW.format(name="shared", desc="emb"),
    )
    write(
        root / "alpha/internal/formula/formulas/only-embedded.formula.toml",
        WORKFLOW.format(name="only-embedded", desc="emb"),
    )
    (root / "beta").mkdir()
    write(root / "beta/README.md", "beta rig")
    log = ReadLog()
    docs = {d.path: d for d in read_formulas(scan_of(root), log)}
    assert not log.quarantined
    rig_copy = docs["alpha/.beads/formulas/shared.formula.toml"]
    town_copy = docs[".beads/formulas/shared.formula.toml"]
    emb_copy = docs["alpha/internal/formula/formulas/shared.formula.toml"]
    assert rig_copy.meta["tier"] == "rig" and rig_copy.meta["active_in"] == ["alpha"]
    assert town_copy.meta["tier"] == "town" and sorted(town_copy.meta["active_in"]) == ["(town)", "beta"]
    assert town_copy.meta["shadowed_in"] == {"alpha": rig_copy.path}
    assert emb_copy.meta["tier"] == "embedded" and emb_copy.meta["shadowed"]
    assert emb_copy.meta["shadowed_in"]["beta"] == town_copy.path
    assert sorted(docs["alpha/internal/formula/formulas/only-embedded.formula.toml"].meta["active_in"]) == [
        "(town)",
        "alpha",
        "beta",
    ]


def test_bad_files_go_to_quarantine_and_the_rest_is_read(tmp_path):
    root = tmp_path / "town"
    write(root / ".beads/formulas/good.formula.toml", WORKFLOW.format(name="good", desc="ok"))
    write(root / ".beads/formulas/broken.formula.toml", "formula = 'x'\n[[steps]\nid=")
    write(root / ".beads/formulas/empty.formula.toml", "")
    write(
        root / ".beads/formulas/cycle.formula.toml",
        'formula="cycle"\n[[steps]]\nid="a"\nneeds=["b"]\n[[steps]]\nid="b"\nneeds=["a"]\n',
    )
    write(root / ".beads/formulas/ghost.formula.toml", 'formula="ghost"\n[[steps]]\nid="a"\nneeds=["zzz"]\n')
    write(
        root / ".beads/formulas/j.formula.json",
        json.dumps({"formula": "j", "type": "convoy", "legs": [{"id": "l"}]}),
    )
    write(root / ".beads/formulas/badj.formula.json", "{not json")
    (root / ".beads/formulas/bin.formula.toml").write_bytes(b"\x00\x01\x02binary")
    (root / ".beads/formulas/latin1.formula.toml").write_bytes('formula = "caf\xe9"\n'.encode("latin-1"))
    loop = root / ".beads/formulas/loop.formula.toml"
    loop.symlink_to(root / ".beads/formulas/loop2.formula.toml")
    (root / ".beads/formulas/loop2.formula.toml").symlink_to(loop)
    log = ReadLog()
    docs = list(read_formulas(scan_of(root), log))
    assert sorted(d.meta["name"] for d in docs) == ["good", "j"]
    reasons = {Path(q.path).name: q.reason for q in log.quarantined}
    assert reasons == {
        "broken.formula.toml": "invalid_toml",
        "empty.formula.toml": "empty_file",
        "cycle.formula.toml": "needs_cycle",
        "ghost.formula.toml": "unknown_step",
        "badj.formula.json": "invalid_json",
        "bin.formula.toml": "binary_file",
        "latin1.formula.toml": "bad_utf8",
        "loop.formula.toml": "symlink_loop",
        "loop2.formula.toml": "symlink_loop",
    }


def test_document_ids_are_stable_and_content_addressed(tmp_path):
    root = tmp_path / "town"
    f = write(root / ".beads/formulas/a.formula.toml", WORKFLOW.format(name="a", desc="one"))
    first = list(read_formulas(scan_of(root), ReadLog()))[0]
    again = list(read_formulas(scan_of(root), ReadLog()))[0]
    assert first.doc_id == again.doc_id
    f.write_text(WORKFLOW.format(name="a", desc="two"))
    changed = list(read_formulas(scan_of(root), ReadLog()))[0]
    assert changed.doc_id != first.doc_id and changed.content_hash != first.content_hash
