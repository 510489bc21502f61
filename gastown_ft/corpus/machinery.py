"""Which beads Gas Town's machinery wrote, as opposed to work an agent filed, took on or closed.

Patrols, molecules, mail, the merge queue and the dogs all write beads through `gt`: a patrol leaves a
root wisp and its step wisps, `gt mol squash` leaves a digest ("Digest: mol-deacon-patrol", closed
"Squashed from 12 wisps"), `gt mail send` a message bead, `gt done` a merge-request bead, `gt sling`
an agent bead, a dog a plugin-run report. Nobody types `bd create` or `bd close` for these, so they are
not agent behaviour to learn, and in a real town they are a large share of all beads.

Rules, first match wins (field names as `bd export` and the `bd backup` issue rows write them; see
../shared/gastown-samples/gastown/docs/design/dolt-storage.md and mail-protocol.md):

| kind            | rule                                                                               |
|-----------------|------------------------------------------------------------------------------------|
| `digest`        | title `Digest: ...`, or close reason `Squashed from N wisps`                       |
| `agent`         | issue type agent / role / rig, or label `gt:agent` / `gt:role` / `gt:rig`          |
| `merge_request` | issue type merge-request, label `gt:merge-request`, or title `Merge: <bead id>`    |
| `message`       | issue type message, label `gt:message` or `delivery:*`, a mail-protocol subject    |
|                 | (POLECAT_DONE, MERGE_FAILED, WORK_DONE, DOG_DONE, HANDOFF: ...), `<role> Handoff`  |
| `plugin_run`    | label `type:plugin-run`, labels `plugin:*` with `result:*`, a plugin-run title,    |
|                 | or created by a dog (dogs file only their plugin reports)                          |
| `convoy`, ...   | the other types `gt` manages: convoy, molecule, gate, slot, queue, event, channel, |
|                 | group (issue type, or label `gt:<type>`)                                           |
| `patrol`        | title `mol-<name>-patrol`, or wisp type `patrol`                                   |
| `molecule`      | title `mol-<name>` (a poured formula's root), or a molecule type set               |
| `wisp`          | `ephemeral` set, a wisp type set, or an id with `-wisp-` / `-eph-`                 |

Separately, a close reason can be machinery on an ordinary bead: the reaper's `stale:auto-closed by
reaper`, a squash, a patrol cycle, a burned wisp. Such a bead stays agent work, but its close does not.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from gastown_ft.corpus.roles import role_from_actor

MODES = ("exclude", "include")

AGENT_TYPES = frozenset({"agent", "role", "rig"})
MANAGED_TYPES = frozenset({"convoy", "molecule", "gate", "slot", "queue", "event", "channel", "group"})

_DIGEST_TITLE = re.compile(r"^Digest:\s")
_SQUASH_REASON = re.compile(r"^Squashed from \d+ wisps?\b", re.IGNORECASE)
_MR_TITLE = re.compile(r"^Merge: [A-Za-z0-9][A-Za-z0-9_.-]*$")
# mail-protocol.md subjects; the bare words (MERGED, HANDOFF) only in their exact subject forms.
_MAIL_SUBJECT = re.compile(
    r"^(?:🤝\s*)?(?:"
    r"(?:POLECAT_DONE|MERGE_READY|MERGE_FAILED|REWORK_REQUEST|RECOVERED_BEAD|RECOVERY_NEEDED"
    r"|WORK_DONE|DOG_DONE)\b"
    r"|MERGED [A-Za-z0-9_./-]+$"
    r"|HANDOFF:"
    r")"
)
_ROLE_HANDOFF = re.compile(
    r"^(?:mayor|deacon|witness|refinery|polecat|crew|dog|boot) Handoff$", re.IGNORECASE
)
_PLUGIN_TITLE = re.compile(r"^(?:Plugin run:|Plugin Result:|\[PLUGIN\])", re.IGNORECASE)
_MOL_TITLE = re.compile(r"^mol-[a-z0-9][a-z0-9-]*$")
_WISP_ID = re.compile(r"-(?:wisp|eph)-")

# Close reasons that machinery writes (the bead itself may be ordinary work).
_MACHINERY_CLOSES = (
    ("squash", _SQUASH_REASON),
    ("reaper", re.compile(r"^stale:auto-closed by reaper\b", re.IGNORECASE)),
    ("patrol", re.compile(r"^patrol cycle complete\b", re.IGNORECASE)),
    ("burn", re.compile(r"^burned:", re.IGNORECASE)),
)


def _text(v: Any) -> str:
    return v.strip() if isinstance(v, str) else ""


def _truthy(v: Any) -> bool:
    """`ephemeral` is true/false in exports and 0/1 in backup rows."""
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return v != 0
    return isinstance(v, str) and v.strip().lower() in ("1", "true", "yes")


def _labels(meta: dict[str, Any]) -> set[str]:
    return {x for x in meta.get("labels") or [] if isinstance(x, str)}


def classify(meta: dict[str, Any]) -> str | None:
    """The machinery kind of a bead (see the module table), or None for agent work."""
    title = _text(meta.get("title"))
    itype = _text(meta.get("issue_type")).lower()
    labels = _labels(meta)
    if _DIGEST_TITLE.match(title) or _SQUASH_REASON.match(_text(meta.get("close_reason"))):
        return "digest"
    if itype in AGENT_TYPES or labels & {f"gt:{t}" for t in AGENT_TYPES}:
        return "agent"
    if itype == "merge-request" or "gt:merge-request" in labels or _MR_TITLE.match(title):
        return "merge_request"
    if (
        itype == "message"
        or "gt:message" in labels
        or any(x.startswith("delivery:") for x in labels)
        or _MAIL_SUBJECT.match(title)
        or _ROLE_HANDOFF.match(title)
    ):
        return "message"
    if (
        "type:plugin-run" in labels
        or (any(x.startswith("plugin:") for x in labels) and any(x.startswith("result:") for x in labels))
        or _PLUGIN_TITLE.match(title)
        or role_from_actor(meta.get("created_by"))[0] in ("dog", "boot")
    ):
        return "plugin_run"
    managed = (
        itype
        if itype in MANAGED_TYPES
        else next((t for t in sorted(MANAGED_TYPES) if f"gt:{t}" in labels), None)
    )
    if managed:
        return managed
    wisp_type = _text(meta.get("wisp_type")).lower()
    if (_MOL_TITLE.match(title) and title.endswith("-patrol")) or wisp_type == "patrol":
        return "patrol"
    if _MOL_TITLE.match(title) or _text(meta.get("mol_type")):
        return "molecule"
    if _truthy(meta.get("ephemeral")) or wisp_type or _WISP_ID.search(_text(meta.get("id"))):
        return "wisp"
    return None


def machinery_close(meta: dict[str, Any]) -> str | None:
    """Which machinery closed the bead ("squash", "reaper", "patrol", "burn"), or None."""
    if meta.get("status") != "closed":
        return None
    reason = _text(meta.get("close_reason"))
    return next((name for name, pattern in _MACHINERY_CLOSES if pattern.match(reason)), None)


def summarize(metas: Iterable[dict[str, Any]], mode: str) -> dict[str, Any]:
    """The counts the pairs report shows: beads, machinery beads by kind, machinery closes of the rest."""
    beads = 0
    kinds: Counter = Counter()
    closes: Counter = Counter()
    for meta in metas:
        beads += 1
        kind = classify(meta)
        if kind:
            kinds[kind] += 1
        else:
            close = machinery_close(meta)
            if close:
                closes[close] += 1
    return {
        "mode": mode,
        "beads": beads,
        "machinery": sum(kinds.values()),
        "by_kind": dict(kinds.most_common()),
        "machinery_closes": dict(closes.most_common()),
    }


def summarize_documents(docs: pa.Table, mode: str) -> dict[str, Any]:
    """`summarize` over the bead rows of a documents table (DOCUMENT_SCHEMA), a chunk at a time."""
    beads = docs.filter(pc.equal(docs.column("source"), "beads")).column("meta")
    metas = (json.loads(m) if m else {} for chunk in beads.chunks for m in chunk.to_pylist())
    return summarize(metas, mode)
