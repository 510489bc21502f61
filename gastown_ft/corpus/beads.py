"""Beads: `bd export` JSONL (`issues.jsonl`) and `bd backup` directories.

An export row carries its labels, dependencies and comments inline. A backup directory holds the
flat SQL-column rows in `issues.jsonl` and the rest in `dependencies.jsonl`, `labels.jsonl`,
`comments.jsonl` and `events.jsonl`; the reader joins them by issue id. Tombstones (deleted issues
in old exports) are left out and counted.

Rows are checked before use: a field of the wrong type (a numeric title, an unknown status) quarantines
the row as `invalid_<field>`. An id seen more than once in a file is resolved, not quarantined wholesale:
identical repeats are counted as deduplicated (`identical_duplicate_row`), and of differing versions the
newest `updated_at` is kept (the later line on a tie) while each other version is quarantined as
`superseded_version` with its line, so conflicts show up in the quarantine report.

An id in several files (a rig's export and the town's, an old tracked `issues.jsonl` beside the
`bd backup` dump) is resolved the same way across files: the same version (the same `updated_at` and
no field that both copies fill differently; an export and a backup row of one version differ only in
layout) is counted as `identical_duplicate_in_other_file`; otherwise the newest `updated_at` is kept
and each older copy is quarantined as `superseded_version`, naming the file kept. Of copies with the
same `updated_at`, the one in the bead's home (where the town's routes.jsonl sends its prefix) is kept,
then a backup row (the database's own dump, with its events), then the first file in path order.

A bead's rig is the one its id prefix routes to (scan.bead_provenance), else its file's.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from gastown_ft.corpus.documents import Document, ReadLog
from gastown_ft.corpus.files import file_mtime, iter_jsonl, os_error_reason
from gastown_ft.corpus.roles import role_from_actor
from gastown_ft.corpus.scan import TownScan

SOURCE = "beads"
BACKUP_SIDE_FILES = ("dependencies", "labels", "comments", "events")
TEXT_FIELDS = ("description", "design", "acceptance_criteria", "notes")
EVENT_VALUE_CHARS = 400  # events carry whole issue snapshots; keep a readable slice


def is_issues_file(path: Path) -> bool:
    return path.name == "issues.jsonl"


def is_backup_dir(directory: Path) -> bool:
    return (directory / "backup_state.json").exists() or (directory / "dependencies.jsonl").exists()


def _clip(v: Any) -> Any:
    if isinstance(v, str) and len(v) > EVENT_VALUE_CHARS:
        return v[:EVENT_VALUE_CHARS] + "…"
    return v


def _load_side_tables(directory: Path, scan: TownScan, log: ReadLog) -> dict[str, dict[str, list[dict]]]:
    tables: dict[str, dict[str, list[dict]]] = {}
    for name in BACKUP_SIDE_FILES:
        path = directory / f"{name}.jsonl"
        by_issue: dict[str, list[dict]] = defaultdict(list)
        if path.exists():
            rel = scan.rel(path)
            rig, _ = scan.provenance(path)
            for lineno, row in iter_jsonl(path, log, SOURCE, max_bytes=scan.max_bytes, rel=rel, rig=rig):
                issue_id = row.get("issue_id")
                if not isinstance(issue_id, str):
                    log.quarantine(
                        SOURCE,
                        rel,
                        "missing_issue_id",
                        f"line {lineno} has no issue_id",
                        rig=rig,
                        line=lineno,
                    )
                    continue
                if name == "events":
                    row = {k: _clip(v) for k, v in row.items()}
                by_issue[issue_id].append(row)
        tables[name] = by_issue
    return tables


def render_bead(b: dict[str, Any]) -> str:
    """A readable rendering of a bead, the text the corpus sees."""
    lines = [f"{b['id']}: {b.get('title') or ''}".rstrip()]
    facts = [
        f"{k}: {b[k]}"
        for k in ("issue_type", "status", "priority", "assignee", "owner", "parent")
        if b.get(k) not in (None, "")
    ]
    lines += facts
    if b.get("labels"):
        lines.append("labels: " + ", ".join(map(str, b["labels"])))
    for dep in b.get("dependencies") or []:
        if isinstance(dep, dict):
            lines.append(f"depends on {dep.get('depends_on_id')} ({dep.get('type', 'blocks')})")
    for f in TEXT_FIELDS:
        if b.get(f):
            lines.append(f"\n## {f.replace('_', ' ')}\n{b[f]}")
    for c in b.get("comments") or []:
        if isinstance(c, dict) and c.get("text"):
            lines.append(f"\n## comment by {c.get('author', '?')} at {c.get('created_at', '?')}\n{c['text']}")
    if b.get("close_reason"):
        lines.append(f"\nclosed: {b['close_reason']}")
    return "\n".join(lines)


def _labels(rows: list[dict]) -> list[str]:
    return sorted({r["label"] for r in rows if isinstance(r.get("label"), str)})


# ---------------------------------------------------------------------------------------------------
# row checks: a field of the wrong type quarantines the row, naming the field

# `bd statuses`: the built-in ones, Gas Town's hook states, and old exports' tombstones.
KNOWN_STATUSES = frozenset(
    {"open", "in_progress", "blocked", "deferred", "closed", "pinned", "hooked", "tombstone"}
)
STRING_FIELDS = (
    "title",
    "description",
    "design",
    "acceptance_criteria",
    "notes",
    "status",
    "issue_type",
    "assignee",
    "owner",
    "created_by",
    "close_reason",
    "parent",
    "created_at",
    "updated_at",
    "closed_at",
)
LIST_FIELDS = {"labels": str, "dependencies": dict, "comments": dict}
_PRIORITY_TEXT = re.compile(r"[Pp]?[0-4]")


def custom_statuses(directory: Path) -> frozenset[str]:
    """Statuses a database adds with `bd config set status.custom "in_review:active,..."`: from a
    backup's `config.jsonl`, or `config.yaml` in the `.beads` directory. Unreadable config adds none."""
    values: list[str] = []
    config_rows = directory / "config.jsonl"
    if config_rows.is_file():
        try:
            for line in config_rows.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict) and row.get("key") == "status.custom":
                    values.append(str(row.get("value") or ""))
        except OSError:
            pass
    for cfg in (directory / "config.yaml", directory.parent / "config.yaml"):
        if cfg.is_file():
            try:
                data = yaml.safe_load(cfg.read_text(encoding="utf-8", errors="replace"))
            except (OSError, yaml.YAMLError):
                continue
            if isinstance(data, dict) and isinstance(data.get("status.custom"), str):
                values.append(data["status.custom"])
            break
    names = {part.split(":", 1)[0].strip() for v in values for part in v.split(",")}
    return frozenset(n for n in names if n)


def _kind_of(v: Any) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int | float):
        return "a number"
    if isinstance(v, str):
        return "text"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def _shown(v: Any) -> str:
    s = json.dumps(v, ensure_ascii=False, default=str)
    return s if len(s) <= 60 else s[:60] + "…"


def quarantine_invalid(
    log: ReadLog,
    problems: list[tuple[str, str]],
    where: str,
    rel: str,
    rig: str | None,
    line: int | None = None,
) -> None:
    """Quarantine a bead row whose fields `field_problems` rejected, under the first field's name."""
    log.quarantine(
        SOURCE,
        rel,
        f"invalid_{problems[0][0]}",
        f"{where}: " + "; ".join(p for _, p in problems),
        rig=rig,
        line=line,
    )


def field_problems(row: dict[str, Any], statuses: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """(field, what is wrong) for each field of a bead row with the wrong type or an unknown value.

    Absent and null fields are fine (old exports leave many out). `statuses` are custom ones the
    database configured, on top of KNOWN_STATUSES.
    """
    problems: list[tuple[str, str]] = []
    for name in STRING_FIELDS:
        v = row.get(name)
        if v is not None and not isinstance(v, str):
            problems.append((name, f"{name} is {_kind_of(v)} ({_shown(v)}), expected text"))
    status = row.get("status")
    if isinstance(status, str) and status not in KNOWN_STATUSES and status not in statuses:
        problems.append(("status", f"status {_shown(status)} is not a bd status"))
    p = row.get("priority")
    if p is not None and not (
        (isinstance(p, int) and not isinstance(p, bool) and 0 <= p <= 4)
        or (isinstance(p, str) and _PRIORITY_TEXT.fullmatch(p.strip()))
    ):
        problems.append(("priority", f"priority is {_kind_of(p)} ({_shown(p)}), expected 0-4"))
    for name, item in LIST_FIELDS.items():
        v = row.get(name)
        if v is None:
            continue
        if not isinstance(v, list):
            problems.append((name, f"{name} is {_kind_of(v)} ({_shown(v)}), expected a list"))
        elif not all(isinstance(x, item) for x in v):
            want = "text" if item is str else "objects"
            problems.append((name, f"{name} holds {_shown(v)}, expected a list of {want}"))
    return problems


# ---------------------------------------------------------------------------------------------------
# repeated ids: identical rows are counted, differing versions resolved by updated_at


def _time_key(v: Any) -> float:
    """updated_at as a number to compare; missing or unreadable sorts first."""
    if not isinstance(v, str) or not v.strip():
        return -math.inf
    try:
        t = datetime.fromisoformat(v.strip())
    except ValueError:
        return -math.inf
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.timestamp()


def _row_digest(row: dict[str, Any]) -> bytes:
    blob = json.dumps(row, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.blake2b(blob.encode("utf-8", "surrogatepass"), digest_size=16).digest()


@dataclass
class _Version:
    """One distinct content of a bead id in a file: where it is, when it was updated, how often."""

    first_line: int
    last_line: int
    updated_at: Any
    time: float
    copies: int = 1


def _winning_lines(
    versions: dict[str, dict[bytes, _Version]], log: ReadLog, rel: str, rig: str | None
) -> dict[str, int]:
    """The line kept for each id (the newest updated_at; on a tie the later line). Extra identical
    rows are counted as deduplicated; every other version is reported as superseded."""
    keep_lines: dict[str, int] = {}
    for bead_id, by_content in versions.items():
        ordered = sorted(by_content.values(), key=lambda v: (v.time, v.last_line))
        keep = ordered[-1]
        keep_lines[bead_id] = keep.last_line
        repeats = sum(v.copies - 1 for v in ordered)
        if repeats:
            log.skip("identical_duplicate_row", repeats)
        for old in ordered[:-1]:
            when = (
                "the same updated_at; the later line is kept"
                if old.time == keep.time
                else f"updated_at {old.updated_at or 'missing'}; the newest is kept"
            )
            log.quarantine(
                SOURCE,
                rel,
                "superseded_version",
                f"line {old.first_line} is another version of bead {bead_id} ({when}: line "
                f"{keep.last_line}, updated_at {keep.updated_at or 'missing'})",
                rig=rig,
                line=old.first_line,
            )
    return keep_lines


def _resolve_repeats(
    path: Path, repeated: dict[str, list[int]], log: ReadLog, rel: str, rig: str | None
) -> dict[str, int]:
    """The kept line of each id that occurs on several `lines` (see _winning_lines)."""
    wanted = {n for lines in repeated.values() for n in lines}
    versions: dict[str, dict[bytes, _Version]] = {}
    for lineno, row in _rows_at(path, wanted, log, rel, rig):
        by_content = versions.setdefault(row.get("id"), {})
        digest = _row_digest(row)
        seen = by_content.get(digest)
        if seen is not None:
            seen.copies += 1
            seen.last_line = lineno
        else:
            updated = row.get("updated_at")
            by_content[digest] = _Version(lineno, lineno, updated, _time_key(updated))
    return _winning_lines(versions, log, rel, rig)


def _rows_at(
    path: Path, lines: set[int], log: ReadLog, rel: str, rig: str | None
) -> Iterator[tuple[int, dict]]:
    """The rows on `lines` of a JSONL file already read once, parsing only those lines."""
    todo = len(lines)
    try:
        with open(path, "rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                if not todo:
                    return
                if lineno not in lines:
                    continue
                todo -= 1
                try:
                    row = json.loads(raw.decode("utf-8", "replace"))
                except ValueError:
                    row = None
                if not isinstance(row, dict):
                    log.quarantine(
                        SOURCE,
                        rel,
                        "changed_while_read",
                        f"line {lineno} changed between reads",
                        rig=rig,
                        line=lineno,
                    )
                    continue
                yield lineno, row
    except OSError as e:
        log.quarantine(SOURCE, rel, os_error_reason(e), f"{type(e).__name__}: {e.strerror or e}", rig=rig)


# ---------------------------------------------------------------------------------------------------
# the reader


def bead_document(
    row: dict[str, Any],
    lineno: int,
    *,
    rel: str,
    rig: str | None,
    commit: str | None,
    mtime: float | None,
    side: dict[str, dict[str, list[dict]]] | None = None,
) -> Document:
    """The document of one (checked) bead row; `side` holds a backup's side tables by issue id."""
    bead_id = row["id"]
    bead = dict(row)
    if side is not None:
        bead["dependencies"] = side["dependencies"].get(bead_id, [])
        bead["labels"] = _labels(side["labels"].get(bead_id, []))
        bead["comments"] = side["comments"].get(bead_id, [])
        bead["events"] = side["events"].get(bead_id, [])
    # The parent of a dotted child id, when not given explicitly.
    if not bead.get("parent") and "." in bead_id:
        bead["parent"] = bead_id.rsplit(".", 1)[0]
    role, _rig, _agent = role_from_actor(bead.get("assignee") or "")
    fmt = "backup" if side is not None else "export"
    return Document(
        source=SOURCE,
        kind=fmt,
        path=rel,
        text=render_bead(bead),
        title=f"bead {bead_id}: {bead.get('title') or ''}"[:200],
        rig=rig,
        commit=commit,
        mtime=mtime,
        role=role,
        key=bead_id,
        meta={"format": fmt, "line": lineno, **bead},
    )


@dataclass
class BeadFile:
    """An `issues.jsonl` after its first pass: the line kept for each bead id in it. (Or a database of
    the town's Dolt server, `database` set: its rows have no line, `rel` is where its backup goes.)"""

    path: Path
    rel: str
    rig: str | None
    backup: bool
    keep: dict[str, int | None]  # bead id -> line
    database: str | None = None


def _check_file(path: Path, scan: TownScan, log: ReadLog) -> BeadFile:
    """The first pass over one file: every row checked, repeated ids resolved (see _winning_lines).

    Memory stays at one line plus the line numbers of each id; lines of an id seen more than once
    are read once more, to tell identical repeats from differing versions."""
    rel = scan.rel(path)
    rig, _ = scan.provenance(path)
    statuses = custom_statuses(path.parent)
    lines_of: dict[str, list[int]] = {}
    for lineno, row in iter_jsonl(path, log, SOURCE, max_bytes=scan.max_bytes, rel=rel, rig=rig):
        bead_id = row.get("id")
        if not isinstance(bead_id, str) or not bead_id:
            log.quarantine(SOURCE, rel, "missing_id", f"line {lineno} has no bead id", rig=rig, line=lineno)
            continue
        problems = field_problems(row, statuses)
        if problems:
            quarantine_invalid(log, problems, f"line {lineno} (bead {bead_id})", rel, rig, line=lineno)
            continue
        lines_of.setdefault(bead_id, []).append(lineno)
    keep = {i: lines[0] for i, lines in lines_of.items() if len(lines) == 1}
    repeated = {i: lines for i, lines in lines_of.items() if len(lines) > 1}
    del lines_of
    if repeated:
        keep.update(_resolve_repeats(path, repeated, log, rel, rig))
    return BeadFile(path, rel, rig, is_backup_dir(path.parent), keep)


_EMPTY = (None, "", [], {})


def _field_digests(row: dict[str, Any]) -> dict[str, bytes]:
    """A short digest of each filled field of a row (what two copies of a version are compared on).
    A backup writes booleans as 0/1 (`ephemeral: 1`), an export as true/false: compared as numbers."""
    return {
        k: _row_digest({"v": int(v) if isinstance(v, bool) else v})[:8]
        for k, v in row.items()
        if v not in _EMPTY
    }


@dataclass
class BeadCopy:
    """One file's kept row of a bead id that several files hold."""

    file: BeadFile
    order: int  # the file's place in path order
    line: int | None
    updated_at: Any
    time: float
    fields: dict[str, bytes]
    home: bool  # the file lies where the town's routes send this id

    def same_version(self, other: BeadCopy) -> bool:
        if self.time != other.time:
            return False
        shared = self.fields.keys() & other.fields.keys()
        return all(self.fields[k] == other.fields[k] for k in shared)


def _why_kept(keep: BeadCopy, old: BeadCopy) -> str:
    if keep.time != old.time:
        return f"updated_at {old.updated_at or 'missing'}; the newest is kept"
    if keep.home and not old.home:
        return "the same updated_at; the copy where the town's routes send the id is kept"
    if keep.file.backup and not old.file.backup:
        return "the same updated_at; the backup's row is kept"
    return "the same updated_at; the first file in path order is kept"


def in_home(scan: TownScan, bead_id: str, rig: str | None) -> bool:
    """Whether a copy of a bead held by `rig` (None: the town) lies where the town's routes send its id."""
    route = scan.route_of(bead_id)
    return route is not None and rig == route.rig


def _where(c: BeadCopy) -> str:
    if c.line is None:
        return f"the row in Dolt database {c.file.database}"
    return f"line {c.line}"


def settle_copies(copies: dict[str, list[BeadCopy]], log: ReadLog) -> None:
    """Of each bead id's copies in several files, keep one (the newest updated_at, then the copy in
    the bead's home, then a backup row, then the first file); the others leave their file's `keep`,
    counted as `identical_duplicate_in_other_file` when the same version, else quarantined as
    `superseded_version`, naming the copy kept."""
    for bead_id, found in copies.items():
        if len(found) < 2:
            continue
        keep = max(found, key=lambda c: (c.time, c.home, c.file.backup, -c.order))
        for old in found:
            if old is keep:
                continue
            del old.file.keep[bead_id]
            if old.same_version(keep):
                log.skip("identical_duplicate_in_other_file")
                continue
            kept_at = keep.file.rel if keep.line is None else f"{keep.file.rel} line {keep.line}"
            log.quarantine(
                SOURCE,
                old.file.rel,
                "superseded_version",
                f"{_where(old)} is another version of bead {bead_id} ({_why_kept(keep, old)}: "
                f"{kept_at}, updated_at {keep.updated_at or 'missing'})",
                rig=old.file.rig,
                line=old.line,
            )


def bead_copy(f: BeadFile, order: int, line: int | None, row: dict[str, Any], scan: TownScan) -> BeadCopy:
    """The copy of a (checked) bead row that file `f` holds, as `settle_copies` compares them."""
    updated = row.get("updated_at")
    return BeadCopy(
        f, order, line, updated, _time_key(updated), _field_digests(row), in_home(scan, row["id"], f.rig)
    )


def _resolve_across_files(files: list[BeadFile], scan: TownScan, log: ReadLog) -> None:
    """Leave one copy of each bead id that several files keep (see the module doc)."""
    seen: dict[str, int] = {}
    for f in files:
        for bead_id in f.keep:
            seen[bead_id] = seen.get(bead_id, 0) + 1
    shared = {i for i, n in seen.items() if n > 1}
    del seen
    if not shared:
        return
    copies: dict[str, list[BeadCopy]] = defaultdict(list)
    for order, f in enumerate(files):
        wanted = {line for bead_id, line in f.keep.items() if bead_id in shared}
        if not wanted:
            continue
        for lineno, row in _rows_at(f.path, wanted, log, f.rel, f.rig):
            bead_id = row.get("id")
            if bead_id not in shared:
                continue
            copies[bead_id].append(bead_copy(f, order, lineno, row, scan))
    settle_copies(copies, log)


def _documents(f: BeadFile, scan: TownScan, log: ReadLog) -> Iterator[Document]:
    """The second pass over one file: the kept rows as documents (joined to a backup's side tables)."""
    side = _load_side_tables(f.path.parent, scan, log) if f.backup else None
    mtime = file_mtime(f.path)
    kept: set[str] = set()
    for lineno, row in _rows_at(f.path, set(f.keep.values()), log, f.rel, f.rig):
        if row.get("status") == "tombstone":
            log.skip("tombstone")
            continue
        kept.add(row["id"])
        rig, commit = scan.bead_provenance(row["id"], f.path)
        yield bead_document(row, lineno, rel=f.rel, rig=rig, commit=commit, mtime=mtime, side=side)
    if side is not None:
        for name in BACKUP_SIDE_FILES:
            orphans = sum(len(v) for k, v in side[name].items() if k not in kept)
            if orphans:
                log.skip(f"{name}_of_unknown_or_tombstoned_issue", orphans)


def read_beads(scan: TownScan, log: ReadLog) -> Iterator[Document]:
    """Every bead of the town's files, once: each file checked, ids repeated across files resolved,
    then each file's kept rows as documents. What the walk left out is counted in `log`."""
    scan.record_layout(log)
    files = [_check_file(p, scan, log) for p in sorted(scan.matching(is_issues_file, log, SOURCE))]
    _resolve_across_files(files, scan, log)
    for f in files:
        yield from _documents(f, scan, log)
