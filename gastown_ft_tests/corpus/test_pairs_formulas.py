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
from gastown_ft.corpus.formulas import parse_formula, read_formulas
from gastown_ft.corpus.grammar import validate_command
from gastown_ft.corpus.pairs_formulas import (
    TASKS,
    build_formula_examples,
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
        assert roles[:3] == ["system", "user", "assistant"], roles
        assert all(r == "tool" for r in roles[3:])
        system = e["messages"][0]["content"]
        assert ROLE_DESCRIPTIONS[e["role"]] in system
        if e["rig"]:
            assert f"rig `{e['rig']}`" in system
        else:
            assert "town level" in system
        name = e["group_id"].removeprefix("formula:")
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
            assert check.path == "bd mol pour"


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
    """Every next-step answer names exactly the graph's dependents / needs of the step."""
    n = 0
    for e in examples:
        if e["task"] != "formula_next_step":
            continue
        q, a = e["messages"][1]["content"], e["messages"][-1]["content"]
        m = re.match(r"In `([^`]+)`, what (comes after|must be done before) step `([^`]+)`\?$", q)
        assert m, q
        name, kind, sid = m.groups()
        meta = metas[(name, e["rig"])]
        steps = meta.get("steps") or meta.get("template")
        named = set(re.findall(r"`([^`]+)`", a)) - {sid}
        if kind == "comes after":
            expected = {s["id"] for s in steps if sid in (s.get("needs") or [])}
            if expected:
                assert named == expected, (q, a)
            else:
                assert a.startswith("Nothing"), (q, a)
        else:
            expected = set(meta_step(steps, sid).get("needs") or [])
            if expected:
                assert named == expected, (q, a)
            else:
                assert a.startswith("None"), (q, a)
        n += 1
    return n


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
    pour = next(e for e in examples if commands(e) and "diamond" in e["group_id"])
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
    shutdown = next(e for e in examples if commands(e) and "shutdown" in e["group_id"])
    assert commands(shutdown) == ["bd mol pour mol-town-shutdown"]
    # Only workflows are poured.
    assert not any(
        commands(e) for e in examples if e["group_id"] in ("formula:design-review", "formula:tdd-cycle")
    )


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
