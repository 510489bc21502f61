"""The Gas Town task suite: cases built from the test split, each with an automatic check.

A case is a test example cut before its last assistant turn (the prompt) with that turn as the
reference. Which check a task gets follows from its answer format (see corpus/pairs_formulas.py and
corpus/pairs_beads.py):

- family `command` (bead_create, bead_update, bead_close, bead_deps with a command, formula_vars
  pours): every gt/bd command the model writes (tool calls and text) parses against the CLI grammar,
  with the reference's subcommand and the same set of flags. bead_create is also an exact-answer
  case: the bead's type (-t) and priority (-p) must equal the reference's. Two rates come out of it:
  validity (the answer holds a command, every command parses, the first is the requested subcommand:
  what a shell would accept) and accuracy (the case passes: also the right flags and values).
- family `exact` (formula_next_step, formula_steps, bead_triage): the answer's key facts equal the
  reference's: for the next step, whether it says "nothing/none", which step ids it names (the next
  steps and what else they wait for) and which conditions it quotes; for the steps, the ordered
  ids; for triage, the ordered ready bead ids.
- family `authoring` (formula_author): valid TOML of the requested type and name that the formula
  reader accepts (unique step ids, no dangling or cyclic `needs`).

Tasks with free prose answers (explanations, conventions, agent turns) have no automatic check here;
they count in the held-out loss. The suite is deterministic: cases are taken in the split's order
(which is stable), at most `max_cases` per task, spread evenly over the task's examples.
`suite_coverage` names the families and tasks the test split gives no case for (report warnings).
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from gastown_ft.corpus.formulas import FormulaError, parse_formula
from gastown_ft.corpus.grammar import command_info, extract_commands, validate_command
from gastown_ft.evaluation.generate import Generation, Prompt
from gastown_ft.training.data import spread_evenly

COMMAND_TASKS = ("bead_create", "bead_update", "bead_close", "bead_deps", "formula_vars")
EXACT_TASKS = ("formula_next_step", "formula_steps", "bead_triage")
AUTHOR_TASKS = ("formula_author",)
FAMILIES = ("command", "exact", "authoring")

_TICKED = re.compile(r"`([^`\n]+)`")
_NUMBERED_ID = re.compile(r"^\s*\d+[.)]\s*`([^`\n]+)`", re.M)
_REQUEST = re.compile(r"Write an? (\w+) formula named `([^`]+)`")


@dataclass
class TaskCase:
    case_id: str  # task:example_id
    task: str
    family: str
    prompt: Prompt
    reference: dict[str, Any]  # the reference assistant turn (content, tool_calls)
    reference_tokens: int = 0  # filled by the runner: sizes the generation budget


@dataclass
class CaseScore:
    case_id: str
    task: str
    family: str
    passed: bool
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- building the suite ---------------------------------------------------------------------------


def _family(example: dict[str, Any]) -> str | None:
    task = example.get("task")
    ref = example["messages"][-1]
    if task in COMMAND_TASKS:
        return "command" if reference_commands(ref) else None
    if task in EXACT_TASKS:
        return "exact"
    if task in AUTHOR_TASKS:
        return "authoring"
    return None


def build_task_suite(examples: Sequence[dict[str, Any]], max_cases_per_task: int) -> list[TaskCase]:
    """The checkable cases of the test split, at most `max_cases_per_task` per task."""
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ex in examples:
        msgs = ex.get("messages") or []
        if not msgs or msgs[-1].get("role") != "assistant":
            continue
        if _family(ex) is not None:
            by_task[ex["task"]].append(ex)
    cases = []
    for task in sorted(by_task):
        for ex in spread_evenly(by_task[task], max_cases_per_task):
            cases.append(
                TaskCase(
                    case_id=f"{task}:{ex.get('example_id') or len(cases)}",
                    task=task,
                    family=_family(ex) or "",
                    prompt=Prompt(messages=list(ex["messages"][:-1]), tools=ex.get("tools") or None),
                    reference=ex["messages"][-1],
                )
            )
    return cases


FAMILY_TASKS = {"command": COMMAND_TASKS, "exact": EXACT_TASKS, "authoring": AUTHOR_TASKS}


def suite_coverage(cases: Sequence[TaskCase]) -> dict[str, Any]:
    """What the suite cannot measure: families and tasks with no case in the test split.

    {"families_missing": [family], "tasks_missing": [task], "warnings": [text]}. A missing family
    means a whole kind of check is not run, so its score is not part of `suite_score`."""
    have = {c.task for c in cases}
    fams = {c.family for c in cases}
    families_missing = [f for f in FAMILIES if f not in fams]
    tasks_missing = [t for f in FAMILIES for t in FAMILY_TASKS[f] if t not in have]
    warnings = []
    if not cases:
        warnings.append(
            "the task suite has no case: no test example has an automatic check, so nothing is measured"
        )
    for fam in families_missing:
        warnings.append(
            f"task family `{fam}` has no case in the test split (tasks {', '.join(FAMILY_TASKS[fam])}): "
            "it is not measured"
        )
    for task in tasks_missing:
        fam = next(f for f in FAMILIES if task in FAMILY_TASKS[f])
        if fam not in families_missing:
            warnings.append(f"suite task `{task}` ({fam}) has no case in the test split: it is not measured")
    return {"families_missing": families_missing, "tasks_missing": tasks_missing, "warnings": warnings}


def reference_text(ref: dict[str, Any]) -> str:
    """The reference turn as the model should write it (content, then tool calls), for sizing."""
    from gastown_ft.training.chat_format import render_segments

    segs = render_segments([ref])
    return "".join(t for t, trained in segs if trained)


# -- reading answers ------------------------------------------------------------------------------


def _call_commands(tool_calls: list[dict[str, Any]]) -> list[str]:
    out = []
    for call in tool_calls:
        fn = call.get("function", call)
        args = fn.get("arguments")
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                continue
        if isinstance(args, dict) and isinstance(args.get("command"), str):
            out.append(args["command"])
    return out


def reference_commands(ref: dict[str, Any]) -> list[str]:
    return _call_commands(ref.get("tool_calls") or []) or extract_commands(ref.get("content") or "")


def answer_commands(gen: Generation) -> list[str]:
    """Commands the model wrote: its tool calls' `command`s, then gt/bd commands in its text."""
    cmds = _call_commands(gen.tool_calls)
    return cmds + [c for c in extract_commands(gen.content) if c not in cmds]


def _words(cmd: str) -> list[str]:
    try:
        return shlex.split(cmd)
    except ValueError:
        return cmd.split()


def flag_names(cmd: str, path: str | None) -> set[str]:
    """The long names of the flags a command uses (shorthands mapped through the grammar)."""
    short: dict[str, str] = {}
    if path:
        try:
            short = dict(command_info(path).get("short") or {})
        except KeyError:
            short = {}
    out = set()
    for w in _words(cmd):
        if w == "--":
            break
        if w.startswith("--") and len(w) > 2:
            out.add(w[2:].split("=", 1)[0])
        elif w.startswith("-") and len(w) > 1 and not w[1].isdigit():
            out.add(short.get(w[1], w[1]))
    return out


def flag_value(cmd: str, long: str, letter: str) -> str | None:
    words = _words(cmd)
    for i, w in enumerate(words):
        for prefix in (f"--{long}=", f"-{letter}="):
            if w.startswith(prefix):
                return w[len(prefix) :]
        if w in (f"--{long}", f"-{letter}") and i + 1 < len(words):
            return words[i + 1]
        if w.startswith(f"-{letter}") and not w.startswith("--") and len(w) > 2:
            return w[2:]
    return None


# -- checks ---------------------------------------------------------------------------------------


def _check_command(case: TaskCase, gen: Generation) -> tuple[bool, dict[str, Any]]:
    ref_cmds = reference_commands(case.reference)
    ref_check = validate_command(ref_cmds[0])
    got = answer_commands(gen)
    details: dict[str, Any] = {"expected": ref_cmds[0], "commands": got}
    if not got:
        return False, {**details, "reason": "no gt/bd command in the answer"}
    checks = [validate_command(c) for c in got]
    invalid = [{"command": c.command, "errors": c.errors} for c in checks if not c.ok]
    if invalid:
        return False, {**details, "reason": "a command does not parse", "invalid": invalid}
    first = checks[0]
    if first.path != ref_check.path:
        return False, {**details, "reason": f"subcommand {first.path}, expected {ref_check.path}"}
    details["valid"] = True
    want, have = flag_names(ref_cmds[0], ref_check.path), flag_names(got[0], first.path)
    if want != have:
        return False, {
            **details,
            "reason": "flags differ",
            "missing_flags": sorted(want - have),
            "extra_flags": sorted(have - want),
        }
    if case.task == "bead_create":
        for long, letter in (("type", "t"), ("priority", "p")):
            exp, val = flag_value(ref_cmds[0], long, letter), flag_value(got[0], long, letter)
            if exp != val:
                return False, {**details, "reason": f"{long} {val!r}, expected {exp!r}"}
    return True, details


def next_step_key(text: str) -> tuple[bool, frozenset[str], frozenset[str]]:
    """(says nothing/none, the step ids it names, the conditions it quotes) of a next-step answer.

    A backticked span with a space or a `{{var}}` in it is a condition (`{{mode}} == fast`,
    `tests.status == 'complete'`), compared with its spacing collapsed; any other is a step id (the
    steps that come next, what else they wait for, children they run)."""
    head = text.strip().split(":", 1)[0].strip().lower()
    ids, conditions = set(), set()
    for span in _TICKED.findall(text):
        if "{{" in span or any(ch.isspace() for ch in span):
            conditions.add(" ".join(span.split()))
        else:
            ids.add(span)
    return head in ("nothing", "none"), frozenset(ids), frozenset(conditions)


def ordered_ids(text: str) -> list[str]:
    """The backticked ids at the start of numbered lines, in order."""
    return _NUMBERED_ID.findall(text)


def _check_exact(case: TaskCase, gen: Generation) -> tuple[bool, dict[str, Any]]:
    ref = case.reference.get("content") or ""
    got = gen.content
    if case.task == "formula_next_step":
        want, have = next_step_key(ref), next_step_key(got)
        ok = want == have
        return ok, {
            "expected": {"none": want[0], "ids": sorted(want[1]), "conditions": sorted(want[2])},
            "got": {"none": have[0], "ids": sorted(have[1]), "conditions": sorted(have[2])},
        }
    want_ids, have_ids = ordered_ids(ref), ordered_ids(got)
    if case.task == "bead_triage" and not want_ids:
        ok = got.strip().lower().startswith("none") and not have_ids
        return ok, {"expected": [], "got": have_ids}
    return bool(want_ids) and want_ids == have_ids, {"expected": want_ids, "got": have_ids}


def requested_formula(case: TaskCase) -> tuple[str | None, str | None]:
    """(type, name) the authoring request asks for."""
    for m in reversed(case.prompt.messages):
        if m.get("role") == "user":
            found = _REQUEST.search(m.get("content") or "")
            if found:
                return found.group(1), found.group(2)
    return None, None


def _strip_fence(text: str) -> str:
    m = re.match(r"^\s*```[\w-]*\n(.*?)\n```\s*$", text, re.S)
    return m.group(1) if m else text


def _check_authoring(case: TaskCase, gen: Generation) -> tuple[bool, dict[str, Any]]:
    ftype, name = requested_formula(case)
    details: dict[str, Any] = {"requested_type": ftype, "requested_name": name}
    try:
        data = tomllib.loads(_strip_fence(gen.content))
    except tomllib.TOMLDecodeError as e:
        return False, {**details, "reason": f"not valid TOML: {e}"}
    try:
        parsed = parse_formula(data, name or "")
    except FormulaError as e:
        return False, {**details, "reason": f"{e.reason}: {e}"}
    if parsed["type"] != ftype:
        return False, {**details, "reason": f"type {parsed['type']!r}, requested {ftype!r}"}
    if data.get("formula") != name:
        return False, {**details, "reason": f"named {data.get('formula')!r}, requested {name!r}"}
    return True, details


_CHECKS = {"command": _check_command, "exact": _check_exact, "authoring": _check_authoring}


def score_case(case: TaskCase, gen: Generation) -> CaseScore:
    passed, details = _CHECKS[case.family](case, gen)
    if gen.truncated:
        details["prompt_truncated"] = True
    return CaseScore(case.case_id, case.task, case.family, passed, details)


def summarize(scores: Sequence[CaseScore]) -> dict[str, Any]:
    """Pass rates: overall (`suite_score`), per family and per task, with the case counts."""
    out: dict[str, Any] = {
        "cases": len(scores),
        "passed": sum(s.passed for s in scores),
        "suite_score": _rate(scores),
        "families": {},
        "tasks": {},
    }
    for fam in FAMILIES:
        sel = [s for s in scores if s.family == fam]
        if sel:
            out["families"][fam] = {
                "cases": len(sel),
                "passed": sum(s.passed for s in sel),
                "score": _rate(sel),
            }
            if fam == "command":
                valid = sum(1 for s in sel if s.details.get("valid"))
                out["families"][fam].update(valid=valid, validity=valid / len(sel))
    for task in sorted({s.task for s in scores}):
        sel = [s for s in scores if s.task == task]
        out["tasks"][task] = {"cases": len(sel), "passed": sum(s.passed for s in sel), "score": _rate(sel)}
    return out


def _rate(scores: Sequence[CaseScore]) -> float:
    return sum(s.passed for s in scores) / len(scores) if scores else 0.0
