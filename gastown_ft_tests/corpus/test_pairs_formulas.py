from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections import Counter
from pathlib import Path

import pytest

from gastown_ft.corpus.documents import Document, documents_to_table
from gastown_ft.corpus.examples import BASH_TOOL, ROLE_DESCRIPTIONS, example_id
from gastown_ft.corpus.formula_semantics import gate_wait, starts_when_done, walk
from gastown_ft.corpus.formulas import parse_formula, read_formulas
from gastown_ft.corpus.grammar import validate_command
from gastown_ft.corpus.pairs_formulas import (
    POUR_VARIANTS,
    SHOW_MAX_ITEMS,
    TASKS,
    build_formula_examples,
    formula_outline,
    formula_role,
    is_critical,
    pour_command,
    topo_order,
)
from gastown_ft_tests.corpus.helpers import commands, source_rows

DIAMOND = """
formula = "mol-polecat-diamond"
description = \"\"\"
Work one issue along a diamond.

Second paragraph of the intro.

## Details
Not part of the summary.\"\"\"
version = 3

[vars.issue]
description = "The bead to work"
required = true

[vars.summary]
description = "One line"
required = true

[vars.base_branch]
description = "Where to start"
default = "main"

[[steps]]
id = "merge"
title = "Merge both halves"
needs = ["left", "right"]

[[steps]]
id = "start"
title = "Start"

[[steps]]
id = "right"
title = "Right half"
needs = ["start"]

[[steps]]
id = "left"
title = "Left half"
needs = ["start"]

[[steps]]
id = "report"
title = "Report"
needs = ["merge"]
"""

CONVOY = """
formula = "design-review"
type = "convoy"
description = "Review a design from two sides."
[[legs]]
id = "api"
title = "API"
focus = "the interface"
[[legs]]
id = "ops"
title = "Operations"
focus = "running it"
[synthesis]
title = "Merge the reviews"
"""

EXPANSION = """
formula = "tdd-cycle"
type = "expansion"
description = "Red, green, refactor."
[[template]]
id = "{target}.green"
title = "Make it pass"
needs = ["{target}.red"]
[[template]]
id = "{target}.red"
title = "Failing test"
"""

ASPECT = """
formula = "secrets-guard"
type = "aspect"
description = "Scan for secrets."
[[advice]]
target = "implement"
[advice.around]
[[advice.around.before]]
id = "{step.id}-baseline"
title = "Baseline"
[[advice.around.after]]
id = "{step.id}-diff"
title = "Diff"
[[pointcuts]]
glob = "implement"
"""

SHUTDOWN = """
formula = "mol-town-shutdown"
description = "Stop the town safely."
[vars]
reason = "maintenance"
[[steps]]
id = "preflight"
title = "Look first"
[[steps]]
id = "stop"
title = "Stop"
needs = ["preflight"]
"""


def formula_row(
    text: str,
    *,
    tier: str = "town",
    rig: str | None = None,
    shadowed: bool = False,
    path: str | None = None,
    fmt: str = "toml",
    mtime: float = 1000.0,
) -> dict:
    data = json.loads(text) if fmt == "json" else tomllib.loads(text)
    meta = parse_formula(data, "fallback")
    meta.update(tier=tier, format=fmt, shadowed=shadowed, active_in=[] if shadowed else [rig or "(town)"])
    doc = Document(
        source="formulas",
        kind=meta["type"],
        path=path or f".beads/formulas/{meta['name']}.formula.{fmt}",
        text=text,
        rig=rig,
        mtime=mtime,
        key=meta["name"],
        meta=meta,
    )
    return documents_to_table([doc]).to_pylist()[0]


def check_examples(examples: list[dict]) -> None:
    """The invariants every formula example keeps."""
    for e in examples:
        assert e["task"] in TASKS
        roles = [m["role"] for m in e["messages"]]
        name = e["group_id"].removeprefix("formula:")
        reads = roles == ["system", "user", "assistant", "tool", "assistant"]
        if reads:  # a question answered after reading the formula's outline
            assert e["task"] in ("formula_explain", "formula_steps", "formula_next_step", "formula_vars")
            assert commands(e) == [f"gt formula show {name}"]
            assert e["messages"][3]["content"].startswith(f"Formula: {name}\nType: ")
            assert e["messages"][3]["tool_call_id"] == e["messages"][2]["tool_calls"][0]["id"]
        else:
            assert roles == ["system", "user", "assistant"], roles
        system = e["messages"][0]["content"]
        assert ROLE_DESCRIPTIONS[e["role"]] in system
        if e["rig"]:
            assert f"rig `{e['rig']}`" in system
        else:
            assert "town level" in system
        assert e["group_id"] == f"formula:{name}" and f"`{name}`" in e["messages"][1]["content"]
        assert e["role"] == formula_role(name)
        assert e["quality"] == 1.0 and e["weight"] > 0
        assert len(e["source_ids"]) == 1
        assert e["example_id"] == example_id(e["messages"], e["tools"])
        for m in e["messages"]:
            assert isinstance(m["content"], str) and (m["content"].strip() or m.get("tool_calls"))
        cmds = commands(e)
        if cmds:
            assert e["tools"] == [BASH_TOOL]
        for cmd in cmds:
            check = validate_command(cmd)
            assert check.ok, (cmd, check.errors)
            assert check.path == ("gt formula show" if reads else "bd mol pour")


def steps_from_answer(answer: str) -> list[str]:
    return re.findall(r"^\d+\. `([^`]+)`", answer, flags=re.M)


# ---------------------------------------------------------------------------------------------------
# unit checks


def test_topo_order_is_stable_and_respects_needs():
    steps = [
        {"id": "c", "needs": ["b"]},
        {"id": "a"},
        {"id": "b", "needs": ["a"]},
        {"id": "d"},
    ]
    assert [s["id"] for s in topo_order(steps)] == ["a", "b", "c", "d"]
    assert [s["id"] for s in topo_order([{"id": "x"}, {"id": "y"}])] == ["x", "y"]


def test_roles_and_critical_names():
    assert formula_role("mol-polecat-work") == "polecat"
    assert formula_role("mol-witness-patrol") == "witness"
    assert formula_role("mol-refinery-patrol") == "refinery"
    assert formula_role("mol-deacon-patrol") == "deacon"
    assert formula_role("mol-dog-reaper") == "dog"
    assert formula_role("mol-boot-triage") == "boot"
    assert formula_role("code-review") is None
    assert formula_role("mol-town-shutdown") is None
    for name in (
        "mol-town-shutdown",
        "mol-convoy-cleanup",
        "mol-escalation",
        "mol-boot-triage",
        "mol-deacon-x",
    ):
        assert is_critical(name)
    assert not is_critical("mol-polecat-work")


def test_pour_command_quotes_values():
    cmd = pour_command("mol-escalation", {"summary": "queue stuck; help", "severity": "HIGH"})
    assert shlex.split(cmd) == [
        "bd",
        "mol",
        "pour",
        "mol-escalation",
        "--var",
        "summary=queue stuck; help",
        "--var",
        "severity=HIGH",
    ]
    assert validate_command(cmd).ok
    secret = pour_command("release", {"npm_token": "$NPM_TOKEN"})
    assert secret.endswith('--var "npm_token=$NPM_TOKEN"') and validate_command(secret).ok


# ---------------------------------------------------------------------------------------------------
# hand-made rows


@pytest.fixture()
def rows() -> list[dict]:
    return [
        formula_row(DIAMOND, tier="rig", rig="ledger", path="ledger/.beads/formulas/d.formula.toml"),
        formula_row(CONVOY),
        formula_row(EXPANSION, tier="embedded", rig="ledger", path="ledger/internal/f/tdd.formula.toml"),
        formula_row(ASPECT),
        formula_row(SHUTDOWN),
        formula_row(SHUTDOWN.replace("Stop the town safely.", "Old copy."), tier="embedded", shadowed=True),
    ]


def by_task(examples: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for e in examples:
        out.setdefault(e["task"], []).append(e)
    return out


def test_hand_made_rows_cover_every_task(rows):
    examples = list(build_formula_examples(rows))
    check_examples(examples)
    tasks = by_task(examples)
    assert set(tasks) == set(TASKS)
    # The shadowed copy gives nothing.
    assert not any("Old copy" in m["content"] for e in examples for m in e["messages"])
    assert all(e["source_ids"] != [rows[-1]["doc_id"]] for e in examples)
    # rig only for the rig-tier formula (the embedded one lives under a rig but is not rig-tier).
    rigs = {e["group_id"]: e["rig"] for e in examples}
    assert rigs["formula:mol-polecat-diamond"] == "ledger"
    assert rigs["formula:tdd-cycle"] is None and rigs["formula:design-review"] is None
    diamond = [e for e in examples if e["group_id"] == "formula:mol-polecat-diamond"]
    assert all(e["role"] == "polecat" and e["source_time"] == 1000.0 for e in diamond)
    assert "the rig `ledger`" in diamond[0]["messages"][0]["content"]
    assert "a polecat" in diamond[0]["messages"][0]["content"]


def test_explain_is_faithful(rows):
    (explain,) = [e for e in build_formula_examples(rows[:1]) if e["task"] == "formula_explain"]
    answer = explain["messages"][-1]["content"]
    assert "workflow formula (version 3)" in answer
    assert "Work one issue along a diamond." in answer and "Second paragraph" in answer
    assert "Not part of the summary" not in answer
    assert "`start`, `right`, `left`, `merge`, `report`" in answer
    assert "`issue` (required): The bead to work" in answer
    assert "`base_branch` (default `main`)" in answer


def test_steps_respect_needs(rows):
    examples = list(build_formula_examples(rows))
    steps = {e["group_id"]: e["messages"][-1]["content"] for e in examples if e["task"] == "formula_steps"}
    order = steps_from_answer(steps["formula:mol-polecat-diamond"])
    assert order == ["start", "right", "left", "merge", "report"]  # file order among the free ones
    assert steps_from_answer(steps["formula:tdd-cycle"]) == ["{target}.red", "{target}.green"]
    assert steps_from_answer(steps["formula:design-review"]) == ["api", "ops"]
    assert "Merge the reviews" in steps["formula:design-review"]
    assert "around `implement`" in steps["formula:secrets-guard"]
    assert "`{step.id}-baseline`" in steps["formula:secrets-guard"]


def check_next_steps(examples: list[dict], metas: dict[str, dict]) -> int:
    """Every next-step answer agrees with the formula's semantics.

    After X: every step that needs X is named with everything else it waits for (its other needs, its
    condition); only a step that needs nothing but X (no condition, gate or run-time wait) is said to
    start once X is done; no unrelated step is named. Before X: exactly X's needs (and spawner)."""
    n = 0
    for e in examples:
        if e["task"] != "formula_next_step":
            continue
        q, a = e["messages"][1]["content"], e["messages"][-1]["content"]
        m = re.match(r"In `([^`]+)`, what (comes after|must be done before) step `([^`]+)`\?$", q)
        assert m, q
        name, kind, sid = m.groups()
        meta = metas[(name, e["rig"])]
        flat = {s["id"]: s for s in walk(meta.get("steps") or meta.get("template"))}
        named = set(re.findall(r"`([^`]+)`", a)) - {sid}
        named_ids = named & set(flat)
        if kind == "comes after":
            deps = [s for s in flat.values() if sid in (s.get("needs") or [])]
            assert a.startswith("Nothing") == (not deps), (q, a)
            needed = {n for s in flat.values() for n in s.get("needs") or []}
            allowed = set() if deps else set(flat) - needed  # "Nothing": the other final steps
            for d in deps:
                others = set(d["needs"]) - {sid}
                assert {d["id"], *others} <= named, (q, a)
                if d.get("condition"):
                    assert d["condition"] in named, (q, a)
                for gate in d.get("gates") or []:
                    assert gate_wait(gate) in a, (q, a)
                assert claims_free(a, d["id"], len(deps)) == starts_when_done(d, sid), (q, a)
                allowed |= {d["id"], *others, *(c["id"] for c in walk(d.get("children") or []))}
                allowed |= {b["id"] for b in (d.get("loop") or {}).get("body") or []}
                if d.get("waits_for"):
                    allowed.add(d["waits_for"]["spawner"])
            assert named_ids <= allowed, (q, a)
        else:
            step = flat[sid]
            expected = set(step.get("needs") or [])
            if step.get("waits_for"):
                expected.add(step["waits_for"]["spawner"])
            assert named_ids == expected - {None, sid}, (q, a)
            assert a.startswith("None") == (not step.get("needs")), (q, a)
            if step.get("condition"):
                assert step["condition"] in named, (q, a)
        n += 1
    return n


WAITS = ("also needs", "is only poured when", "cannot start until", "also waits for")


def claims_free(answer: str, dep: str, n_deps: int) -> bool:
    """Whether the answer says `dep` can start once the step asked about is done."""
    lines = answer.splitlines()
    if n_deps == 1:  # "Next: `d` (title).", then what else it waits for, if anything
        return not any(w in lines[0] for w in WAITS)
    if "can start once it is done:" in lines[0]:
        return True
    line = next(ln for ln in lines if ln.startswith(f"- `{dep}`"))
    return "can start once it is done" in line


def meta_step(steps: list[dict], sid: str) -> dict:
    return next(s for s in steps if s["id"] == sid)


def metas_of(rows: list[dict]) -> dict:
    out = {}
    for r in rows:
        meta = json.loads(r["meta"])
        if not meta.get("shadowed"):
            out[(meta["name"], r["rig"] if meta["tier"] == "rig" else None)] = meta
    return out


def test_next_step_answers_match_the_graph(rows):
    examples = list(build_formula_examples(rows))
    assert check_next_steps(examples, metas_of(rows)) == 2 * 5 + 2 * 2 + 2 * 2
    answers = {e["messages"][1]["content"]: e["messages"][-1]["content"] for e in examples}
    after_start = answers["In `mol-polecat-diamond`, what comes after step `start`?"]
    assert "`right`" in after_start and "`left`" in after_start
    assert answers["In `mol-polecat-diamond`, what comes after step `report`?"].startswith(
        "Nothing: `report` is the last step"
    )
    before_merge = answers["In `mol-polecat-diamond`, what must be done before step `merge`?"]
    assert "`left`" in before_merge and "`right`" in before_merge


def test_next_step_is_bounded():
    steps = "\n".join(
        f'[[steps]]\nid = "s{i}"\ntitle = "Step {i}"' + (f'\nneeds = ["s{i - 1}"]' if i else "")
        for i in range(12)
    )
    text = f'formula = "long"\ndescription = "Twelve steps."\n{steps}\n'
    examples = [e for e in build_formula_examples([formula_row(text)]) if e["task"] == "formula_next_step"]
    assert len(examples) == 2 * 5
    asked = {re.search(r"step `(s\d+)`", e["messages"][1]["content"]).group(1) for e in examples}
    assert {"s0", "s11"} <= asked


def test_authored_toml_parses_to_the_right_type(rows):
    examples = [e for e in build_formula_examples(rows) if e["task"] == "formula_author"]
    assert {e["group_id"] for e in examples} == {
        "formula:mol-polecat-diamond",
        "formula:design-review",
        "formula:tdd-cycle",
        "formula:secrets-guard",
        "formula:mol-town-shutdown",
    }
    for e in examples:
        req = e["messages"][1]["content"]
        m = re.match(r"Write an? (\w+) formula named `([^`]+)` that: ", req)
        assert m, req
        data = tomllib.loads(e["messages"][-1]["content"])
        parsed = parse_formula(data, "x")
        assert (parsed["type"], parsed["name"]) == m.groups()


def test_author_skips_json_and_big_files():
    data = {"formula": "j", "description": "JSON one.", "steps": [{"id": "a"}]}
    json_row = formula_row(json.dumps(data), fmt="json")
    big = SHUTDOWN.replace("Stop the town safely.", "x" * 7000)
    tasks = [e["task"] for e in build_formula_examples([json_row, formula_row(big)])]
    assert "formula_author" not in tasks and "formula_explain" in tasks


def test_vars_and_pour(rows):
    examples = [e for e in build_formula_examples(rows) if e["task"] == "formula_vars"]
    check_examples(examples)
    listing = next(
        e for e in examples if "Which variables" in e["messages"][1]["content"] and "diamond" in e["group_id"]
    )
    text = listing["messages"][-1]["content"]
    assert (
        "`issue` (required)" in text
        and "`summary` (required)" in text
        and "`base_branch` (default `main`)" in text
    )
    pours = [e for e in examples if pours_of(e) and "diamond" in e["group_id"]]
    assert len(pours) == POUR_VARIANTS  # several phrasings, each with its own values
    assert len({e["messages"][1]["content"] for e in pours}) == POUR_VARIANTS
    assert len({pours_of(e)[0] for e in pours}) == POUR_VARIANTS
    assert pours[1]["messages"][1]["content"].startswith("Start a `mol-polecat-diamond` molecule for bead")
    pour = pours[0]
    (cmd,) = commands(pour)
    words = shlex.split(cmd)
    assert words[:4] == ["bd", "mol", "pour", "mol-polecat-diamond"]
    vars_given = dict(w.split("=", 1) for w in words[5::2])
    assert words[4::2] == ["--var"] * len(vars_given)
    assert set(vars_given) == {"issue", "summary"}  # the required ones
    request = pour["messages"][1]["content"]
    assert request.startswith(f"Pour `mol-polecat-diamond` for bead `{vars_given['issue']}`")
    assert vars_given["summary"] in request
    # No required vars: pour with the defaults.
    shutdown = [e for e in examples if pours_of(e) and "shutdown" in e["group_id"]]
    assert [pours_of(e) for e in shutdown] == [["bd mol pour mol-town-shutdown"]]  # one: nothing varies
    # Only workflows are poured.
    assert not any(
        pours_of(e) for e in examples if e["group_id"] in ("formula:design-review", "formula:tdd-cycle")
    )


def pours_of(example: dict) -> list[str]:
    return [c for c in commands(example) if c.startswith("bd mol pour")]


def test_questions_read_the_outline_first(rows):
    """Step questions carry the formula's outline, so the answer is in the prompt, not recalled."""
    examples = list(build_formula_examples(rows))
    outline = formula_outline(json.loads(rows[0]["meta"]))
    assert outline.splitlines()[:2] == ["Formula: mol-polecat-diamond", "Type: workflow"]
    assert "\n  `merge` — Merge both halves (needs left, right)\n" in outline
    assert "  `issue` (required): The bead to work" in outline
    asked = [e for e in examples if e["task"] in ("formula_steps", "formula_next_step")]
    assert asked and all(len(e["messages"]) == 5 for e in asked)
    for e in asked:
        shown = e["messages"][3]["content"]
        for sid in re.findall(r"`([^`]+)`", e["messages"][-1]["content"]):
            assert f"`{sid}`" in shown or sid in e["group_id"], (sid, shown)
    # A formula too long for an outline gets no step questions (and its explanation no reading).
    steps = "\n".join(f'[[steps]]\nid = "s{i}"\ntitle = "Step {i}"' for i in range(SHOW_MAX_ITEMS + 1))
    long = list(build_formula_examples([formula_row(f'formula = "long"\ndescription = "Many."\n{steps}\n')]))
    assert {e["task"] for e in long} == {"formula_explain", "formula_author"}
    assert all(len(e["messages"]) == 3 for e in long)


def test_weights(rows):
    examples = list(build_formula_examples(rows, weights={"formula_steps": 2.0}, critical_boost=4.0))
    for e in examples:
        base = 2.0 if e["task"] == "formula_steps" else 1.0
        critical = e["group_id"] == "formula:mol-town-shutdown"
        assert e["weight"] == base * (4.0 if critical else 1.0), (e["group_id"], e["task"], e["weight"])


def test_deterministic(rows):
    a = list(build_formula_examples(rows))
    b = list(build_formula_examples([dict(r) for r in rows]))
    assert a == b
    assert [e["example_id"] for e in a] == [e["example_id"] for e in b]


# ---------------------------------------------------------------------------------------------------
# the demo town and the real samples


def formula_rows(root: Path, projects: Path) -> list[dict]:
    return source_rows(read_formulas, root, projects)


def test_demo_town(demo_town):
    rows = formula_rows(demo_town.root, demo_town.claude_projects_dir)
    examples = list(build_formula_examples(rows))
    check_examples(examples)
    counts = Counter(e["task"] for e in examples)
    assert set(counts) == set(TASKS)
    active = [r for r in rows if not json.loads(r["meta"])["shadowed"]]
    assert counts["formula_explain"] == len(active)
    assert check_next_steps(examples, metas_of(rows)) == counts["formula_next_step"]
    for e in examples:
        if e["task"] == "formula_author":
            assert (
                parse_formula(tomllib.loads(e["messages"][-1]["content"]), "x")["type"]
                in e["messages"][1]["content"]
            )
    # Shadowed copies (the embedded mol-polecat-work and mol-town-shutdown) are left out.
    shadowed = {r["doc_id"] for r in rows if json.loads(r["meta"])["shadowed"]}
    assert shadowed and not any(set(e["source_ids"]) & shadowed for e in examples)
    # The rig override of mol-polecat-work is taught for its rig, the town's for the town.
    pw = {e["rig"] for e in examples if e["group_id"] == "formula:mol-polecat-work"}
    assert pw == {None, "ledger"}
    boosted = {e["group_id"] for e in examples if e["weight"] > 1.0}
    assert boosted == {
        "formula:mol-town-shutdown",
        "formula:mol-escalation",
        "formula:mol-convoy-cleanup",
        "formula:mol-deacon-patrol",
    }
    assert list(build_formula_examples(rows)) == examples


@pytest.mark.shared
def test_shared_samples(shared_samples):
    rows = formula_rows(shared_samples, shared_samples / "no-transcripts")
    examples = list(build_formula_examples(rows))
    check_examples(examples)
    counts = Counter(e["task"] for e in examples)
    print("formula examples on the samples:", dict(sorted(counts.items())))
    assert set(counts) == set(TASKS)
    assert check_next_steps(examples, metas_of(rows)) == counts["formula_next_step"] > 0
    for e in examples:
        if e["task"] == "formula_author":
            assert len(e["messages"][-1]["content"]) <= 6000
            tomllib.loads(e["messages"][-1]["content"])
        if e["task"] == "formula_steps":
            name = e["group_id"].removeprefix("formula:")
            meta = metas_of(rows)[(name, e["rig"])]
            items = meta.get("steps") or meta.get("template")
            if items:
                order = steps_from_answer(e["messages"][-1]["content"])
                pos = {sid: i for i, sid in enumerate(order)}
                assert set(order) == {s["id"] for s in items}
                for s in items:
                    assert all(pos[n] < pos[s["id"]] for n in s.get("needs") or [])
    roles = {e["group_id"]: e["role"] for e in examples}
    assert roles["formula:mol-boot-triage"] == "boot" and roles["formula:mol-dog-reaper"] == "dog"


# ---------------------------------------------------------------------------------------------------
# gates, conditions, alternative branches and the other step fields (hand-made, one construct each)

GATED = """
formula = "mol-gated-release"
description = "Evaluate three ways, take one branch, wait for approval."
[vars.mode]
description = "fast or full"
default = "fast"
[vars.audit]
description = "Run the audit"
default = ""
[[steps]]
id = "setup"
title = "Set up"
[[steps]]
id = "audit"
title = "Audit"
needs = ["setup"]
condition = "{{audit}}"
[[steps]]
id = "evaluate-1"
title = "Evaluate one"
needs = ["setup"]
[[steps]]
id = "evaluate-2"
title = "Evaluate two"
needs = ["setup"]
[[steps]]
id = "evaluate-3"
title = "Evaluate three"
depends_on = ["setup"]
[[steps]]
id = "fast-path"
title = "Ship fast"
needs = ["evaluate-1", "evaluate-2", "evaluate-3"]
condition = "{{mode}} == fast"
[[steps]]
id = "full-path"
title = "Ship carefully"
needs = ["evaluate-1", "evaluate-2", "evaluate-3"]
condition = "{{mode}}  ==  full"
[[steps]]
id = "approve"
title = "Release approval"
needs = ["fast-path"]
type = "human"
[steps.gate]
type = "human"
approvers = ["release-lead"]
timeout = "24h"
"""

FANOUT = """
formula = "mol-fanout"
description = "Survey, fan out, join."
[[steps]]
id = "survey"
title = "Survey workers"
[steps.on_complete]
for_each = "output.polecats"
bond = "mol-polecat-arm"
parallel = true
[[steps]]
id = "aggregate"
title = "Aggregate"
needs = ["survey"]
waits_for = "all-children"
[[steps]]
id = "lint"
title = "Lint"
[[steps]]
id = "test"
title = "Test"
[[steps]]
id = "report"
title = "Report"
[[steps]]
id = "boot"
title = "Boot the rigs"
type = "parallel"
needs = ["report"]
[[steps.children]]
id = "boot-a"
title = "Boot a"
[[steps.children]]
id = "boot-b"
title = "Boot b"
[steps.children.loop]
count = 3
[[steps.children.loop.body]]
id = "run"
title = "Run once"
[compose]
[[compose.branch]]
from = "aggregate"
steps = ["lint", "test"]
join = "report"
[[compose.gate]]
before = "report"
condition = "lint.status == 'complete'"
"""


def answers_of(examples: list[dict]) -> dict[str, str]:
    return {e["messages"][1]["content"]: e["messages"][-1]["content"] for e in examples}


def test_a_join_with_alternative_branches_is_not_said_to_start_after_one_evaluation():
    rows = [formula_row(GATED)]
    examples = list(build_formula_examples(rows))
    check_examples(examples)
    assert check_next_steps(examples, metas_of(rows)) == 2 * 5
    answers = answers_of(examples)
    after = answers["In `mol-gated-release`, what comes after step `evaluate-1`?"]
    # Both branches need all three evaluations, exist only under their condition, and exclude each other.
    assert after.startswith("2 steps need `evaluate-1`:\n")
    assert "can start once" not in after
    for branch, cond in (("fast-path", "{{mode}} == fast"), ("full-path", "{{mode}} == full")):
        line = next(ln for ln in after.splitlines() if ln.startswith(f"- `{branch}`"))
        assert "also needs `evaluate-2` and `evaluate-3`, so it starts only when all three are done" in line
        assert f"is only poured when `{cond}`" in line
    assert "Only one of `fast-path` and `full-path` runs" in after and "`{{mode}}`" in after
    # The gate and the condition of a step are said before it.
    before = answers["In `mol-gated-release`, what must be done before step `approve`?"]
    assert before.startswith("`approve` needs `fast-path` (Ship fast) first; it cannot start until")
    assert "a human gate (approvers: release-lead; timeout: 24h)" in before
    after_setup = answers["In `mol-gated-release`, what comes after step `setup`?"]
    audit = next(ln for ln in after_setup.splitlines() if ln.startswith("- `audit`"))
    assert "is only poured when `{{audit}}`" in audit and "can start once it is done" not in audit
    assert "- `evaluate-1` — Evaluate one: can start once it is done" in after_setup
    # Outline, steps and explanation carry the same facts.
    meta = json.loads(rows[0]["meta"])
    outline = formula_outline(meta)
    assert (
        "  `fast-path` — Ship fast (needs evaluate-1, evaluate-2, evaluate-3; only when `{{mode}} == fast`)"
        in outline
    )
    assert (
        "  `approve` — Release approval (needs fast-path; human gate (approvers: release-lead; timeout: 24h);"
        in outline
    )
    (steps,) = [e["messages"][-1]["content"] for e in examples if e["task"] == "formula_steps"]
    assert (
        "(after `evaluate-1`, `evaluate-2` and `evaluate-3`; is only poured when `{{mode}} == full`" in steps
    )
    (explain,) = [e["messages"][-1]["content"] for e in examples if e["task"] == "formula_explain"]
    assert "`fast-path` and `full-path` are alternative branches: only one runs" in explain
    assert (
        "`fast-path` waits for `evaluate-1`, `evaluate-2` and `evaluate-3`: it starts when all three are done"
        in explain
    )
    assert "`approve` cannot start until a human gate" in explain
    (request,) = [e["messages"][1]["content"] for e in examples if e["task"] == "formula_author"]
    assert "With: `audit` (only when `{{audit}}`), `fast-path` (only when `{{mode}} == fast`)," in request


def test_fan_out_branch_rules_gates_children_and_loops():
    rows = [formula_row(FANOUT)]
    meta = json.loads(rows[0]["meta"])
    steps = {s["id"]: s for s in walk(meta["steps"])}
    assert steps["report"]["needs"] == ["lint", "test"]  # compose.branch joins at report
    assert steps["lint"]["needs"] == ["aggregate"] == steps["test"]["needs"]
    examples = list(build_formula_examples(rows))
    check_examples(examples)
    assert check_next_steps(examples, metas_of(rows)) == 2 * 5
    answers = answers_of(examples)
    after_survey = answers["In `mol-fanout`, what comes after step `survey`?"]
    assert after_survey.startswith(
        "Next: `aggregate` (Aggregate); it also waits for all the children bonded to `survey`."
    )
    assert (
        "When `survey` is done it also bonds `mol-polecat-arm` for each item of `output.polecats`, in parallel."
        in after_survey
    )
    after_aggregate = answers["In `mol-fanout`, what comes after step `aggregate`?"]
    assert after_aggregate.startswith("2 steps need `aggregate` and can start once it is done:")
    order = [s["id"] for s in topo_order(meta["steps"])]
    assert order == ["survey", "aggregate", "lint", "test", "report", "boot"]
    outline = formula_outline(meta)
    assert "  `report` — Report (needs lint, test; gate until `lint.status == 'complete'`)" in outline
    assert (
        "  `boot` — Boot the rigs (needs report; parallel: children run at once, done when all are)\n    `boot-a` — Boot a\n"
        in outline
    )
    assert "    `boot-b` — Boot b (repeats `run` 3 times)" in outline
    assert (
        "  `survey` — Survey workers (when done bonds `mol-polecat-arm` for each item of `output.polecats`, in parallel)"
        in outline
    )
    (listing,) = [e["messages"][-1]["content"] for e in examples if e["task"] == "formula_steps"]
    assert (
        "6. `boot` — Boot the rigs, whose children run at once:\n   - `boot-a` — Boot a\n"
        "   - `boot-b` — Boot b (repeats `run` 3 times)" in listing
    )
    assert steps_from_answer(listing) == order


@pytest.mark.shared
def test_real_formulas_with_joins_and_parallel_steps(shared_samples):
    """The real formulas whose steps fork and join (or run children at once) are answered by their
    semantics: a join is never said to start after one of its needs; the explanation and the
    outline say how the steps wait for each other."""
    rows = formula_rows(shared_samples, shared_samples / "no-transcripts")
    metas = metas_of(rows)
    branched = {
        name
        for (name, _), m in metas.items()
        if any(
            len(s["needs"]) > 1
            or s.get("children")
            or s.get("condition")
            or s.get("gates")
            or s.get("waits_for")
            for s in walk(m.get("steps") or m.get("template") or [])
        )
    }
    assert {"mol-orphan-scan", "mol-gastown-boot", "beads-release", "mol-pr-feedback-patrol"} <= branched
    examples = [e for e in build_formula_examples(rows) if e["group_id"].removeprefix("formula:") in branched]
    nexts = [e for e in examples if e["task"] == "formula_next_step"]
    assert check_next_steps(examples, metas) == len(nexts) > 0
    answers = answers_of(examples)
    after_scan = answers["In `mol-orphan-scan`, what comes after step `scan-orphaned-molecules`?"]
    assert after_scan == (
        "Next: `triage-orphans` (Classify and triage orphans); it also needs `scan-orphaned-issues` and "
        "`scan-orphaned-wisps`, so it starts only when all three are done."
    )
    for e in examples:
        if e["task"] == "formula_explain":
            assert "How the steps wait for each other:" in e["messages"][-1]["content"], e["group_id"]
    boot = next(
        e for e in examples if e["group_id"] == "formula:mol-gastown-boot" and len(e["messages"]) == 5
    )
    outline = boot["messages"][3]["content"]
    assert (
        "  `ensure-witnesses` — Ensure witnesses (needs ensure-deacon; parallel: children run at once, done when all are)\n"
        "    `ensure-gastown-witness` — Ensure gastown witness\n"
    ) in outline
    assert (
        "  `verify-town-health` — Verify town health (needs ensure-witnesses, ensure-refineries)" in outline
    )
