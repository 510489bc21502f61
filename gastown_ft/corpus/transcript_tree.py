"""The main thread of a Claude Code session, rebuilt across compactions and rewinds.

Lines link to their parent by `parentUuid`. A compaction writes a `compact_boundary` line with no
parent and a `logicalParentUuid` (the last line before it), then the summary (`isCompactSummary`).
Three shapes occur in real files:

- plain: the conversation goes on from the summary; the boundary's logical parent is the history.
- preserved segment (`compactMetadata.preservedSegment` / `preservedMessages`): the last few turns
  are kept after the summary. On disk the conversation may go on from the preserved tail, so the
  boundary and summary hang off the thread; or the tail is written again after the summary, so the
  logical parent points *forward* into the part after the boundary, which makes a loop if followed
  blindly. The preserved uuids say where each preserved line came from.
- a logical parent that points forward with nothing to say where it came from: the thread cannot be
  rebuilt, and the session is quarantined rather than shortened.

The result is the chain of line indices, oldest first; every boundary on it starts a new context
(epoch), and the preserved lines of each boundary are what the model saw again after it.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

MAX_PRESERVED = 10_000  # a preserved segment walked from its tail stops after this many lines


@dataclass
class Timeline:
    chain: array  # line indices, oldest first
    boundaries: list[int] = field(default_factory=list)  # compact boundaries on the chain, in order
    preserved: dict[int, list[int]] = field(default_factory=dict)  # boundary -> preserved lines
    notes: list[str] = field(default_factory=list)
    problem: str | None = None  # why the thread cannot be rebuilt (the session is quarantined)
    line_order: bool = False  # no line links to a parent: read in file order


def _walk(start: int, parent: array, main: bytearray, visited: bytearray) -> tuple[list[int], int]:
    """Lines from `start` back through physical parents, oldest first, and where the walk stopped."""
    out: list[int] = []
    i = start
    while i != -1 and main[i] and not visited[i]:
        visited[i] = 1
        out.append(i)
        i = parent[i]
    out.reverse()
    return out, i


def _history(
    b: int,
    start: int,
    parent: array,
    main: bytearray,
    visited: bytearray,
    preserved: list[int],
    after: set[int],
) -> tuple[list[int], set[int], str | None]:
    """The history before boundary `b`, from its logical parent back; lines of `preserved` found after
    the boundary are moved back to where they were first said."""
    pos = {p: k for k, p in enumerate(preserved)}
    out: list[int] = []
    moved: set[int] = set()
    i = start
    while i != -1 and main[i]:
        if visited[i]:
            if i in after and i in pos and i not in moved:
                moved.add(i)
                out.append(i)
                i = preserved[pos[i] - 1] if pos[i] > 0 else -1
                continue
            if i in after:
                return [], set(), "logical_parent_loop"
            break  # reached a line of the thread already placed (an earlier epoch): a join
        visited[i] = 1
        out.append(i)
        p = parent[i]
        if i in pos and pos[i] > 0 and (p == -1 or p in after or p == b):
            p = preserved[pos[i] - 1]  # a preserved line relinked after the boundary
        i = p
    out.reverse()
    return out, moved, None


def _preserved_lines(
    b: int, uuids: list[int], head: int, tail: int, parent: array, main: bytearray
) -> list[int]:
    if uuids:
        return uuids
    if tail == -1 or head == -1:
        return []
    out, i = [tail], tail
    while i != head and len(out) < MAX_PRESERVED:
        i = parent[i]
        if i == -1 or i == b or not main[i]:
            return []
        out.append(i)
    out.reverse()
    return out


def rebuild_main(
    n: int,
    parent: array,
    main: bytearray,
    is_boundary: bytearray,
    logical: dict[int, int],
    preserved: dict[int, tuple[list[int], int, int]],
    leaf: int,
    linked: bool,
    talk: bytearray | None = None,
) -> Timeline:
    """The main thread ending at `leaf`.

    `main[i]` is 1 for lines of the main conversation (not sidechains); `logical[b]` is the index of
    boundary b's logical parent (-1 when it is not in the file); `preserved[b]` is (listed preserved
    lines, head, tail) from its compact metadata; `linked` is False when no line has a parent link;
    `talk[i]` is 1 for a message that is not part of a compaction (a boundary whose subtree holds one
    is on an abandoned branch, and is not spliced in)."""
    if not linked:
        chain = array("l", (i for i in range(n) if main[i]))
        t = Timeline(chain, line_order=True)
        t.notes.append("no line links to a parent (an old or converted session): read in line order")
        return t
    visited = bytearray(n)
    chain_list, stop = _walk(leaf, parent, main, visited)
    t = Timeline(array("l"))
    if stop != -1 and visited[stop]:
        t.notes.append("parent links form a cycle: the thread starts where the cycle closes")
    spans: dict[int, list[int]] = {}
    # Boundaries at the root of the chain: prepend the history their logical parent leads to.
    while chain_list and is_boundary[chain_list[0]]:
        b = chain_list[0]
        uuids, head, tail = preserved.get(b, ([], -1, -1))
        lines = _preserved_lines(b, uuids, head, tail, parent, main)
        start = logical.get(b, -1)
        if start == -1:
            t.notes.append(
                "a compact boundary's logical parent is not in the file: history before it unknown"
            )
            break
        after = set(chain_list)
        hist, moved, problem = _history(b, start, parent, main, visited, lines, after)
        if problem:
            t.problem = problem
            return t
        spans[b] = lines
        chain_list = hist + [i for i in chain_list if i not in moved]
    # Boundaries hanging off the chain at their logical parent (the conversation went on from the
    # preserved tail): splice the boundary and its summary in after that parent.
    on = set(chain_list)
    pending = {logical[b]: b for b in logical if main[b] and not visited[b] and logical[b] in on}
    if pending:
        children: dict[int, int] = {}
        for i in range(n):  # the newest child of each line off the chain, to follow a boundary's subtree
            p = parent[i]
            if p != -1 and main[i] and not visited[i]:
                children[p] = i
        out: list[int] = []
        for i in chain_list:
            out.append(i)
            b = pending.get(i)
            if b is None:
                continue
            sub, j = [], b
            while j != -1 and not visited[j] and len(sub) < MAX_PRESERVED:
                sub.append(j)
                j = children.get(j, -1)
            if talk is not None and any(talk[k] for k in sub):
                t.notes.append("a compaction on an abandoned branch is left out")
                continue
            uuids, head, tail = preserved.get(b, ([], -1, -1))
            spans[b] = _preserved_lines(b, uuids, head, tail, parent, main)
            for k in sub:
                visited[k] = 1
            out.extend(sub)
        chain_list = out
    t.chain = array("l", chain_list)
    t.boundaries = [i for i in chain_list if is_boundary[i]]
    t.preserved = {b: [p for p in spans.get(b, []) if p != b] for b in t.boundaries}
    return t
