"""Formulas: `*.formula.toml` / `*.formula.json` of the four types, with tier resolution.

Resolution order (docs/design/formula-resolution.md in gastown): a rig's `.beads/formulas/` (in the rig
directory or its canonical clone `mayor/rig`), then the town's `.beads/formulas/`, then the copies
embedded in `gt` (any other place a formula is found). Worktrees and crew clones are not walked.
Every formula file becomes a document; its meta records its tier and where it wins or is shadowed.
A `needs` cycle or a reference to an unknown step sends the file to quarantine.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from gastown_ft.corpus.documents import Document, ReadLog
from gastown_ft.corpus.files import file_mtime, read_text
from gastown_ft.corpus.scan import CANONICAL_CLONE, TownScan

SOURCE = "formulas"
FORMULA_TYPES = ("workflow", "convoy", "expansion", "aspect")
TIER_RANK = {"rig": 0, "town": 1, "embedded": 2}
TOWN_SCOPE = "(town)"


class FormulaError(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def is_formula_file(path: Path) -> bool:
    name = path.name
    return name.endswith(".formula.toml") or name.endswith(".formula.json")


def formula_tier(rel: str, rig: str | None, rig_beads_dirs: Iterable[str] = ()) -> str:
    """'rig', 'town' or 'embedded' from where the file lies (rel is relative to the town root).

    A rig's formulas are in `<rig>/.beads/formulas/` or its canonical clone's
    `<rig>/mayor/rig/.beads/formulas/` (or a `.beads` a redirect leads to: `rig_beads_dirs`)."""
    if rel.startswith(".beads/formulas/"):
        return "town"
    if rig:
        dirs = [f"{rig}/.beads", f"{rig}/{'/'.join(CANONICAL_CLONE)}/.beads", *rig_beads_dirs]
        if any(rel.startswith(f"{d.rstrip('/')}/formulas/") for d in dirs):
            return "rig"
    return "embedded"


def _steps_of(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    steps = data.get(key) or []
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
        raise FormulaError("bad_schema", f"`{key}` must be an array of tables")
    return steps


def _id_list(value: Any, where: str, field: str) -> list[str]:
    """Step ids from a string or an array of strings (raises FormulaError on anything else)."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise FormulaError("bad_schema", f"{where}: `{field}` must be a step id or a list of them")


def _unique(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def _walk(steps: list[dict[str, Any]], what: str = "step") -> Iterator[dict[str, Any]]:
    """Each step, then its `children` (nested steps are steps too: bd cooks them into child beads)."""
    for s in steps:
        yield s
        children = s.get("children") or []
        if not isinstance(children, list) or not all(isinstance(c, dict) for c in children):
            raise FormulaError("bad_schema", f"{what} {s.get('id')}: `children` must be an array of tables")
        yield from _walk(children, what)


_CHILDREN_OF = re.compile(r"children-of\(\s*([^()\s]+)\s*\)")


def _waits_for_spawner(s: dict[str, Any]) -> str | None:
    """The step named by `waits_for = "children-of(ID)"` (raw or normalized), else None."""
    wf = s.get("waits_for")
    if isinstance(wf, dict):
        return wf.get("spawner") if wf.get("named") else None
    if isinstance(wf, str):
        m = _CHILDREN_OF.fullmatch(wf.strip())
        return m.group(1) if m else None
    return None


def _refs(s: dict[str, Any], what: str) -> list[str]:
    """The ids a step (raw or normalized) must wait for: `needs`, `depends_on`, a list `waits_for`."""
    where = f"{what} {s.get('id')}"
    refs = _id_list(s.get("needs"), where, "needs") + _id_list(s.get("depends_on"), where, "depends_on")
    if isinstance(s.get("waits_for"), list):
        refs += _id_list(s["waits_for"], where, "waits_for")
    return _unique(refs)


def check_needs(steps: list[dict[str, Any]], what: str = "step", outer: frozenset[str] = frozenset()) -> None:
    """Unique ids (nested `children` included), every reference names a known id, and no cycle.

    References are `needs`, `depends_on`, a list-valued `waits_for` and `waits_for = "children-of(ID)"`.
    A `loop` body is checked on its own (bd prefixes its ids per iteration); it may also name the
    formula's steps (`outer`). Raises FormulaError."""
    flat = list(_walk(steps, what))
    ids: list[str] = []
    for i, s in enumerate(flat):
        sid = s.get("id")
        if not isinstance(sid, str) or not sid:
            raise FormulaError("bad_schema", f"{what} #{i + 1} has no id")
        ids.append(sid)
    dup = {x for x in ids if ids.count(x) > 1}
    if dup:
        raise FormulaError("duplicate_step", f"{what} ids used twice: {', '.join(sorted(dup))}")
    known = set(ids) | set(outer)
    graph: dict[str, list[str]] = {}
    for s in flat:
        refs = _refs(s, what)
        spawner = _waits_for_spawner(s)
        unknown = [n for n in [*refs, *([spawner] if spawner else [])] if n not in known]
        if unknown:
            raise FormulaError(
                "unknown_step", f"{what} {s['id']} needs unknown {what} {', '.join(map(str, unknown))}"
            )
        graph[s["id"]] = [n for n in refs if n in ids]
    # Iterative DFS with colours: 0 new, 1 on stack, 2 done.
    colour = dict.fromkeys(graph, 0)
    for start in graph:
        if colour[start]:
            continue
        stack = [(start, iter(graph[start]))]
        colour[start] = 1
        path = [start]
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour[nxt] == 1:
                cycle = path[path.index(nxt) :] + [nxt]
                raise FormulaError("needs_cycle", f"`needs` cycle: {' -> '.join(cycle)}")
            elif colour[nxt] == 0:
                colour[nxt] = 1
                stack.append((nxt, iter(graph[nxt])))
                path.append(nxt)
    for s in flat:
        loop = s.get("loop")
        if isinstance(loop, dict) and isinstance(loop.get("body"), list):
            check_needs(loop["body"], f"{what} {s['id']} loop", frozenset(known))


def _vars(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    raw = data.get("vars") or {}
    if not isinstance(raw, dict):
        raise FormulaError("bad_schema", "`vars` must be a table")
    for name, spec in raw.items():
        if isinstance(spec, dict):
            out[name] = {k: spec.get(k) for k in ("description", "required", "default") if k in spec}
        else:  # NAME = "default"
            out[name] = {"default": spec}
    return out


def parse_formula(data: Any, fallback_name: str) -> dict[str, Any]:
    """Validate one parsed formula; return its normalized structure (raises FormulaError).

    Steps keep what decides the order of work (see `_step`); `compose.branch` and `compose.gate`
    rules are wired into the steps they name, as `bd cook` does."""
    if not isinstance(data, dict):
        raise FormulaError("bad_schema", "a formula must be a table/object at the top level")
    ftype = data.get("type", "workflow")
    if ftype not in FORMULA_TYPES:
        raise FormulaError("unknown_type", f"type {ftype!r} is not one of {', '.join(FORMULA_TYPES)}")
    name = data.get("formula") or fallback_name
    if not isinstance(name, str):
        raise FormulaError("bad_schema", "`formula` must be a string")
    out: dict[str, Any] = {
        "name": name,
        "type": ftype,
        "version": data.get("version"),
        "description": data.get("description") or "",
        "extends": data.get("extends") or [],
        "vars": _vars(data),
    }
    compose = _compose(data)
    if compose:
        out["compose"] = compose
    if ftype == "workflow":
        raw = _steps_of(data, "steps")
        if not raw and not out["extends"] and not data.get("compose"):
            raise FormulaError("no_steps", "a workflow formula needs [[steps]] (or extends/compose)")
        steps = [_step(s, "step") for s in raw]
        _wire_compose(steps, compose, bool(out["extends"]))
        check_needs(steps)
        out["steps"] = steps
    elif ftype == "expansion":
        raw = _steps_of(data, "template")
        if not raw:
            raise FormulaError("no_steps", "an expansion formula needs [[template]] steps")
        template = [_step(s, "template step") for s in raw]
        check_needs(template, "template step")
        out["template"] = template
    elif ftype == "convoy":
        legs = _steps_of(data, "legs")
        if not legs:
            raise FormulaError("no_steps", "a convoy formula needs [[legs]]")
        check_needs(legs, "leg")
        out["legs"] = [
            {k: leg.get(k) for k in ("id", "title", "focus", "description", "agent") if k in leg}
            for leg in legs
        ]
        out["synthesis"] = _synthesis(data.get("synthesis"))
        out["inputs"] = data.get("inputs")
        presets = _presets(data.get("presets"))
        if presets:
            out["presets"] = presets
    elif ftype == "aspect":
        advice = data.get("advice") or []
        pointcuts = data.get("pointcuts") or []
        if not advice:
            raise FormulaError("no_steps", "an aspect formula needs [[advice]]")
        out["advice"] = advice
        out["pointcuts"] = pointcuts
    return out


# Step fields kept as written (they do not change the order of work).
_STEP_EXTRAS = ("acceptance", "output", "assignee", "priority", "labels", "notes")
_SCALARS = (str, int, float, bool)


def _step(s: dict[str, Any], what: str) -> dict[str, Any]:
    """One step, normalized. Fields, as `bd cook` reads them (beads internal/formula):

    - `needs`: `needs`, `depends_on` and a list-valued `waits_for` (the docs' fan-in) merged: every one
      must be done before the step starts.
    - `condition`: "{{var}}", "!{{var}}", "{{var}} == v" or "{{var}} != v"; the step exists only when it
      holds, decided when the formula is poured (alternative branches are steps with exclusive ones).
    - `gates`: `[steps.gate]` (type human/timer/gh:run/gh:pr/mail/bead/..., with its details) and
      `compose.gate` conditions; the step cannot start until the gate opens.
    - `waits_for`: {"gate": "all-children"|"any-children", "spawner": step, "named": bool}: waits for
      the children bonded at run time to the spawner (its first need unless `children-of(ID)` names it).
    - `type` (human, gate, parallel, ...), `children` (nested steps; a "parallel" container runs them at
      once and is done when they all are), `loop`, `on_complete`, `expand`/`expand_vars`, `parallel`,
      and the extras (`acceptance`, `output`, ...) as written."""
    sid = s.get("id")
    where = f"{what} {sid}"
    out: dict[str, Any] = {
        "id": sid,
        "title": s.get("title") or "",
        "description": s.get("description") or "",
        "needs": _refs(s, what),
    }
    if s.get("type"):
        out["type"] = str(s["type"])
    condition = s.get("condition")
    if condition not in (None, ""):
        if not isinstance(condition, str):
            raise FormulaError("bad_schema", f"{where}: `condition` must be a string")
        out["condition"] = " ".join(condition.split())
    if s.get("gate") not in (None, "", {}):
        out["gates"] = [_gate(s["gate"], where)]
    waits_for = s.get("waits_for")
    if waits_for and not isinstance(waits_for, list):
        out["waits_for"] = _waits_for(waits_for, out["needs"], where)
    if "parallel" in s:
        out["parallel"] = bool(s["parallel"])
    children = s.get("children")
    if children:
        if not isinstance(children, list) or not all(isinstance(c, dict) for c in children):
            raise FormulaError("bad_schema", f"{where}: `children` must be an array of tables")
        out["children"] = [_step(c, what) for c in children]
    if s.get("loop") is not None:
        out["loop"] = _loop(s["loop"], sid, what)
    on_complete = s.get("on_complete")
    if on_complete is not None:
        if not isinstance(on_complete, dict):
            raise FormulaError("bad_schema", f"{where}: `on_complete` must be a table")
        keys = ("for_each", "bond", "vars", "parallel", "sequential")
        out["on_complete"] = {k: on_complete[k] for k in keys if k in on_complete}
    if s.get("expand"):
        out["expand"] = str(s["expand"])
        if isinstance(s.get("expand_vars"), dict):
            out["expand_vars"] = dict(s["expand_vars"])
    for k in _STEP_EXTRAS:
        if k in s:
            out[k] = s[k]
    return out


def _gate(gate: Any, where: str) -> dict[str, Any]:
    """{"type": ..., details...}: scalar and list-of-scalar details kept, in name order."""
    if isinstance(gate, str):
        return {"type": gate}
    if not isinstance(gate, dict):
        raise FormulaError("bad_schema", f"{where}: `gate` must be a table")
    out: dict[str, Any] = {"type": str(gate.get("type") or "gate")}
    for k in sorted(gate):
        v = gate[k]
        if k == "type":
            continue
        if isinstance(v, _SCALARS) or (isinstance(v, list) and all(isinstance(x, _SCALARS) for x in v)):
            out[k] = v
    return out


def _waits_for(value: Any, needs: list[str], where: str) -> dict[str, Any]:
    text = value.strip() if isinstance(value, str) else ""
    if text in ("all-children", "any-children"):
        return {"gate": text, "spawner": needs[0] if needs else None, "named": False}
    m = _CHILDREN_OF.fullmatch(text)
    if m:
        return {"gate": "all-children", "spawner": m.group(1), "named": True}
    raise FormulaError(
        "bad_schema", f"{where}: `waits_for` must be all-children, any-children, children-of(ID) or a list"
    )


def _loop(loop: Any, sid: Any, what: str) -> dict[str, Any]:
    """count / range / until (with max) / var, and the body's steps (bd repeats them, chained)."""
    where = f"{what} {sid}"
    if not isinstance(loop, dict):
        raise FormulaError("bad_schema", f"{where}: `loop` must be a table")
    body = loop.get("body")
    if not isinstance(body, list) or not body or not all(isinstance(b, dict) for b in body):
        raise FormulaError("bad_schema", f"{where}: `loop` needs a `body` of steps")
    out = {k: loop[k] for k in ("count", "range", "until", "max", "var") if k in loop}
    out["body"] = [_step(b, f"{where} loop") for b in body]
    return out


_COMPOSE_RULES = {
    "expand": ("target", "with", "vars"),
    "map": ("select", "with", "vars"),
    "branch": ("from", "steps", "join"),
    "gate": ("before", "condition"),
    "bond_points": ("id", "description", "after_step", "before_step", "parallel"),
    "hooks": ("trigger", "attach", "at", "vars"),
}


def _compose(data: dict[str, Any]) -> dict[str, Any]:
    """The `[compose]` rules that are present, each a list of tables with its known fields."""
    raw = data.get("compose")
    if raw in (None, {}):
        return {}
    if not isinstance(raw, dict):
        raise FormulaError("bad_schema", "`compose` must be a table")
    out: dict[str, Any] = {}
    for key, fields in _COMPOSE_RULES.items():
        rules = raw.get(key)
        if rules in (None, []):
            continue
        rules = [rules] if isinstance(rules, dict) else rules
        if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
            raise FormulaError("bad_schema", f"`compose.{key}` must be an array of tables")
        out[key] = [{f: r[f] for f in fields if f in r} for r in rules]
    if raw.get("aspects"):
        out["aspects"] = _id_list(raw["aspects"], "compose", "aspects")
    return out


def _wire_compose(steps: list[dict[str, Any]], compose: dict[str, Any], extends: bool) -> None:
    """Wire `compose.branch` (from -> steps -> join) and `compose.gate` into the steps, as bd cooks them.

    A rule naming a step this file lacks is an error, unless the formula extends another (the step may
    come from there; the rule is then kept in `compose` only)."""
    by_id = {s["id"]: s for s in _walk(steps) if isinstance(s.get("id"), str)}

    def present(kind: str, ids: list[str]) -> bool:
        missing = [x for x in ids if x not in by_id]
        if missing and not extends:
            raise FormulaError("unknown_step", f"compose.{kind} names unknown step {', '.join(missing)}")
        return not missing

    for rule in compose.get("branch", []):
        frm, join = rule.get("from"), rule.get("join")
        par = _id_list(rule.get("steps"), "compose.branch", "steps")
        if not isinstance(frm, str) or not isinstance(join, str) or not frm or not join or not par:
            raise FormulaError("bad_schema", "compose.branch needs `from`, `steps` and `join`")
        if present("branch", [frm, *par, join]):
            for p in par:
                by_id[p]["needs"] = _unique([*by_id[p]["needs"], frm])
            by_id[join]["needs"] = _unique([*by_id[join]["needs"], *par])
    for rule in compose.get("gate", []):
        before, condition = rule.get("before"), rule.get("condition")
        if not isinstance(before, str) or not isinstance(condition, str) or not before or not condition:
            raise FormulaError("bad_schema", "compose.gate needs `before` and `condition`")
        if present("gate", [before]):
            gate = {"type": "condition", "condition": " ".join(condition.split())}
            by_id[before].setdefault("gates", []).append(gate)


def _synthesis(synth: Any) -> dict[str, Any] | None:
    """A convoy's synthesis: title, description, and the legs it waits for (`depends_on`)."""
    if not isinstance(synth, dict):
        return None
    out = {k: synth[k] for k in ("title", "description") if k in synth}
    out["depends_on"] = _id_list(synth.get("depends_on"), "synthesis", "depends_on")
    return out


def _presets(presets: Any) -> dict[str, dict[str, Any]]:
    """A convoy's named leg selections (code-review: gate, full, security-focused, refactor)."""
    if not isinstance(presets, dict):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for name, p in presets.items():
        if isinstance(p, dict):
            legs = [x for x in p.get("legs") or [] if isinstance(x, str)]
            out[str(name)] = {"description": str(p.get("description") or ""), "legs": legs}
    return out


def _load(text: str, is_json: bool) -> Any:
    if is_json:
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise FormulaError("invalid_json", f"line {e.lineno}: {e.msg}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise FormulaError("invalid_toml", str(e)) from None


def resolve(docs: list[Document], rigs: list[str]) -> None:
    """Mark, per scope (each rig, and the town itself), which formula of a name wins.

    A rig's own formula shadows the town's, which shadows the embedded one. Within one tier the
    first path in sort order wins and later copies are recorded as duplicates.
    """
    by_name: dict[str, list[Document]] = {}
    for d in docs:
        by_name.setdefault(d.meta["name"], []).append(d)
    for d in docs:
        d.meta["active_in"] = []
        d.meta["shadowed_in"] = {}
    for candidates in by_name.values():
        for scope in [TOWN_SCOPE, *rigs]:
            usable = [c for c in candidates if c.meta["tier"] != "rig" or c.rig == scope]
            if not usable:
                continue
            usable.sort(key=lambda c: (TIER_RANK[c.meta["tier"]], c.path))
            winner = usable[0]
            winner.meta["active_in"].append(scope)
            for loser in usable[1:]:
                loser.meta["shadowed_in"][scope] = winner.path
    for d in docs:
        d.meta["shadowed"] = bool(d.meta["shadowed_in"]) and not d.meta["active_in"]


def read_formulas(scan: TownScan, log: ReadLog) -> Iterator[Document]:
    docs: list[Document] = []
    for path in sorted(scan.matching(is_formula_file, log, SOURCE)):
        rel = scan.rel(path)
        rig, commit = scan.provenance(path)
        text = read_text(path, log, SOURCE, max_bytes=scan.max_bytes, rel=rel, rig=rig, strict=True)
        if text is None:
            continue
        stem = path.name.rsplit(".formula.", 1)[0]
        try:
            parsed = parse_formula(_load(text, path.suffix == ".json"), stem)
        except FormulaError as e:
            log.quarantine(SOURCE, rel, e.reason, str(e), rig=rig)
            continue
        tier = formula_tier(rel, rig, scan.beads_dirs_of(rig) if rig else ())
        parsed["tier"] = tier
        parsed["format"] = "json" if path.suffix == ".json" else "toml"
        docs.append(
            Document(
                source=SOURCE,
                kind=parsed["type"],
                path=rel,
                text=text,
                title=f"formula {parsed['name']} ({parsed['type']}, {tier})",
                rig=rig,
                commit=commit,
                mtime=file_mtime(path),
                role=None,
                key=parsed["name"],
                meta=parsed,
            )
        )
    resolve(docs, sorted(scan.rigs))
    yield from docs
