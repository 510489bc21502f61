from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from gastown_ft.config import TownConfig
from gastown_ft.corpus.documents import ReadLog
from gastown_ft.corpus.formula_semantics import walk
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


# ---------------------------------------------------------------------------------------------------
# step fields that decide the order of work (bd's formula engine: beads internal/formula)


def steps_of(toml_text: str) -> dict[str, dict]:
    return {s["id"]: s for s in walk(parse_formula(tomllib.loads(toml_text), "x")["steps"])}


def test_needs_depends_on_and_a_waits_for_list_are_one_set_of_prerequisites():
    steps = steps_of(
        '[[steps]]\nid="a"\n[[steps]]\nid="b"\n[[steps]]\nid="c"\n'
        '[[steps]]\nid="j"\nneeds="a"\ndepends_on=["b","a"]\nwaits_for=["c"]\n'
    )
    assert steps["j"]["needs"] == ["a", "b", "c"]
    assert "waits_for" not in steps["j"]


def test_conditions_gates_and_run_time_waits_are_kept_normalized():
    steps = steps_of(
        """
[[steps]]
id = "survey"
[steps.on_complete]
for_each = "output.polecats"
bond = "mol-polecat-arm"
parallel = true
[[steps]]
id = "fast"
needs = ["survey"]
condition = "  {{mode}}   == fast "
waits_for = "all-children"
[[steps]]
id = "approve"
needs = ["fast"]
type = "human"
[steps.gate]
type = "human"
approvers = ["qa"]
timeout = "24h"
nested = { ignored = true }
[[steps]]
id = "arms"
waits_for = "children-of(survey)"
gate = "timer"
"""
    )
    assert steps["fast"]["condition"] == "{{mode}} == fast"
    assert steps["fast"]["waits_for"] == {"gate": "all-children", "spawner": "survey", "named": False}
    assert steps["arms"]["waits_for"] == {"gate": "all-children", "spawner": "survey", "named": True}
    assert steps["approve"]["gates"] == [{"type": "human", "approvers": ["qa"], "timeout": "24h"}]
    assert steps["approve"]["type"] == "human" and steps["arms"]["gates"] == [{"type": "timer"}]
    assert steps["survey"]["on_complete"] == {
        "for_each": "output.polecats",
        "bond": "mol-polecat-arm",
        "parallel": True,
    }
    assert "condition" not in steps["survey"] and "gates" not in steps["survey"]


def test_children_loops_and_expansions_are_steps_too():
    steps = steps_of(
        """
[[steps]]
id = "boot"
type = "parallel"
[[steps.children]]
id = "boot-a"
[[steps.children]]
id = "boot-b"
[[steps]]
id = "verify"
needs = ["boot-b"]
[[steps]]
id = "retry"
needs = ["verify"]
[steps.loop]
count = 3
[[steps.loop.body]]
id = "run"
[[steps.loop.body]]
id = "check"
needs = ["run", "verify"]
[[steps]]
id = "implement"
expand = "tdd-cycle"
expand_vars = { depth = "2" }
acceptance = "tests pass"
"""
    )
    assert [c["id"] for c in steps["boot"]["children"]] == ["boot-a", "boot-b"] and "boot-a" in steps
    assert steps["verify"]["needs"] == ["boot-b"]  # a step may need another's child
    loop = steps["retry"]["loop"]
    assert loop["count"] == 3 and [b["needs"] for b in loop["body"]] == [[], ["run", "verify"]]
    assert steps["implement"]["expand"] == "tdd-cycle" and steps["implement"]["expand_vars"] == {"depth": "2"}
    assert steps["implement"]["acceptance"] == "tests pass"


def test_compose_branch_and_gate_are_wired_into_the_steps():
    data = {
        "formula": "fj",
        "steps": [{"id": "a"}, {"id": "b"}, {"id": "c"}, {"id": "d"}],
        "compose": {
            "branch": [{"from": "a", "steps": ["b", "c"], "join": "d"}],
            "gate": [{"before": "d", "condition": "b.status ==  'complete'"}],
            "expand": [{"target": "c", "with": "tdd-cycle"}],
            "aspects": ["security-audit"],
        },
    }
    parsed = parse_formula(data, "x")
    steps = {s["id"]: s for s in parsed["steps"]}
    assert steps["b"]["needs"] == ["a"] == steps["c"]["needs"] and steps["d"]["needs"] == ["b", "c"]
    assert steps["d"]["gates"] == [{"type": "condition", "condition": "b.status == 'complete'"}]
    assert parsed["compose"]["expand"] == [{"target": "c", "with": "tdd-cycle"}]
    assert parsed["compose"]["aspects"] == ["security-audit"]
    # A formula that extends another may name its parent's steps: the rule is kept, not wired.
    child = {
        "formula": "kid",
        "extends": ["fj"],
        "compose": {"branch": [{"from": "a", "steps": ["x"], "join": "d"}]},
    }
    assert parse_formula(child, "x")["compose"]["branch"][0]["steps"] == ["x"]


@pytest.mark.parametrize(
    "data,reason",
    [
        ({"formula": "x", "steps": [{"id": "a", "children": [{"id": "a"}]}]}, "duplicate_step"),
        (
            {"formula": "x", "steps": [{"id": "a", "children": [{"id": "c", "needs": ["zz"]}]}]},
            "unknown_step",
        ),
        (
            {"formula": "x", "steps": [{"id": "a", "depends_on": ["b"]}, {"id": "b", "needs": ["a"]}]},
            "needs_cycle",
        ),
        ({"formula": "x", "steps": [{"id": "a", "waits_for": "children-of(ghost)"}]}, "unknown_step"),
        ({"formula": "x", "steps": [{"id": "a", "waits_for": "most-children"}]}, "bad_schema"),
        ({"formula": "x", "steps": [{"id": "a", "condition": 3}]}, "bad_schema"),
        ({"formula": "x", "steps": [{"id": "a", "loop": {"count": 2}}]}, "bad_schema"),
        (
            {
                "formula": "x",
                "steps": [{"id": "a", "loop": {"count": 2, "body": [{"id": "r", "needs": ["q"]}]}}],
            },
            "unknown_step",
        ),
        (
            {
                "formula": "x",
                "steps": [{"id": "a"}],
                "compose": {"branch": [{"from": "a", "steps": ["b"], "join": "a"}]},
            },
            "unknown_step",
        ),
        ({"formula": "x", "steps": [{"id": "a"}], "compose": {"gate": [{"before": "a"}]}}, "bad_schema"),
        ({"formula": "x", "steps": [{"id": "a", "children": "b"}]}, "bad_schema"),
    ],
)
def test_bad_step_fields_are_rejected_with_reasons(data, reason):
    with pytest.raises(FormulaError) as e:
        parse_formula(data, "x")
    assert e.value.reason == reason, str(e.value)


@pytest.mark.shared
def test_every_real_formula_keeps_its_step_fields(shared_samples):
    """The real formulas use needs, acceptance, type = "parallel" with [[steps.children]], compose.expand
    and compose.aspects, and convoy synthesis depends_on / presets; all of it survives parsing."""
    files = sorted(shared_samples.rglob("*.formula.toml"))
    assert len(files) >= 40
    parsed = {}
    for f in files:
        data = tomllib.loads(f.read_text())
        meta = parse_formula(data, f.name)
        parsed[meta["name"]] = meta
        raw_ids = {s["id"] for s in data.get("steps") or []} | {
            c["id"] for s in data.get("steps") or [] for c in s.get("children") or []
        }
        assert {s["id"] for s in walk(meta.get("steps") or [])} == raw_ids
        for s in data.get("steps") or []:
            kept = {x["id"]: x for x in walk(meta["steps"])}[s["id"]]
            for key in ("acceptance", "type"):
                assert kept.get(key) == s.get(key)
    boot = {s["id"]: s for s in parsed["mol-gastown-boot"]["steps"]}
    assert boot["ensure-witnesses"]["type"] == "parallel"
    assert [c["id"] for c in boot["ensure-witnesses"]["children"]] == [
        "ensure-gastown-witness",
        "ensure-beads-witness",
    ]
    assert parsed["mol-polecat-work-monorepo-tdd"]["compose"] == {
        "expand": [{"target": "implement", "with": "tdd-cycle"}]
    }
    assert parsed["code-review"]["synthesis"]["depends_on"][:2] == ["correctness", "performance"]
    assert parsed["code-review"]["presets"]["gate"]["legs"] == [
        "wiring",
        "security",
        "smells",
        "test-quality",
    ]
