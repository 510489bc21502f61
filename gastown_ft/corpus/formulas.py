"""Formulas: `*.formula.toml` / `*.formula.json` of the four types, with tier resolution.

Resolution order (docs/design/formula-resolution.md in gastown): a rig's `.beads/formulas/`, then the
town's `.beads/formulas/`, then the copies embedded in `gt` (any other place a formula is found).
Every formula file becomes a document; its meta records its tier and where it wins or is shadowed.
A `needs` cycle or a reference to an unknown step sends the file to quarantine.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gastown_ft.corpus.documents import Document, ReadLog
from gastown_ft.corpus.files import file_mtime, read_text
from gastown_ft.corpus.scan import TownScan

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


def formula_tier(rel: str, rig: str | None) -> str:
    """'rig', 'town' or 'embedded' from where the file lies (rel is relative to the town root)."""
    if rel.startswith(".beads/formulas/"):
        return "town"
    if rig and rel.startswith(f"{rig}/.beads/formulas/"):
        return "rig"
    return "embedded"


def _steps_of(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    steps = data.get(key) or []
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
        raise FormulaError("bad_schema", f"`{key}` must be an array of tables")
    return steps


def check_needs(steps: list[dict[str, Any]], what: str = "step") -> None:
    """Unique ids, every `needs` names a known id, and no cycle (raises FormulaError)."""
    ids: list[str] = []
    for i, s in enumerate(steps):
        sid = s.get("id")
        if not isinstance(sid, str) or not sid:
            raise FormulaError("bad_schema", f"{what} #{i + 1} has no id")
        ids.append(sid)
    dup = {x for x in ids if ids.count(x) > 1}
    if dup:
        raise FormulaError("duplicate_step", f"{what} ids used twice: {', '.join(sorted(dup))}")
    known = set(ids)
    graph: dict[str, list[str]] = {}
    for s in steps:
        needs = s.get("needs") or []
        if isinstance(needs, str):
            needs = [needs]
        if not isinstance(needs, list):
            raise FormulaError("bad_schema", f"{what} {s['id']}: `needs` must be a list")
        unknown = [n for n in needs if n not in known]
        if unknown:
            raise FormulaError(
                "unknown_step", f"{what} {s['id']} needs unknown {what} {', '.join(map(str, unknown))}"
            )
        graph[s["id"]] = list(needs)
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
    """Validate one parsed formula; return its normalized structure (raises FormulaError)."""
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
    if ftype == "workflow":
        steps = _steps_of(data, "steps")
        if not steps and not out["extends"] and not data.get("compose"):
            raise FormulaError("no_steps", "a workflow formula needs [[steps]] (or extends/compose)")
        check_needs(steps)
        out["steps"] = [_step(s) for s in steps]
    elif ftype == "expansion":
        template = _steps_of(data, "template")
        if not template:
            raise FormulaError("no_steps", "an expansion formula needs [[template]] steps")
        check_needs(template, "template step")
        out["template"] = [_step(s) for s in template]
    elif ftype == "convoy":
        legs = _steps_of(data, "legs")
        if not legs:
            raise FormulaError("no_steps", "a convoy formula needs [[legs]]")
        check_needs(legs, "leg")
        out["legs"] = [
            {k: leg.get(k) for k in ("id", "title", "focus", "description", "agent") if k in leg}
            for leg in legs
        ]
        out["synthesis"] = data.get("synthesis")
        out["inputs"] = data.get("inputs")
    elif ftype == "aspect":
        advice = data.get("advice") or []
        pointcuts = data.get("pointcuts") or []
        if not advice:
            raise FormulaError("no_steps", "an aspect formula needs [[advice]]")
        out["advice"] = advice
        out["pointcuts"] = pointcuts
    return out


def _step(s: dict[str, Any]) -> dict[str, Any]:
    needs = s.get("needs") or []
    return {
        "id": s.get("id"),
        "title": s.get("title") or "",
        "description": s.get("description") or "",
        "needs": [needs] if isinstance(needs, str) else list(needs),
        **({"parallel": s["parallel"]} if "parallel" in s else {}),
        **({"acceptance": s["acceptance"]} if "acceptance" in s else {}),
    }


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
        tier = formula_tier(rel, rig)
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
