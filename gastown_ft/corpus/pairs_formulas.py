"""Instruction pairs about formulas: what a formula does, its steps, their order, its variables, its TOML.

Input: document rows of source "formulas" (dicts shaped like `documents.DOCUMENT_SCHEMA`, `meta` a JSON
string holding the normalized formula of `formulas.parse_formula` plus tier/active_in/shadowed), already
scrubbed. Output: chat examples (`examples.make_example`), one group per formula name
(`group_id = "formula:<name>"`), so every example about one formula lands in the same split; a rig's
override of a town formula shares the group, and the system prompt (which names the rig) tells them apart.

Tasks:
- `formula_explain`: "What does the formula `X` do?" -> description, type, steps/legs/template/advice,
  how the steps wait for each other (forks, joins, conditions, alternative branches, gates, children,
  loops; `formula_semantics.flow_lines`), vars.
- `formula_steps`: "List the steps of `X` in order." -> numbered steps in a topological order of `needs`
  (file order among the free ones), each with what it waits for beyond one step and its children.
  Convoys: legs (then the synthesis); expansions: template steps; aspects: advice.
- `formula_next_step`: for up to `NEXT_STEP_LIMIT` steps of a workflow/expansion (spread evenly over the
  order, first and last included): what directly follows a step, and what it needs first. A following
  step is said to start once the step is done only when nothing else holds it; otherwise the answer
  says what else it waits for (other needs, its pour-time condition, its gate, run-time children).
- `formula_author`: "Write a <type> formula named `X` that: ..." -> the formula file's own TOML (TOML files
  of at most `AUTHOR_MAX_CHARS` that parse back to the same name and type).
- `formula_vars`: "Which variables does `X` take?", and for workflows a request to pour it with values for
  every required variable -> a Bash tool call `bd mol pour X --var k=v ...`.

Questions about a formula (explain, steps, next step, variables) are asked the way an agent meets
them: the agent first reads the formula with `gt formula show NAME` (a Bash tool call, its outline as
the tool's answer, `formula_outline`) and answers from what it read. So a formula the model never saw
(a new one, or one held out in the test split) is answerable, and the model learns to look before it
answers. Formulas too long for an outline (over `SHOW_MAX_ITEMS` steps) get no step questions.
Pour requests name every value and are answered directly, `POUR_VARIANTS` phrasings a workflow.

Shadowed formulas (a copy that no scope runs, `meta.shadowed`) give no examples: their answers are not
what the town runs, and their TOML would contradict the active copy for the same request.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import tomllib
from collections.abc import Iterable, Iterator
from typing import Any

from gastown_ft.corpus.examples import BASH_TOOL, assistant, make_example, tool_call, tool_result, user
from gastown_ft.corpus.formula_semantics import (
    alternatives_among,
    and_list,
    flow_clauses,
    flow_lines,
    on_complete_text,
    outline_notes,
    owners,
    starts_when_done,
    tick,
    walk,
)
from gastown_ft.corpus.formulas import FormulaError, parse_formula

TASKS = ("formula_explain", "formula_steps", "formula_next_step", "formula_author", "formula_vars")
ROLE_PREFIXES = {
    "mol-polecat-": "polecat",
    "mol-witness-": "witness",
    "mol-refinery-": "refinery",
    "mol-deacon-": "deacon",
    "mol-dog-": "dog",
    "mol-boot-": "boot",
}
CRITICAL_MARKERS = ("shutdown", "convoy-cleanup", "escalat", "boot", "deacon")
NEXT_STEP_LIMIT = 5
AUTHOR_MAX_CHARS = 6000
MAX_LISTED_STEPS = 60  # longer formulas (towers-of-hanoi-10: 1023 steps) get no step listing
EXPLAIN_MAX_STEPS = 30  # the explanation names at most this many steps, then summarises
EXPLAIN_MAX_FLOW = 12  # at most this many lines on joins, conditions, gates and alternatives
DESCRIPTION_CHARS = 700  # budget for the description part of an explanation
REQUEST_CHARS = 400  # budget for the description quoted in an authoring request
SHOW_MAX_ITEMS = 30  # questions about a formula read its `gt formula show` outline; longer ones get none
SHOW_DESCRIPTION_CHARS = 200  # the outline's description line
POUR_VARIANTS = 5  # pour requests per workflow formula, each phrased and valued differently


# ---------------------------------------------------------------------------------------------------
# small helpers


def formula_role(name: str) -> str | None:
    """The role a formula is for, when its name says so (mol-polecat-* -> polecat, ...)."""
    for prefix, role in ROLE_PREFIXES.items():
        if name.startswith(prefix):
            return role
    return None


def is_critical(name: str) -> bool:
    """Rare but critical workflows (shutdown, convoy cleanup, escalation, boot, deacon) are upweighted."""
    return any(m in name for m in CRITICAL_MARKERS)


def _h(*parts: object) -> int:
    return int(hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:12], 16)


def _pick(options: list[str] | tuple[str, ...], *key: object) -> str:
    """A deterministic choice among phrasings."""
    return options[_h(*key) % len(options)]


def _paragraphs(text: str) -> list[str]:
    """Prose paragraphs of a markdown description: blank-line separated, headings end the intro."""
    out: list[str] = []
    for block in re.split(r"\n\s*\n", (text or "").strip()):
        lines = [ln.rstrip() for ln in block.strip().splitlines() if ln.strip()]
        if not lines:
            continue
        if lines[0].lstrip().startswith("#"):
            if out:
                break  # the first section heading after the intro ends it
            lines = lines[1:]
            if not lines:
                continue
        if lines[0].lstrip().startswith(("```", "|")):
            break
        listy = any(re.match(r"\s*([-*+]|\d+[.)])\s", ln) for ln in lines)
        out.append("\n".join(lines) if listy else " ".join(ln.strip() for ln in lines))
    return out


def _clip(text: str, budget: int) -> str:
    """At most `budget` characters, cut at a sentence end (else a word) and marked with an ellipsis."""
    if len(text) <= budget:
        return text
    cut = text[:budget]
    end = max(cut.rfind(". "), cut.rfind(".\n"))
    if end > budget // 2:
        return cut[: end + 1]
    return cut.rsplit(" ", 1)[0].rstrip(",;:") + " …"


def description_summary(description: str, budget: int = DESCRIPTION_CHARS) -> str:
    """The first paragraph(s) of a description, within `budget` characters (the first always, clipped)."""
    paras = _paragraphs(description)
    if not paras:
        return ""
    out = [_clip(paras[0], budget)]
    used = len(out[0])
    for p in paras[1:]:
        if used + len(p) + 2 > budget:
            break
        out.append(p)
        used += len(p) + 2
    return "\n\n".join(out)


def first_paragraph(description: str, budget: int = REQUEST_CHARS) -> str:
    paras = _paragraphs(description)
    return _clip(paras[0], budget) if paras else ""


def topo_order(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Steps in an order that respects `needs`; among steps that are free, file order (stable Kahn).

    A need (of a step or of its children) on another step's child counts as a need on that step."""
    owner = owners(steps)
    needs = {
        s["id"]: [
            owner[n] for c in walk([s]) for n in c.get("needs") or [] if n in owner and owner[n] != s["id"]
        ]
        for s in steps
    }
    done: set[str] = set()
    out: list[dict[str, Any]] = []
    remaining = list(steps)
    while remaining:
        for i, s in enumerate(remaining):
            if all(n in done for n in needs[s["id"]]):
                out.append(s)
                done.add(s["id"])
                del remaining[i]
                break
        else:  # a cycle (the reader quarantines those); keep file order for the rest
            out.extend(remaining)
            break
    return out


def dependents(steps: list[dict[str, Any]]) -> dict[str, list[str]]:
    """For each step id (children included), the ids of the steps that directly need it (file order)."""
    flat = list(walk(steps))
    out: dict[str, list[str]] = {s["id"]: [] for s in flat}
    for s in flat:
        for n in s.get("needs") or []:
            if n in out:
                out[n].append(s["id"])
    return out


def _items(meta: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """(what the items are called, the ordered items) of a formula of any type."""
    ftype = meta.get("type", "workflow")
    if ftype == "convoy":
        return "legs", list(meta.get("legs") or [])
    if ftype == "expansion":
        return "template steps", topo_order(list(meta.get("template") or []))
    if ftype == "aspect":
        return "advice", list(meta.get("advice") or [])
    return "steps", topo_order(list(meta.get("steps") or []))


def _line(item: dict[str, Any]) -> str:
    title = " ".join(str(item.get("title") or "").split())
    return f"`{item['id']}` — {title}" if title else f"`{item['id']}`"


def _advice_parts(adv: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(when, inserted step) pairs of one aspect advice: before/after, or around's before/after."""
    out: list[tuple[str, dict[str, Any]]] = []

    def add(when: str, value: Any) -> None:
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, dict):
                out.append((when, v))

    around = adv.get("around")
    if isinstance(around, dict):
        add("before", around.get("before") or [])
        add("after", around.get("after") or [])
    for when in ("before", "after"):
        if adv.get(when):
            add(when, adv[when])
    return out


def _advice_line(adv: dict[str, Any]) -> str:
    target = adv.get("target") or adv.get("pointcut") or "?"
    parts = []
    for when, step in _advice_parts(adv):
        sid = step.get("id")
        title = " ".join(str(step.get("title") or "").split())
        label = f"`{sid}`" if sid else "a step"
        parts.append(f"{when}: {label}" + (f" ({title})" if title else ""))
    return f"around `{target}` — " + ("; ".join(parts) if parts else "no inserted steps")


def _var_line(name: str, spec: dict[str, Any]) -> str:
    bits = []
    if spec.get("required"):
        bits.append("required")
    default = spec.get("default")
    if default not in (None, ""):
        bits.append(f"default `{default}`")
    elif "default" in spec and not spec.get("required"):
        bits.append("default empty")
    desc = " ".join(str(spec.get("description") or "").split())
    head = f"`{name}`" + (f" ({', '.join(bits)})" if bits else "")
    return f"{head}: {desc}" if desc else head


def _ref(item: dict[str, Any]) -> str:
    """`id` (title): a step named inside a sentence."""
    title = " ".join(str(item.get("title") or "").split())
    return f"`{item['id']}` ({title})" if title else f"`{item['id']}`"


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _numbered(lines: list[str]) -> str:
    return "\n".join(f"{i}. {ln}" for i, ln in enumerate(lines, 1))


def _numbered_nested(entries: list[list[str]]) -> str:
    """Numbered entries whose first line is numbered and the rest (children) follow as written."""
    return "\n".join(f"{i}. {e[0]}" + "".join(f"\n{ln}" for ln in e[1:]) for i, e in enumerate(entries, 1))


# ---------------------------------------------------------------------------------------------------
# the formula as an agent reads it


def formula_outline(meta: dict[str, Any]) -> str | None:
    """What an agent reads before answering about a formula: `gt formula show NAME`, compacted.

    Name, type (the real command prints "Type: workflow" / "Type: convoy"), the description's first
    paragraph, the variables, and the steps (legs, template steps, advice) in order, each with what it
    needs and, compactly, its condition, gates, run-time waits, type, loop and expansion; children
    indented under their step. None when the formula has more than SHOW_MAX_ITEMS of them (children
    included): too long for a prompt."""
    name, ftype = meta["name"], meta.get("type", "workflow")
    noun, items = _items(meta)
    if len(items) > SHOW_MAX_ITEMS or (ftype != "aspect" and len(list(walk(items))) > SHOW_MAX_ITEMS):
        return None
    lines = [f"Formula: {name}", f"Type: {ftype}"]
    what = first_paragraph(meta.get("description") or "", SHOW_DESCRIPTION_CHARS)
    if what:
        lines.append(f"Description: {what}")
    if meta.get("extends"):
        lines.append("Extends: " + ", ".join(meta["extends"]))
    lines += _compose_lines(meta.get("compose") or {})
    variables = meta.get("vars") or {}
    if variables:
        lines.append("Variables:")
        lines += [f"  {_var_line(k, v)}" for k, v in variables.items()]
    if items:
        lines.append(noun[:1].upper() + noun[1:] + ":")
        for item in items:
            if ftype == "aspect":
                lines.append(f"  {_advice_line(item)}" if isinstance(item, dict) else "  ?")
                continue
            lines += _outline_step(item, "  ")
    synth = meta.get("synthesis")
    if ftype == "convoy" and isinstance(synth, dict):
        waits = synth.get("depends_on") or []
        after = f" (after {', '.join(waits)})" if waits and len(waits) < len(items) else ""
        lines.append(f"Synthesis: {synth.get('title') or 'merge the legs'}{after}")
    for preset, spec in (meta.get("presets") or {}).items() if ftype == "convoy" else ():
        lines.append(f"Preset {preset}: legs {', '.join(spec['legs'])}")
    return "\n".join(lines)


def _outline_step(step: dict[str, Any], indent: str) -> list[str]:
    """A step's outline line, `id` — title (needs a, b; only when `cond`; human gate ...), then its
    children (and a loop's body) indented under it."""
    notes = outline_notes(step)
    out = [f"{indent}{_line(step)}" + (f" ({'; '.join(notes)})" if notes else "")]
    for child in step.get("children") or []:
        out += _outline_step(child, indent + "  ")
    return out


def _compose_lines(compose: dict[str, Any]) -> list[str]:
    """Composition rules not already wired into the steps (branch and gate rules are)."""
    lines = []
    for rule in compose.get("expand") or []:
        lines.append(f"Expands: {rule.get('target', '?')} with {rule.get('with', '?')}")
    for rule in compose.get("map") or []:
        lines.append(f"Expands every {rule.get('select', '?')} with {rule.get('with', '?')}")
    if compose.get("aspects"):
        lines.append("Aspects: " + ", ".join(compose["aspects"]))
    return lines


def read_then_answer(name: str, outline: str, question: str, answer: str) -> list[dict[str, Any]]:
    """The question, the agent reading the formula with `gt formula show`, then its answer.

    A formula the model never saw (a new one, or one in another split) is answerable this way: the
    answer is read from the outline, not recalled."""
    cmd = f"gt formula show {shlex.quote(name)}"
    call = tool_call(_call_id(cmd, question), "Bash", {"command": cmd})
    return [
        user(question),
        assistant(f"Reading `{name}` first.", [call]),
        tool_result(call["id"], outline, "Bash"),
        assistant(answer),
    ]


# ---------------------------------------------------------------------------------------------------
# answers


def explain_answer(meta: dict[str, Any]) -> str:
    name, ftype = meta["name"], meta.get("type", "workflow")
    version = meta.get("version")
    head = f"`{name}` is {_article(ftype)} {ftype} formula" + (
        f" (version {version})." if version is not None else "."
    )
    parts = [head]
    summary = description_summary(meta.get("description") or "")
    if summary:
        parts.append(summary)
    extends = meta.get("extends") or []
    if extends:
        parts.append("It extends " + ", ".join(f"`{e}`" for e in extends) + ".")
    composed = _compose_sentences(meta.get("compose") or {})
    if composed:
        parts.append(composed)
    _, items = _items(meta)
    if ftype == "aspect":
        lines = [_advice_line(a) for a in items if isinstance(a, dict)]
        if lines:
            parts.append("Its advice:\n" + "\n".join(f"- {ln}" for ln in lines))
        cuts = [p.get("glob") for p in meta.get("pointcuts") or [] if isinstance(p, dict) and p.get("glob")]
        if cuts:
            parts.append("It applies to steps matching " + ", ".join(f"`{c}`" for c in cuts) + ".")
    elif items:
        ids = [f"`{s['id']}`" for s in items]
        if ftype == "convoy":
            lead = f"Its {len(ids)} legs run in parallel, one polecat each: "
        elif ftype == "expansion":
            lead = "It replaces its target step with these template steps, in order: "
        else:
            lead = f"Its {len(ids)} steps, in order: "
        if len(ids) > EXPLAIN_MAX_STEPS:
            parts.append(
                f"It has {len(ids)} {'legs' if ftype == 'convoy' else 'steps'}, from {ids[0]} to {ids[-1]}; "
                f"the first ones are {', '.join(ids[:5])}."
            )
        else:
            parts.append(lead + ", ".join(ids) + ".")
        synth = meta.get("synthesis")
        if ftype == "convoy" and isinstance(synth, dict):
            title = synth.get("title") or "synthesis"
            waits = synth.get("depends_on") or []
            if waits and len(waits) < len(items):
                parts.append(
                    f"A final synthesis step ({title}) merges what {and_list([tick(x) for x in waits])} found; "
                    "it starts when those legs are done."
                )
            else:
                parts.append(
                    f"A final synthesis step ({title}) merges what the legs found, once all are done."
                )
        presets = (meta.get("presets") or {}) if ftype == "convoy" else {}
        if presets:
            parts.append(
                "Presets pick which legs run:\n"
                + "\n".join(
                    f"- `{k}`: "
                    + ", ".join(tick(x) for x in v["legs"])
                    + (f" ({v['description']})" if v["description"] else "")
                    for k, v in presets.items()
                )
            )
        if ftype != "convoy":
            flow = flow_lines(items)
            if flow:
                shown = flow[:EXPLAIN_MAX_FLOW]
                more = len(flow) - len(shown)
                parts.append(
                    "How the steps wait for each other:\n"
                    + "\n".join(f"- {ln}" for ln in shown)
                    + (f"\n- … and {more} more." if more else "")
                )
    else:
        compose = meta.get("compose")
        if extends or compose:
            parts.append("It has no steps of its own; they come from what it extends or composes.")
    inputs = meta.get("inputs") if ftype == "convoy" else None
    if isinstance(inputs, dict) and inputs:
        specs = {k: v if isinstance(v, dict) else {"default": v} for k, v in inputs.items()}
        parts.append("Inputs:\n" + "\n".join(f"- {_var_line(k, v)}" for k, v in specs.items()))
    variables = meta.get("vars") or {}
    if variables:
        parts.append("Variables:\n" + "\n".join(f"- {_var_line(k, v)}" for k, v in variables.items()))
    return "\n\n".join(parts)


def _compose_sentences(compose: dict[str, Any]) -> str:
    out = []
    for rule in compose.get("expand") or []:
        out.append(
            f"It replaces step {tick(rule.get('target', '?'))} with the {tick(rule.get('with', '?'))} expansion."
        )
    for rule in compose.get("map") or []:
        out.append(
            f"It expands every step matching {tick(rule.get('select', '?'))} with {tick(rule.get('with', '?'))}."
        )
    if compose.get("aspects"):
        out.append("It applies the aspects " + ", ".join(tick(a) for a in compose["aspects"]) + ".")
    return " ".join(out)


def _step_listing(step: dict[str, Any]) -> list[str]:
    """A numbered-list entry: `id` — title (what it waits for beyond one step), then its children."""
    notes = []
    needs = step.get("needs") or []
    if len(needs) > 1:
        notes.append("after " + and_list([tick(n) for n in needs]))
    notes += [c for c in flow_clauses(step) if not c.startswith(("runs its children", "is done when its"))]
    bonds = on_complete_text(step.get("on_complete") or {})
    if bonds:
        notes.append(f"when done {bonds}")
    head = _line(step) + (f" ({'; '.join(notes)})" if notes else "")
    kids = step.get("children") or []
    if kids:
        head += ", whose children run at once:" if step.get("type") == "parallel" else ", with children:"
    out = [head]
    for c in kids:
        sub = _step_listing(c)
        out += [f"   - {sub[0]}"] + [f"   {ln}" for ln in sub[1:]]
    return out


def steps_answer(meta: dict[str, Any]) -> str | None:
    """The numbered steps (legs, template steps, advice) of a formula, or None when it has none."""
    ftype = meta.get("type", "workflow")
    _, items = _items(meta)
    if not items or len(items) > MAX_LISTED_STEPS:
        return None
    if ftype == "aspect":
        lines = [_advice_line(a) for a in items if isinstance(a, dict)]
        return f"`{meta['name']}` is an aspect; its advice, in order:\n" + _numbered(lines)
    if ftype == "convoy":
        out = f"`{meta['name']}` is a convoy; its legs run in parallel:\n" + _numbered(
            [_line(s) for s in items]
        )
        synth = meta.get("synthesis")
        if isinstance(synth, dict):
            out += f"\n\nThen the synthesis: {synth.get('title') or 'merge the legs'}."
        return out
    body = _numbered_nested([_step_listing(s) for s in items])
    if ftype == "expansion":
        return f"`{meta['name']}` expands its target step into:\n{body}"
    return body


def next_step_examples(meta: dict[str, Any]) -> list[tuple[str, str]]:
    """(question, answer) pairs about what follows / precedes up to NEXT_STEP_LIMIT steps.

    "What comes after X" names the steps that need X and, for each, what else it waits for: its other
    needs (a join starts only when all are done), its condition (alternative branches: only one runs),
    its gate, run-time children; a step is said to start once X is done only when nothing else holds
    it. "What must be done before X" names X's needs and what else X waits for."""
    ftype = meta.get("type", "workflow")
    if ftype not in ("workflow", "expansion"):
        return []
    _, order = _items(meta)
    if len(order) < 2:
        return []
    name = meta["name"]
    after = dependents(order)
    by_id = {s["id"]: s for s in walk(order)}
    sinks = [s["id"] for s in order if not after[s["id"]]]
    n = len(order)
    if n <= NEXT_STEP_LIMIT:
        chosen = list(range(n))
    else:
        chosen = sorted({round(i * (n - 1) / (NEXT_STEP_LIMIT - 1)) for i in range(NEXT_STEP_LIMIT)})
    out: list[tuple[str, str]] = []
    for idx in chosen:
        step = order[idx]
        sid = step["id"]
        q_after = f"In `{name}`, what comes after step `{sid}`?"
        out.append((q_after, after_answer(step, [by_id[x] for x in after[sid]], sinks, order)))
        q_before = f"In `{name}`, what must be done before step `{sid}`?"
        out.append((q_before, before_answer(step, by_id, first=idx == 0)))
    return out


def after_answer(
    step: dict[str, Any], nxt: list[dict[str, Any]], sinks: list[str], steps: list[dict[str, Any]]
) -> str:
    """What comes after `step`: the steps that need it, each with what else it waits for."""
    sid = step["id"]
    done = on_complete_text(step.get("on_complete") or {})
    tail = f"\n\nWhen `{sid}` is done it also {done}." if done else ""
    if not nxt:
        if sinks == [sid]:
            return f"Nothing: `{sid}` is the last step.{tail}"
        others = [x for x in sinks if x != sid]
        return (
            f"Nothing: no step needs `{sid}`; it is one of the final steps, with "
            + ", ".join(f"`{x}`" for x in others)
            + f".{tail}"
        )
    clauses = {d["id"]: flow_clauses(d, done=sid) for d in nxt}
    if len(nxt) == 1:
        d = nxt[0]
        text = f"Next: {_ref(d)}."
        if clauses[d["id"]]:
            text = f"Next: {_ref(d)}; it " + "; it ".join(clauses[d["id"]]) + "."
    elif all(starts_when_done(d, sid) for d in nxt):
        text = f"{len(nxt)} steps need `{sid}` and can start once it is done:\n" + "\n".join(
            f"- {_line(d)}" + (f": {'; '.join(clauses[d['id']])}" if clauses[d["id"]] else "") for d in nxt
        )
    else:
        lines = []
        for d in nxt:
            said = clauses[d["id"]]
            if starts_when_done(d, sid):
                said = ["can start once it is done", *said]
            lines.append(f"- {_line(d)}: " + "; ".join(said))
        text = f"{len(nxt)} steps need `{sid}`:\n" + "\n".join(lines)
    for group, var in alternatives_among([d["id"] for d in nxt], steps):
        text += (
            f"\n\nOnly one of {and_list([tick(x) for x in group])} runs: they are alternative branches, "
            f"chosen by {tick('{{' + var + '}}')} when the formula is poured."
        )
    return text + tail


def before_answer(step: dict[str, Any], by_id: dict[str, dict[str, Any]], first: bool) -> str:
    """What must be done before `step`: its needs, then what else it waits for (condition, gate, ...)."""
    sid = step["id"]
    needs = [x for x in step.get("needs") or [] if x in by_id]
    waits = [
        c
        for c in flow_clauses(step)
        if c.startswith(("is only poured when", "cannot start until", "also waits for"))
    ]
    extra = ("; it " + "; it ".join(waits)) if waits else ""
    if needs:
        return f"`{sid}` needs " + _and([_ref(by_id[x]) for x in needs]) + f" first{extra}."
    if waits:
        return f"None: `{sid}` needs no other step, but it " + "; it ".join(waits) + "."
    return f"None: `{sid}` needs no other step" + (", it is where the formula starts." if first else ".")


def authored_toml(row: dict[str, Any], meta: dict[str, Any]) -> str | None:
    """The document's own TOML when it can serve as an authoring answer, else None."""
    text = row.get("text") or ""
    if meta.get("format", "toml") != "toml" or not text.strip() or len(text) > AUTHOR_MAX_CHARS:
        return None
    try:
        data = tomllib.loads(text)
        parsed = parse_formula(data, meta["name"])
    except (tomllib.TOMLDecodeError, FormulaError):
        return None
    if data.get("formula") != meta["name"] or parsed["type"] != meta.get("type", "workflow"):
        return None
    return text


# ---------------------------------------------------------------------------------------------------
# variables and pouring

_BEADISH = re.compile(r"(^|_)(issue|bead|mr|resolved_issue|original_mr)(_id)?$")
_SECRETISH = re.compile(r"(token|secret|password|passwd|api_key|apikey)", re.I)
_WORDS = {
    "summary": ["importer drops rows with quoted commas", "merge queue stuck behind a failing MR"],
    "reason": ["planned maintenance", "Dolt upgrade"],
    "shutdown_reason": ["planned maintenance", "Dolt upgrade"],
    "task": ["resolve the rebase conflicts", "split the importer into parser and loader"],
    "feature": ["CSV export of monthly reports", "per-endpoint rate limits"],
    "title": ["Fix flaky retry test"],
    "focus": ["error handling", "security"],
    "severity": ["HIGH", "MEDIUM"],
    "scope": ["town"],
    "period": ["daily", "weekly"],
    "polecat": ["nux", "furiosa", "slit"],
    "repo": ["example/ledger"],
    "pr_url": ["https://github.com/example/ledger/pull/42"],
}
_ALNUM = "0123456789abcdefghijklmnopqrstuvwxyz"


def _short_hash(*key: object, n: int = 5) -> str:
    v = _h(*key)
    out = ""
    for _ in range(n):
        v, r = divmod(v, 36)
        out += _ALNUM[r]
    return out


def _prefix(rig: str | None) -> str:
    if not rig:
        return "hq"
    return re.sub(r"[^a-z]", "", rig.lower())[:2] or "gt"


def sample_value(formula: str, var: str, spec: dict[str, Any], rig: str | None, salt: int = 0) -> str:
    """A plausible, deterministic value for a variable, from its name (or its default).

    `salt` > 0 gives another plausible value (other pour requests of the same formula)."""
    lname = var.lower()
    if spec.get("default") not in (None, ""):
        return str(spec["default"])
    if salt:
        formula = f"{formula}#{salt}"  # every hashed value below changes with it
    if lname == "rig":
        return rig or ("gastown" if not salt else _pick(("beads", "wyvern", "gastown"), formula))
    if lname == "convoy" or lname.startswith("convoy_"):
        return f"hq-cv-{_short_hash(formula, var)}"
    if _BEADISH.search(lname):
        return f"{_prefix(rig)}-{_short_hash(formula, var)}"
    if lname.endswith("branch"):
        return f"polecat/nux/{_prefix(rig)}-{_short_hash(formula, var)}"
    if lname == "version" or lname.endswith("_version"):
        v = _h(formula, var)
        return f"{v % 3}.{v // 3 % 20}.{v // 60 % 10}"
    if _SECRETISH.search(lname):
        return "$" + re.sub(r"[^A-Z0-9_]", "_", var.upper())
    if lname in _WORDS:
        return _pick(_WORDS[lname], formula, var)
    return f"{lname.replace('_', '-')}-{_short_hash(formula, var, n=3)}"


def pour_command(name: str, values: dict[str, str]) -> str:
    """`bd mol pour NAME --var k=v ...` with each k=v word quoted for the shell when needed."""
    words = ["bd", "mol", "pour", shlex.quote(name)]
    for k, v in values.items():
        kv = f"{k}={v}"
        if v.startswith("$") and re.fullmatch(r"\$[A-Z_][A-Z0-9_]*", v):
            words += ["--var", f'"{kv}"']  # let the shell expand the secret from the environment
        else:
            words += ["--var", shlex.quote(kv)]
    return " ".join(words)


POUR_OPENERS = (
    "Pour `{name}`",
    "Start a `{name}` molecule",
    "Instantiate the `{name}` formula",
    "I need a fresh `{name}` molecule",
    "Pour a molecule from `{name}`",
)


def pour_request(name: str, values: dict[str, str], variant: int = 0) -> str:
    """The user's request to pour a formula, naming a value for every variable in `values`.

    `variant` picks the phrasing (POUR_OPENERS); 0 is "Pour `NAME` for bead `X`, with ..."."""
    opener = POUR_OPENERS[variant % len(POUR_OPENERS)].format(name=name)
    bead_keys = [k for k in values if k.lower() in ("issue", "bead", "issue_id")]
    if len(bead_keys) == 1:
        head = f"{opener} for bead `{values[bead_keys[0]]}`"
        rest = [k for k in values if k != bead_keys[0]]
    else:
        head = opener
        rest = list(values)
    if rest:
        sets = [f"`{k}` = `{values[k]}`" for k in rest]
        joined = sets[0] if len(sets) == 1 else ", ".join(sets[:-1]) + " and " + sets[-1]
        head += (", with " if len(bead_keys) == 1 else " with ") + joined
    return head + "."


# ---------------------------------------------------------------------------------------------------
# the builder


def _meta(row: dict[str, Any]) -> dict[str, Any]:
    meta = row.get("meta")
    if isinstance(meta, str):
        return json.loads(meta) if meta else {}
    return dict(meta or {})


def _call_id(*key: object) -> str:
    return "call_" + hashlib.sha256("\x1f".join(map(str, key)).encode()).hexdigest()[:16]


def build_formula_examples(
    rows: Iterable[dict[str, Any]],
    *,
    weights: dict[str, float] | None = None,
    critical_boost: float = 3.0,
) -> Iterator[dict[str, Any]]:
    """Chat examples about the formulas in `rows` (document rows of source "formulas", scrubbed).

    `weights` maps a task name to its sampling weight (default 1.0); formulas of rare critical workflows
    (names with shutdown, convoy-cleanup, escalat, boot, deacon) get `critical_boost` times that.
    Deterministic: the same rows give the same examples, in the same order.
    """
    for row in rows:
        if row.get("source", "formulas") != "formulas":
            continue
        meta = _meta(row)
        if not meta.get("name") or meta.get("shadowed"):
            continue
        yield from _examples_of(row, meta, weights or {}, critical_boost)


def _examples_of(
    row: dict[str, Any], meta: dict[str, Any], weights: dict[str, float], critical_boost: float
) -> Iterator[dict[str, Any]]:
    name = meta["name"]
    ftype = meta.get("type", "workflow")
    rig = row.get("rig") if meta.get("tier") == "rig" else None
    boost = critical_boost if is_critical(name) else 1.0
    common = {
        "group_id": f"formula:{name}",
        "source_ids": [row["doc_id"]],
        "rig": rig,
        "role": formula_role(name),
        "quality": 1.0,
        "source_time": row.get("mtime") or 0.0,
    }

    def ex(task: str, messages: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
        weight = weights.get(task, 1.0) * boost
        return make_example(task=task, messages=messages, weight=weight, **common, **kw)

    outline = formula_outline(meta)

    def asked(task: str, question: str, answer: str) -> dict[str, Any]:
        """A question about the formula, answered after reading its outline (where it has one)."""
        if outline is None:
            return ex(task, [user(question), assistant(answer)])
        return ex(task, read_then_answer(name, outline, question, answer), tools=[BASH_TOOL])

    # formula_explain
    q = _pick(
        (f"What does the formula `{name}` do?", f"Explain the `{name}` formula.", f"What is `{name}` for?"),
        "explain",
        name,
        rig,
    )
    yield asked("formula_explain", q, explain_answer(meta))
    # formula_steps and formula_next_step: only read from an outline (a long formula gets none)
    steps = steps_answer(meta)
    if steps is not None and outline is not None:
        noun = {"convoy": "legs", "aspect": "advice"}.get(ftype, "steps")
        yield asked("formula_steps", f"List the {noun} of `{name}` in order.", steps)
    if outline is not None:
        for q, a in next_step_examples(meta):
            yield asked("formula_next_step", q, a)
    # formula_author
    toml_text = authored_toml(row, meta)
    if toml_text is not None:
        yield ex("formula_author", [user(author_request(meta)), assistant(toml_text)])
    # formula_vars
    variables = meta.get("vars") or {}
    if not variables:
        return
    n = len(variables)
    a = f"`{name}` takes {n} variable{'s' if n != 1 else ''}:\n" + "\n".join(
        f"- {_var_line(k, v)}" for k, v in variables.items()
    )
    required = [k for k, v in variables.items() if v.get("required")]
    if not required:
        a += "\n\nNone is required."
    yield asked("formula_vars", f"Which variables does `{name}` take?", a)
    if ftype != "workflow":
        return  # convoys, expansions and aspects are not poured
    # Pour requests name every value, so they need no outline; several phrasings and values each.
    for variant in range(POUR_VARIANTS if required else 1):
        values = {k: sample_value(name, k, variables[k], rig, salt=variant) for k in required}
        cmd = pour_command(name, values)
        request = (
            pour_request(name, values, variant) if values else f"Pour `{name}` with its default variables."
        )
        said = ", ".join(f"{k}={v}" for k, v in values.items())
        reply = f"Pouring `{name}`" + (f" with {said}." if values else ".")
        call = tool_call(_call_id(cmd), "Bash", {"command": cmd})
        yield ex("formula_vars", [user(request), assistant(reply, [call])], tools=[BASH_TOOL])


def _author_notes(step: dict[str, Any]) -> list[str]:
    """What the request must say about a step beyond its id: condition, gate, waits, children, ..."""
    notes = [n for n in outline_notes(step) if not n.startswith(("needs ", "parallel:"))]
    kids = [tick(c["id"]) for c in step.get("children") or []]
    if kids:
        notes.append(
            f"children {and_list(kids)}" + (" run at once" if step.get("type") == "parallel" else "")
        )
    return notes


def author_request(meta: dict[str, Any]) -> str:
    """The authoring request: type, name, what it does, and the outline the answer follows."""
    name, ftype = meta["name"], meta.get("type", "workflow")
    what = first_paragraph(meta.get("description") or "") or f"implements `{name}`"
    lines = [f"Write {_article(ftype)} {ftype} formula named `{name}` that: {what}"]
    _, items = _items(meta)
    if ftype == "aspect":
        targets = [str(a.get("target")) for a in items if isinstance(a, dict) and a.get("target")]
        if targets:
            lines.append("Advise the steps " + ", ".join(f"`{t}`" for t in targets) + ".")
    elif items and len(items) <= MAX_LISTED_STEPS:
        noun = {"convoy": "Legs", "expansion": "Template steps"}.get(ftype, "Steps")
        lines.append(f"{noun}: " + ", ".join(f"`{s['id']}`" for s in items) + ".")
    if ftype in ("workflow", "expansion") and len(items) <= MAX_LISTED_STEPS:
        # Conditions, gates and the like are in the answer's TOML: the request must ask for them.
        special = [
            f"{tick(s['id'])} ({'; '.join(notes)})" for s in walk(items) if (notes := _author_notes(s))
        ]
        if special:
            lines.append("With: " + ", ".join(special) + ".")
    if meta.get("extends"):
        lines.append("It extends " + ", ".join(f"`{e}`" for e in meta["extends"]) + ".")
    variables = meta.get("vars") or {}
    if variables:
        lines.append("Variables: " + ", ".join(f"`{k}`" for k in variables) + ".")
    lines.append("Reply with the TOML only.")
    return "\n".join(lines)
