"""Instruction pairs about beads: filing, updating, closing and linking issues with `bd`, and triage.

Input: document rows of source "beads" (dicts shaped like `documents.DOCUMENT_SCHEMA`, `meta` a JSON string
holding the bead row: id, title, description, status, priority, issue_type, labels, dependencies
[{issue_id, depends_on_id, type}], close_reason, parent, assignee, ...), already scrubbed.

Convention for commands: the assistant answers with a one-line explanation in `content` and one Bash tool
call (`examples.BASH_TOOL`, arguments {"command": ...}); such examples carry `tools=[BASH_TOOL]`. Every
command is built from flags of the real `bd` grammar (`gastown_ft/data/cli_grammar.json`):
`bd create [title] -t -p -l --parent --deps -d`, `bd update [id...] --claim/--status/--priority`,
`bd close [id...] --reason`, `bd dep add [issue-id] [depends-on-id] --type` (the second id is the one the
first depends on, i.e. its blocker; the type defaults to `blocks`).

Tasks:
- `bead_create`: the work described (title, first paragraph, type, priority in words, labels, parent,
  dependencies) -> `bd create ...`. Only for the types `bd create -t` accepts (bug, feature, task, epic,
  chore, decision); Gas Town's own types (agent, role, message, merge-request, convoy, molecule, ...) are
  created by `gt`, not by hand, and are skipped.
- `bead_update`: claim (`bd update <id> --claim`) for work someone took on; set a status (blocked,
  deferred) or a non-default priority.
- `bead_close`: closed beads with a close reason -> `bd close <id> --reason "..."` (not for mail, agent,
  role and rig beads, which `gt` closes itself).
- `bead_deps`: what a bead depends on (blocks told apart from parent-child, related, ...), what blocks it
  now, and recording each dependency with `bd dep add`.
- `bead_triage`: 4-8 work beads of one bead file, with their status, priority and `blocks` blockers ->
  which are ready, highest priority first. Ready follows `bd ready`: status `open` and every `blocks`
  blocker closed. A blocker outside the shown set is shown with its status when the data has it; a blocker
  whose status is unknown counts as open (conservative: `bd` would not call it ready either if the blocker
  existed and were open). The rule is stated in the prompt, so the answer follows from the prompt alone.
  Parent-child propagation (a child of a blocked parent is blocked) is not modelled; only `blocks` counts.

Machinery beads (`machinery.classify`: patrol digests, wisps, agent, merge-request and message beads,
plugin runs, convoys, ...) give no examples and are left out of triage sets with `machinery="exclude"`
(the default, `[corpus] machinery`): `gt` writes them, nobody files or closes them with `bd`, and patrols
leave thousands of near-identical ones. A close that machinery wrote on an ordinary bead (the reaper's
auto-close, a squash) gives no `bead_close` example either. Machinery beads still count as blockers of
the beads they block and are shown with their status. With `machinery="include"` only wisps are left
out, as before the filter existed.

Groups (the split unit): `bead:<id>` for single-bead tasks, `triage:<rig>:<k>` for triage sets (`(town)`
for town beads). A bead shown in a triage set may also appear in single-bead examples that land in another
split; the triage answer needs the whole set, and the set is not the single bead, so this leak of a title
and status is accepted.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shlex
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from gastown_ft.corpus.examples import BASH_TOOL, assistant, make_example, tool_call, user
from gastown_ft.corpus.machinery import MODES, classify, machinery_close
from gastown_ft.corpus.roles import role_from_actor

TASKS = ("bead_create", "bead_update", "bead_close", "bead_deps", "bead_triage")
CREATE_TYPES = ("bug", "feature", "task", "epic", "chore", "decision")  # `bd create -t` without config
DEP_TYPES = (
    "blocks",
    "tracks",
    "related",
    "parent-child",
    "discovered-from",
    "until",
    "caused-by",
    "validates",
    "relates-to",
    "supersedes",
)  # `bd dep add -t`
NOT_CLOSED_BY_HAND = frozenset({"message", "agent", "role", "rig"})
UPDATE_STATUSES = ("blocked", "deferred")
PRIORITY_WORDS = {0: "critical", 1: "high", 2: "medium", 3: "low", 4: "backlog"}
TOWN = "(town)"
TITLE_CHARS = 200
DESCRIPTION_CHARS = 400
REASON_CHARS = 300
MAX_DEP_RECORDS = 3
TRIAGE_MIN, TRIAGE_MAX = 4, 8

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/@+=-]*$")


# ---------------------------------------------------------------------------------------------------
# helpers


def _h(*parts: object) -> int:
    return int(hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:12], 16)


def _pick(options: tuple[str, ...], *key: object) -> str:
    return options[_h(*key) % len(options)]


def _flat(text: Any) -> str:
    return " ".join(str(text or "").split())


def _clip(text: str, budget: int) -> str:
    if len(text) <= budget:
        return text
    cut = text[:budget]
    end = cut.rfind(". ")
    if end > budget // 2:
        return cut[: end + 1]
    return cut.rsplit(" ", 1)[0].rstrip(",;:") + " …"


def first_paragraph(text: str, budget: int = DESCRIPTION_CHARS) -> str:
    """The first prose paragraph of a bead description (headings, code and tables skipped), one line."""
    for block in re.split(r"\n\s*\n", str(text or "").strip()):
        lines = [ln.strip() for ln in block.splitlines() if ln.strip()]
        while lines and lines[0].startswith("#"):
            lines = lines[1:]
        if not lines or lines[0].startswith(("```", "|", "<!--")):
            continue
        return _clip(_flat(" ".join(lines)), budget)
    return ""


def dq(text: str) -> str:
    """A shell word for `text`: double-quoted when that is safe, else shlex-quoted."""
    if re.search(r'["$`\\!]', text):
        return shlex.quote(text)
    return f'"{text}"'


def is_ephemeral(meta: dict[str, Any]) -> bool:
    """A wisp: an ephemeral molecule instance that `bd mol wisp`/`pour` made, not a bead filed by hand."""
    return bool(meta.get("ephemeral") or meta.get("wisp_type") or "-wisp-" in str(meta.get("id") or ""))


def priority_of(meta: dict[str, Any]) -> int | None:
    p = meta.get("priority")
    if isinstance(p, bool):
        return None
    if isinstance(p, int):
        return p if 0 <= p <= 4 else None
    if isinstance(p, str):
        m = re.fullmatch(r"[Pp]?([0-4])", p.strip())
        return int(m.group(1)) if m else None
    return None


def priority_words(p: int) -> str:
    return f"{PRIORITY_WORDS[p]} priority (P{p})"


def dependencies_of(meta: dict[str, Any]) -> list[tuple[str, str]]:
    """(type, depends_on_id) of a bead's own dependencies, in order, without duplicates."""
    out: list[tuple[str, str]] = []
    for d in meta.get("dependencies") or []:
        if not isinstance(d, dict):
            continue
        if d.get("issue_id") not in (None, meta.get("id")):
            continue
        target = d.get("depends_on_id")
        dtype = d.get("type") or "blocks"
        if not isinstance(target, str) or not _ID.match(target) or target == meta.get("id"):
            continue
        if (dtype, target) not in out:
            out.append((dtype, target))
    return out


def parent_of(meta: dict[str, Any]) -> str | None:
    for dtype, target in dependencies_of(meta):
        if dtype == "parent-child":
            return target
    parent = meta.get("parent")
    return parent if isinstance(parent, str) and _ID.match(parent) else None


def _meta(row: dict[str, Any]) -> dict[str, Any]:
    meta = row.get("meta")
    if isinstance(meta, str):
        return json.loads(meta) if meta else {}
    return dict(meta or {})


def _call_id(*key: object) -> str:
    return "call_" + hashlib.sha256("\x1f".join(map(str, key)).encode()).hexdigest()[:16]


def _bash(reply: str, command: str) -> dict[str, Any]:
    return assistant(reply, [tool_call(_call_id(command), "Bash", {"command": command})])


TITLE_CHARS = 120  # a bead's title as the index, triage prompts and answers show it


class _Bead(NamedTuple):
    """What the index and the triage sets read of a bead, and of its row what a triage example cites:
    a large database is held in this compact form while single-bead examples stream."""

    id: str
    status: Any  # as in the data (None when absent)
    title: str  # flattened and clipped to TITLE_CHARS
    priority: int | None  # priority_of
    blockers: tuple[str, ...]  # its `blocks` dependencies
    workable: bool  # a type `bd create -t` takes: it can be in a triage set
    doc_id: str
    mtime: float | None


def _bead(row: dict[str, Any], meta: dict[str, Any]) -> _Bead:
    status = meta.get("status")
    return _Bead(
        meta["id"],
        sys.intern(status) if isinstance(status, str) else status,
        _clip(_flat(meta.get("title")), TITLE_CHARS),
        priority_of(meta),
        tuple(t for k, t in dependencies_of(meta) if k == "blocks"),
        meta.get("issue_type") in CREATE_TYPES,
        row.get("doc_id"),
        row.get("mtime"),
    )


class _Index:
    """Bead lookups by id: the row of the same file first, then any file (first seen)."""

    def __init__(self) -> None:
        self.by_file: dict[str, dict[str, _Bead]] = {}
        self.any: dict[str, _Bead] = {}

    def add(self, path: str, bead: _Bead) -> None:
        self.by_file.setdefault(path, {}).setdefault(bead.id, bead)
        self.any.setdefault(bead.id, bead)

    def get(self, path: str, bead_id: str) -> _Bead | None:
        return self.by_file.get(path, {}).get(bead_id) or self.any.get(bead_id)

    def status(self, path: str, bead_id: str) -> Any:
        b = self.get(path, bead_id)
        return b.status if b else None

    def ref(self, path: str, bead_id: str) -> str:
        """`id` — title (status), or a note that the bead is not in the data."""
        b = self.get(path, bead_id)
        if b is None:
            return f"`{bead_id}` (not in this database; status unknown)"
        return f"`{bead_id}` — {b.title} ({b.status or 'status unknown'})"


# ---------------------------------------------------------------------------------------------------
# single-bead tasks


def create_spec(meta: dict[str, Any]) -> dict[str, Any] | None:
    """What a `bd create` of this bead states, or None when `bd create` cannot make it."""
    itype = meta.get("issue_type")
    title = _clip(_flat(meta.get("title")), TITLE_CHARS)
    if itype not in CREATE_TYPES or not title or not isinstance(meta.get("id"), str):
        return None
    return {
        "title": title,
        "type": itype,
        "priority": priority_of(meta),
        "labels": [x for x in meta.get("labels") or [] if isinstance(x, str) and _LABEL.match(x)],
        "parent": parent_of(meta),
        "deps": [(k, t) for k, t in dependencies_of(meta) if k in DEP_TYPES and k != "parent-child"],
        "description": first_paragraph(meta.get("description") or ""),
    }


def create_command(spec: dict[str, Any]) -> str:
    words = ["bd", "create", dq(spec["title"]), "-t", spec["type"]]
    if spec["priority"] is not None:
        words += ["-p", str(spec["priority"])]
    if spec["labels"]:
        words += ["-l", ",".join(spec["labels"])]
    if spec["parent"]:
        words += ["--parent", spec["parent"]]
    if spec["deps"]:
        words += ["--deps", ",".join(t if k == "blocks" else f"{k}:{t}" for k, t in spec["deps"])]
    if spec["description"]:
        words += ["-d", dq(spec["description"])]
    return " ".join(words)


_DEP_PHRASES = {
    "blocks": "blocked by",
    "discovered-from": "discovered while working on",
    "related": "related to",
    "relates-to": "related to",
    "tracks": "tracking",
    "caused-by": "caused by",
    "validates": "validating",
    "supersedes": "superseding",
    "until": "waiting until",
}


def _and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


# What else operators call the five priorities (the word alone must still give the number).
PRIORITY_SYNONYMS = {0: "urgent", 1: "important", 2: "normal", 3: "minor", 4: "someday"}


def _priority_phrase(p: int, key: str) -> str:
    """The priority as operators say it: "high priority (P1)", "P1", "priority 1", "p1", "prio 1",
    "high priority", "urgent (P0)", ..."""
    return _pick(
        (
            priority_words(p),
            f"P{p}",
            f"priority {p}",
            f"{PRIORITY_WORDS[p]}-priority (P{p})",
            f"{PRIORITY_WORDS[p]} (P{p})",
            f"p{p}",
            f"prio {p}",
            f"{PRIORITY_WORDS[p]} priority",
            f"{PRIORITY_SYNONYMS[p]} (P{p})",
        ),
        "prio",
        key,
    )


def _styled(text: str, key: str) -> str:
    """The request as typed: half as written, the rest in a quicker hand (lower-case start, no final
    full stop, ids without backticks), picked by `key`. Titles and ids keep their case."""
    style = _h("style", key) % 8
    if style >= 4:
        return text
    if style in (0, 2) and text[:1].isupper() and not text[1:2].isupper():
        text = text[0].lower() + text[1:]
    if style in (0, 1) and text.endswith(".") and not text.endswith(".."):
        text = text[:-1]
    if style in (2, 3):
        text = re.sub(r"`([A-Za-z0-9][A-Za-z0-9_.-]*)`", r"\1", text)
    return text


def create_request(spec: dict[str, Any], key: str) -> str:
    """The user's description of the work: every fact the command encodes, in prose, phrased in one of
    many ways (operators do not all say "Please open a P3 feature titled ..."), picked by `key`."""
    kind, title = spec["type"], spec["title"]
    prio = spec["priority"]
    if prio is None:
        what, tail = f"{_article(kind)} {kind}", ""
    else:
        phrase = _priority_phrase(prio, key)
        what = f"{_article(phrase)} {phrase} {kind}"
        tail = f" ({kind}, {phrase})"
    opener = _pick(
        (
            f"File {what}: {title}",
            f'Please open {what} titled "{title}"',
            f"We need a bead for this, {what}: {title}",
            f'Create {what} called "{title}"',
            f"Can you log {what}? {title}",
            f"New {kind} for the tracker: {title}{'' if prio is None else f' — P{prio}'}",
            f'Track this as {what}: "{title}"',
            f"Open a bead{tail}: {title}",
            f"I found something: {title}. File it as {what}",
            f"Add {what} to the backlog: {title}",
            f'Make a bead, type {kind}{"" if prio is None else f", priority P{prio}"}: "{title}"',
            f"Put {what} on the board — {title}",
            f"{title} — file that as {what}",
            f"{kind}{'' if prio is None else f', P{prio}'}: {title}",
            f"Can you file this? {title}. It's {what}",
            f"There's {what} to track: {title}",
            f"Write up {what} for this: {title}",
            f"Log it: {title}{tail}",
        ),
        "create",
        key,
    )
    lines = [opener.rstrip(".") + "."]
    if spec["description"]:
        lines.append(
            _pick(("{}", "Details: {}", "Context: {}", "{}"), "desc", key).format(spec["description"])
        )
    facts = []
    if spec["labels"]:
        labels = ", ".join(f"`{x}`" for x in spec["labels"])
        facts.append(
            _pick(
                (
                    f"label it {labels}",
                    f"labels: {labels}",
                    f"tag it {labels}",
                    f"with the label(s) {labels}",
                ),
                "labels",
                key,
            )
        )
    if spec["parent"]:
        parent = spec["parent"]
        facts.append(
            _pick(
                (
                    f"it goes under `{parent}`",
                    f"parent is `{parent}`",
                    f"it belongs to the epic `{parent}`",
                    f"make it a child of `{parent}`",
                ),
                "parent",
                key,
            )
        )
    by: dict[str, list[str]] = defaultdict(list)
    for k, t in spec["deps"]:
        by[k].append(f"`{t}`")
    for k, ids in by.items():
        if k == "blocks":
            facts.append(
                _pick(
                    (
                        f"it is blocked by {_and(ids)}",
                        f"it depends on {_and(ids)}",
                        f"it can't start before {_and(ids)} is done",
                        f"{_and(ids)} must land first",
                    ),
                    "blocks",
                    key,
                )
            )
        else:
            facts.append(f"it is {_DEP_PHRASES.get(k, k + ' of')} {_and(ids)}")
    if facts:
        # "; " between facts: "goes under A, B and C must land first" would read as three parents
        joined = "; ".join(facts)
        lines.append(joined[0].upper() + joined[1:] + ".")
    return _styled(_pick(("\n\n", "\n\n", " "), "join", key).join(lines), key)


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _deps_answer(bead_id: str, deps: list[tuple[str, str]], path: str, index: _Index) -> str:
    lines = []
    for k, t in deps:
        ref = index.ref(path, t)
        if k == "blocks":
            lines.append(f"- blocked by {ref}")
        elif k == "parent-child":
            lines.append(f"- child of {ref} (its parent; this does not block it)")
        else:
            lines.append(f"- {_DEP_PHRASES.get(k, k)} {ref} ({k}; not a blocker)")
    n = len(deps)
    head = f"`{bead_id}` has {n} dependenc{'y' if n == 1 else 'ies'}:"
    return head + "\n" + "\n".join(lines)


def _blocking_answer(bead_id: str, blockers: list[str], path: str, index: _Index) -> str:
    still = [b for b in blockers if index.status(path, b) != "closed"]
    done = [b for b in blockers if b not in still]
    if still:
        out = f"`{bead_id}` is blocked by:\n" + "\n".join(f"- {index.ref(path, b)}" for b in still)
        if done:
            out += "\n\nAlready closed: " + ", ".join(f"`{b}`" for b in done) + "."
        return out
    return (
        f"Nothing any more: every bead that blocked `{bead_id}` is closed ("
        + ", ".join(f"`{b}`" for b in done)
        + ")."
    )


def _record_request(a: str, k: str, b: str, key: str) -> str:
    if k == "blocks":
        return _styled(
            _pick(
                (
                    f"Record that `{a}` is blocked by `{b}`.",
                    f"`{a}` can't start until `{b}` is done; record that.",
                    f"`{a}` depends on `{b}`: add the dependency.",
                    f"Block `{a}` on `{b}`.",
                    f"`{b}` has to be finished before `{a}`. Record it.",
                ),
                "dep",
                key,
                b,
            ),
            f"{key}:{b}",
        )
    if k == "parent-child":
        return _styled(
            _pick(
                (
                    f"Make `{a}` a child of `{b}`.",
                    f"`{a}` belongs under the epic `{b}`.",
                    f"Put `{a}` under `{b}` as its child.",
                    f"`{b}` is the parent of `{a}`; record that.",
                ),
                "child",
                key,
                b,
            ),
            f"{key}:{b}",
        )
    if k == "discovered-from":
        return f"Record that `{a}` was discovered while working on `{b}`."
    if k in ("related", "relates-to"):
        return f"Link `{a}` to `{b}` as related ({k})."
    if k == "tracks":
        return f"Record that `{a}` tracks `{b}`."
    return f"Add a `{k}` dependency from `{a}` on `{b}`."


def dep_add_command(a: str, k: str, b: str) -> str:
    return f"bd dep add {a} {b}" + ("" if k == "blocks" else f" --type {k}")


def _single(
    row: dict[str, Any], meta: dict[str, Any], index: _Index, *, machinery_closes: bool = True
) -> Iterator[dict[str, Any]]:
    bead_id = meta["id"]
    path = row.get("path") or ""
    rig = row.get("rig")
    itype = meta.get("issue_type")
    status = meta.get("status")
    title = _clip(_flat(meta.get("title")), TITLE_CHARS)
    common = {
        "group_id": f"bead:{bead_id}",
        "source_ids": [row["doc_id"]],
        "rig": rig,
        "quality": 1.0,
        "source_time": row.get("mtime") or 0.0,
    }

    def ex(task: str, messages: list[dict[str, Any]], role: str | None, tools: bool = True) -> dict[str, Any]:
        return make_example(
            task=task, messages=messages, role=role, tools=[BASH_TOOL] if tools else None, **common
        )

    # bead_create (role: whoever filed it, when the creator is an agent address)
    spec = create_spec(meta)
    if spec is not None:
        cmd = create_command(spec)
        reply = (
            f"Filing it as a P{spec['priority']} {spec['type']}."
            if spec["priority"] is not None
            else f"Filing it as a {spec['type']}."
        )
        creator_role = role_from_actor(meta.get("created_by"))[0]
        yield ex("bead_create", [user(create_request(spec, bead_id)), _bash(reply, cmd)], creator_role)

    # bead_update (role: the assignee's)
    role = row.get("role")
    if itype in CREATE_TYPES:
        if status in ("in_progress", "hooked") or (status == "closed" and meta.get("assignee")):
            q = _pick(
                (
                    f"Claim `{bead_id}`, you are starting on it.",
                    f"`{bead_id}` ({title}) is yours now. Claim it and start.",
                    f"Take `{bead_id}`: mark it as yours and in progress.",
                    f"Assign `{bead_id}` to yourself and start on it.",
                    f"Start work on `{bead_id}` (claim it first).",
                ),
                "claim",
                bead_id,
            )
            reply = f"Claiming `{bead_id}`: that makes me its assignee and moves it to in_progress."
            yield ex(
                "bead_update",
                [user(_styled(q, f"claim:{bead_id}")), _bash(reply, f"bd update {bead_id} --claim")],
                role,
            )
        if status in UPDATE_STATUSES:
            q = (
                _pick(
                    (
                        f"Mark `{bead_id}` as {status}.",
                        f"`{bead_id}` is stuck, set it to blocked.",
                        f"Flag `{bead_id}` as blocked.",
                        f"`{bead_id}` can't move right now: status blocked.",
                    ),
                    "blocked",
                    bead_id,
                )
                if status == "blocked"
                else _pick(
                    (
                        f"Defer `{bead_id}` for now.",
                        f"Park `{bead_id}`, we'll get back to it later (defer it).",
                        f"`{bead_id}` can wait: mark it deferred.",
                        f"Put `{bead_id}` on hold (deferred).",
                    ),
                    "defer",
                    bead_id,
                )
            )
            cmd = f"bd update {bead_id} --status {status}"
            yield ex(
                "bead_update",
                [user(_styled(q, f"status:{bead_id}")), _bash(f"Setting `{bead_id}` to {status}.", cmd)],
                role,
            )
        p = priority_of(meta)
        if p is not None and p != 2:
            q = _pick(
                (
                    f"Make `{bead_id}` {priority_words(p)}.",
                    f"Bump `{bead_id}` to P{p}.",
                    f"Change the priority of `{bead_id}` to {p}.",
                    f"`{bead_id}` should be {_priority_phrase(p, bead_id)}; update it.",
                    f"Set {bead_id} to priority P{p}.",
                    f"`{bead_id}`: priority {p} please.",
                    f"{'Raise' if p < 2 else 'Lower'} `{bead_id}` to {_priority_phrase(p, 'u' + bead_id)}.",
                ),
                "update-prio",
                bead_id,
            )
            cmd = f"bd update {bead_id} --priority {p}"
            yield ex(
                "bead_update",
                [user(_styled(q, f"prio:{bead_id}")), _bash(f"Setting `{bead_id}` to P{p}.", cmd)],
                role,
            )

    # bead_close (role left open: in Gas Town the refinery, not the assignee, closes merged work)
    reason = _flat(meta.get("close_reason"))
    if (
        status == "closed"
        and reason
        and reason.lower() not in ("closed", "close", "done")
        and len(reason) <= REASON_CHARS
        and itype not in NOT_CLOSED_BY_HAND
        and (machinery_closes or machinery_close(meta) is None)
    ):
        cmd = f"bd close {bead_id} --reason {dq(reason)}"
        yield ex(
            "bead_close",
            [
                user(
                    _styled(
                        _pick(
                            (
                                f"Close `{bead_id}`: {reason}",
                                f"`{bead_id}` is done. Reason: {reason}",
                                f'Please close {bead_id} with the reason "{reason}".',
                                f"We can close `{bead_id}` ({reason}).",
                                f"Done with `{bead_id}` — {reason}. Close it.",
                                f"`{bead_id}` can be closed, reason: {reason}",
                            ),
                            "close",
                            bead_id,
                        ),
                        f"close:{bead_id}",
                    )
                ),
                _bash(f"Closing `{bead_id}`.", cmd),
            ],
            None,
        )

    # bead_deps
    deps = dependencies_of(meta)
    if deps:
        q = _pick(
            (f"What does `{bead_id}` depend on?", f"Show me the dependencies of `{bead_id}`."),
            "deps",
            bead_id,
        )
        yield ex(
            "bead_deps", [user(q), assistant(_deps_answer(bead_id, deps, path, index))], None, tools=False
        )
        blockers = [t for k, t in deps if k == "blocks"]
        if blockers:
            q = f"What is blocking `{bead_id}`?"
            yield ex(
                "bead_deps",
                [user(q), assistant(_blocking_answer(bead_id, blockers, path, index))],
                None,
                tools=False,
            )
        for k, t in [d for d in deps if d[0] in DEP_TYPES][:MAX_DEP_RECORDS]:
            cmd = dep_add_command(bead_id, k, t)
            reply = f"Adding the dependency: `{bead_id}` depends on `{t}` ({k})."
            yield ex("bead_deps", [user(_record_request(bead_id, k, t, bead_id)), _bash(reply, cmd)], None)


# ---------------------------------------------------------------------------------------------------
# triage


def triage_answer(beads: list[_Bead], path: str, index: _Index) -> str:
    """Ready beads (open, every blocks-blocker closed; unknown counts as open), by priority."""
    ready: list[tuple[int, int, _Bead]] = []
    not_ready: list[str] = []
    for pos, m in enumerate(beads):
        status = m.status or "unknown"
        open_blockers = [b for b in m.blockers if index.status(path, b) != "closed"]
        if status != "open":
            not_ready.append(f"`{m.id}` is {status}")
        elif open_blockers:
            not_ready.append(f"`{m.id}` is blocked by " + _and([f"`{b}`" for b in open_blockers]))
        else:
            p = m.priority
            ready.append((5 if p is None else p, pos, m))
    ready.sort(key=lambda x: (x[0], x[1]))
    if ready:
        lines = [
            f"{i}. `{m.id}`" + (f" (P{p})" if p < 5 else "") + f" — {m.title}"
            for i, (p, _, m) in enumerate(ready, 1)
        ]
        out = "Ready to work on, highest priority first:\n" + "\n".join(lines)
    else:
        out = "None of them is ready."
    if not_ready:
        out += "\n\nNot ready: " + "; ".join(not_ready) + "."
    return out


def _triage_line(m: _Bead, path: str, index: _Index) -> str:
    p = m.priority
    facts = f"{m.status or 'unknown'}" + (f", P{p}" if p is not None else "")
    line = f"- `{m.id}` [{facts}] {m.title}"
    blockers = m.blockers
    if blockers:
        shown = []
        for b in blockers:
            st = index.status(path, b)
            shown.append(f"`{b}` ({st or 'status unknown'})")
        line += " — blocked by " + ", ".join(shown)
    return line


TRIAGE_RULE = (
    "A bead is ready when its status is open and every bead blocking it is closed; "
    "a blocker whose status is unknown counts as still open."
)


def _triage_sets(pool: list[_Bead], n_sets: int, rng: random.Random) -> list[list[_Bead]]:
    """Up to n_sets distinct sets of 4-8 beads, mixing unfinished and closed beads and blocked ones."""
    if len(pool) < TRIAGE_MIN or n_sets <= 0:
        return []
    by_id = {m.id: m for m in pool}
    unfinished = [m for m in pool if m.status != "closed"]
    closed = [m for m in pool if m.status == "closed"]
    with_blockers = [m for m in pool if m.blockers]
    seen: set[frozenset[str]] = set()
    out: list[list[_Bead]] = []
    for _ in range(n_sets * 6):
        if len(out) >= n_sets:
            break
        size = rng.randint(TRIAGE_MIN, min(TRIAGE_MAX, len(pool)))
        chosen: dict[str, _Bead] = {}
        if with_blockers and rng.random() < 0.6:
            anchor = rng.choice(with_blockers)
            chosen[anchor.id] = anchor
            for b in anchor.blockers[:2]:
                if b in by_id and len(chosen) < size:
                    chosen[b] = by_id[b]
        want_unfinished = (size * 3 + 4) // 5  # about 60% unfinished, so answers are not all "none"
        for source, limit in ((unfinished, want_unfinished), (closed, size), (pool, size)):
            candidates = [m for m in source if m.id not in chosen]
            rng.shuffle(candidates)
            for m in candidates:
                if len(chosen) >= limit:
                    break
                chosen[m.id] = m
        key = frozenset(chosen)
        if len(chosen) < TRIAGE_MIN or key in seen:
            continue
        seen.add(key)
        beads = list(chosen.values())
        rng.shuffle(beads)
        out.append(beads)
    return out


def _triage(
    files: dict[tuple[str | None, str], list[_Bead]],
    index: _Index,
    triage_sets: int,
    seed: int,
) -> Iterator[dict[str, Any]]:
    counters: dict[str, int] = defaultdict(int)
    for (rig, path), beads in files.items():
        # by id: a bead's first place, its last row
        pool = list({m.id: m for m in beads if m.workable}.values())
        rng = random.Random(f"{seed}:{rig}:{path}")
        scope = rig or TOWN
        where = f"the rig `{rig}`" if rig else "the town"
        for chosen in _triage_sets(pool, triage_sets, rng):
            k = counters[scope]
            counters[scope] += 1
            prompt = (
                f"Beads from {where}:\n"
                + "\n".join(_triage_line(m, path, index) for m in chosen)
                + f"\n\nWhich of these beads are ready to work on? {TRIAGE_RULE}"
            )
            yield make_example(
                task="bead_triage",
                messages=[user(prompt), assistant(triage_answer(chosen, path, index))],
                group_id=f"triage:{scope}:{k}",
                source_ids=[m.doc_id for m in chosen],
                rig=rig,
                role=None,
                quality=1.0,
                source_time=max((m.mtime or 0.0) for m in chosen),
            )


# ---------------------------------------------------------------------------------------------------
# the builder


def _bead_rows(rows: Iterable[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for row in rows:
        if row.get("source", "beads") != "beads":
            continue
        meta = _meta(row)
        if not isinstance(meta.get("id"), str) or not meta["id"] or meta.get("status") == "tombstone":
            continue
        yield row, meta


def build_bead_examples(
    rows: Iterable[dict[str, Any]], *, triage_sets: int = 20, seed: int = 0, machinery: str = "exclude"
) -> Iterator[dict[str, Any]]:
    """Chat examples about the beads in `rows` (document rows of source "beads", scrubbed).

    Single-bead examples come first, in row order, then up to `triage_sets` triage sets per bead file
    (drawn with `seed`). Deterministic: the same rows and arguments give the same examples.
    `machinery` ("exclude" / "include", see the module doc) decides whether machinery beads and
    machinery closes give examples.

    `rows` is read twice (first for the index of every bead, then for the examples) unless it is a
    one-shot iterator, which is first materialized; a re-iterable that reads from disk keeps only the
    compact index in memory.

    Split note: single-bead examples are grouped by `bead:<id>`, triage sets by `triage:<rig>:<k>`, so a
    bead shown in a triage set may also be the subject of single-bead examples in another split.
    """
    if machinery not in MODES:
        raise ValueError(f"machinery must be one of {MODES}, not {machinery!r}")
    if isinstance(rows, Iterator):
        rows = list(rows)
    include = machinery == "include"
    shared: list[_Bead] = []
    left_out: list[bool] = []
    paths: dict[str, str] = {}  # one string per file, not one per row
    index = _Index()  # machinery included: it can block other beads
    for row, meta in _bead_rows(rows):
        bead = _bead(row, meta)
        shared.append(bead)
        left_out.append(is_ephemeral(meta) if include else classify(meta) is not None)
        path = row.get("path") or ""
        index.add(paths.setdefault(path, path), bead)
    files: dict[tuple[str | None, str], list[_Bead]] = defaultdict(list)
    for i, (row, meta) in enumerate(_bead_rows(rows)):
        if left_out[i]:
            continue
        yield from _single(row, meta, index, machinery_closes=include)
        files[(row.get("rig"), row.get("path") or "")].append(shared[i])
    del shared
    yield from _triage(files, index, triage_sets, seed)
