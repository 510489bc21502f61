"""What a formula's step fields mean for the order of work, in words an answer can use.

Input: steps normalized by `formulas.parse_formula` (see `formulas._step` for the fields). The rules are
those of `bd cook` / `bd mol pour` (beads internal/formula, docs/MOLECULES.md, website workflows/gates.md):

- `needs`: every listed step must be done first; a step with several is a join and waits for all.
- `condition`: the step exists only when it holds, decided when the formula is poured. Steps whose
  conditions on one variable exclude each other ("{{mode}} == fast" / "{{mode}} == full", "{{x}}" /
  "!{{x}}") are alternative branches: only one of them runs.
- `gates`: the step cannot start until its gate opens (a human approves, a timer runs out, CI passes,
  a `compose.gate` condition holds).
- `waits_for`: the step also waits for the children bonded at run time to its spawner (all, or the first).
- `children`: nested steps; a `type = "parallel"` container runs them at once and is done when all are.
- `loop`, `on_complete`, `expand`: repeated bodies, molecules bonded per output item, expansions.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

_TRUTHY = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_NEGATED = re.compile(r"!\s*\{\{\s*(\w+)\s*\}\}")
_COMPARE = re.compile(r"\{\{\s*(\w+)\s*\}\}\s*(==|!=)\s*(.+)")
_NUMBER_WORDS = {2: "both", 3: "all three", 4: "all four", 5: "all five"}


def walk(steps: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Each step, then its children (depth first, file order)."""
    for s in steps:
        yield s
        yield from walk(s.get("children") or [])


def owners(steps: list[dict[str, Any]]) -> dict[str, str]:
    """For each step id (children included), the id of the top-level step it belongs to."""
    return {s["id"]: top["id"] for top in steps for s in walk([top])}


def tick(x: str) -> str:
    return f"`{x}`"


def and_list(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


# ---------------------------------------------------------------------------------------------------
# conditions and alternatives


def parse_condition(condition: str) -> tuple[str, str, str | None] | None:
    """(variable, "truthy" | "falsy" | "==" | "!=", value) of a step condition, None if not one."""
    text = condition.strip()
    m = _COMPARE.fullmatch(text)
    if m:
        return m.group(1), m.group(2), m.group(3).strip().strip("'\"")
    m = _NEGATED.fullmatch(text)
    if m:
        return m.group(1), "falsy", None
    m = _TRUTHY.fullmatch(text)
    if m:
        return m.group(1), "truthy", None
    return None


def exclusive(a: str, b: str) -> bool:
    """True when two step conditions can never both hold (same variable, contradicting tests)."""
    pa, pb = parse_condition(a), parse_condition(b)
    if not pa or not pb or pa[0] != pb[0]:
        return False
    ops = {pa[1], pb[1]}
    if ops == {"truthy", "falsy"}:
        return True
    if ops == {"=="}:
        return pa[2] != pb[2]
    if ops == {"==", "!="}:
        return pa[2] == pb[2]
    return False


def alternatives(steps: list[dict[str, Any]]) -> list[list[str]]:
    """Groups of step ids that are alternative branches: their conditions on one variable exclude each
    other pairwise (steps sharing one condition go together), so only one group member runs."""
    by_var: dict[str, dict[str, list[str]]] = {}
    for s in steps:
        cond = s.get("condition")
        parsed = parse_condition(cond) if cond else None
        if parsed:
            by_var.setdefault(parsed[0], {}).setdefault(cond, []).append(s["id"])
    out: list[list[str]] = []
    for conds in by_var.values():
        keys = list(conds)
        if len(keys) > 1 and all(exclusive(a, b) for i, a in enumerate(keys) for b in keys[i + 1 :]):
            out.append([sid for k in keys for sid in conds[k]])
    return out


def condition_var(condition: str) -> str | None:
    parsed = parse_condition(condition)
    return parsed[0] if parsed else None


# ---------------------------------------------------------------------------------------------------
# gates, waits, containers


def _detail(v: Any) -> str:
    if isinstance(v, list):
        return ", ".join(map(str, v))
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def _gate_parts(gate: dict[str, Any]) -> tuple[str, str]:
    """('human ', ' (approvers: qa-team)'), ('', ' until `cond`'): a gate's kind and its details."""
    if gate.get("type") == "condition":
        return "", f" until {tick(gate.get('condition') or '?')}"
    details = [f"{k.replace('_', ' ')}: {_detail(v)}" for k, v in gate.items() if k != "type"]
    kind = str(gate.get("type") or "")
    return (f"{kind} " if kind and kind != "gate" else ""), (f" ({'; '.join(details)})" if details else "")


def gate_text(gate: dict[str, Any]) -> str:
    """'a human gate (approvers: qa-team)', 'a timer gate (duration: 2h)', 'a gate until `cond`'."""
    kind, details = _gate_parts(gate)
    return f"a {kind}gate{details}"


def gate_wait(gate: dict[str, Any]) -> str:
    """'cannot start until a human gate (...) opens' / 'cannot start until `cond` holds'."""
    if gate.get("type") == "condition":
        return f"cannot start until {tick(gate.get('condition') or '?')} holds"
    return f"cannot start until {gate_text(gate)} opens"


def waits_for_text(wf: dict[str, Any]) -> str:
    spawner = wf.get("spawner")
    of = f"bonded to {tick(spawner)}" if spawner else "bonded to it at run time"
    if wf.get("gate") == "any-children":
        return f"the first of the children {of} to finish"
    return f"all the children {of}"


def loop_text(loop: dict[str, Any]) -> str:
    body = and_list([tick(b["id"]) for b in loop.get("body") or []] or ["its body"])
    if loop.get("count"):
        return f"repeats {body} {loop['count']} times"
    if loop.get("range"):
        var = f" `{loop['var']}`" if loop.get("var") else ""
        return f"repeats {body} for each{var} in {loop['range']}"
    if loop.get("until"):
        most = f", at most {loop['max']} times" if loop.get("max") else ""
        return f"repeats {body} until {tick(str(loop['until']))}{most}"
    return f"repeats {body}"


def on_complete_text(oc: dict[str, Any]) -> str | None:
    if not oc.get("bond"):
        return None
    how = "one at a time" if oc.get("sequential") else "in parallel"
    items = f" for each item of {tick(str(oc['for_each']))}" if oc.get("for_each") else ""
    return f"bonds {tick(str(oc['bond']))}{items}, {how}"


def children_text(step: dict[str, Any]) -> str | None:
    kids = [tick(c["id"]) for c in step.get("children") or []]
    if not kids:
        return None
    if step.get("type") == "parallel" or len(kids) == 1:
        return f"runs its children {and_list(kids)} at once and is done when all are"
    return f"is done when its children {and_list(kids)} are"


def starts_when_done(step: dict[str, Any], done: str) -> bool:
    """True when `step` can start as soon as `done` is: it needs nothing else, has no condition,
    no gate and no run-time children to wait for."""
    return (
        (step.get("needs") or []) == [done]
        and not step.get("condition")
        and not step.get("gates")
        and not step.get("waits_for")
    )


def flow_clauses(step: dict[str, Any], done: str | None = None) -> list[str]:
    """What else a step waits for or does, as clauses without a subject ("also needs `b`, so ...").

    `done` is the step the question is about (left out of the step's other needs)."""
    out: list[str] = []
    others = [n for n in step.get("needs") or [] if n != done]
    if done is not None and others:
        total = _NUMBER_WORDS.get(len(others) + 1, f"all {len(others) + 1}")
        out.append(
            f"also needs {and_list([tick(n) for n in others])}, so it starts only when {total} are done"
        )
    if step.get("condition"):
        out.append(f"is only poured when {tick(step['condition'])}")
    for gate in step.get("gates") or []:
        out.append(gate_wait(gate))
    if step.get("waits_for"):
        out.append(f"also waits for {waits_for_text(step['waits_for'])}")
    if step.get("type") == "human":
        out.append("is done by a human")
    elif step.get("type") == "gate" and not step.get("gates"):
        out.append("is a gate: it waits for an outside event")
    kids = children_text(step)
    if kids:
        out.append(kids)
    if step.get("loop"):
        out.append(loop_text(step["loop"]))
    if step.get("expand"):
        out.append(f"is replaced by the {tick(step['expand'])} expansion's steps")
    return out


def outline_notes(step: dict[str, Any]) -> list[str]:
    """Compact notes for a step's line in the `gt formula show` outline."""
    notes: list[str] = []
    needs = [n for n in step.get("needs") or [] if isinstance(n, str)]
    if needs:
        notes.append("needs " + ", ".join(needs))
    if step.get("condition"):
        notes.append(f"only when {tick(step['condition'])}")
    for gate in step.get("gates") or []:
        kind, details = _gate_parts(gate)
        notes.append(f"{kind}gate{details}")
    if step.get("waits_for"):
        notes.append("waits for " + waits_for_text(step["waits_for"]))
    kind = step.get("type")
    if kind == "parallel" and step.get("children"):
        notes.append("parallel: children run at once, done when all are")
    elif kind and kind not in ("task", "parallel"):
        notes.append(f"type {kind}")
    if step.get("loop"):
        notes.append(loop_text(step["loop"]))
    if step.get("on_complete") and on_complete_text(step["on_complete"]):
        notes.append("when done " + on_complete_text(step["on_complete"]))
    if step.get("expand"):
        notes.append(f"expands with {step['expand']}")
    return notes


def flow_lines(steps: list[dict[str, Any]]) -> list[str]:
    """Sentences about a workflow's flow: forks, joins, containers, conditions, alternatives, gates.

    Empty for a plain chain (every step needs at most one, and only one step needs each)."""
    lines: list[str] = []
    flat = list(walk(steps))
    needed_by: dict[str, list[str]] = {}
    for s in flat:
        for n in s.get("needs") or []:
            needed_by.setdefault(n, []).append(s["id"])
    by_id = {s["id"]: s for s in flat}
    for s in flat:
        sid = tick(s["id"])
        # A fork: steps that need only this one run side by side (alternatives are said below).
        only = [by_id[x] for x in needed_by.get(s["id"]) or [] if by_id[x].get("needs") == [s["id"]]]
        alt = {i for group in alternatives(only) for i in group}
        fork = [x["id"] for x in only if x["id"] not in alt]
        if len(fork) > 1:
            lines.append(f"After {sid}, {and_list([tick(x) for x in fork])} can run in parallel.")
        needs = s.get("needs") or []
        if len(needs) > 1:
            total = _NUMBER_WORDS.get(len(needs), f"all {len(needs)}")
            lines.append(
                f"{sid} waits for {and_list([tick(n) for n in needs])}: it starts when {total} are done."
            )
        clauses = [c for c in flow_clauses(s) if not c.startswith("also needs")]
        if clauses:
            lines.append(f"{sid} " + "; it ".join(clauses) + ".")
        oc = on_complete_text(s.get("on_complete") or {})
        if oc:
            lines.append(f"When {sid} is done it {oc}.")
    for group in alternatives(flat):
        var = condition_var(next(s["condition"] for s in flat if s["id"] == group[0])) or "?"
        lines.append(
            f"{and_list([tick(x) for x in group])} are alternative branches: only one runs, "
            f"chosen by {tick('{{' + var + '}}')} when the formula is poured."
        )
    return lines


def alternatives_among(ids: list[str], steps: list[dict[str, Any]]) -> list[tuple[list[str], str]]:
    """The alternative groups (ids within `ids`, with their variable) among some steps."""
    flat = list(walk(steps))
    chosen = [s for s in flat if s["id"] in set(ids)]
    out = []
    for group in alternatives(chosen):
        cond = next(s["condition"] for s in chosen if s["id"] == group[0])
        out.append((group, condition_var(cond) or "?"))
    return out
