"""Beads: `bd export` JSONL (`issues.jsonl`) and `bd backup` directories.

An export row carries its labels, dependencies and comments inline. A backup directory holds the
flat SQL-column rows in `issues.jsonl` and the rest in `dependencies.jsonl`, `labels.jsonl`,
`comments.jsonl` and `events.jsonl`; the reader joins them by issue id. Tombstones (deleted issues
in old exports) are left out and counted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gastown_ft.corpus.documents import Document, ReadLog
from gastown_ft.corpus.files import file_mtime, iter_jsonl
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


def read_beads(scan: TownScan, log: ReadLog) -> Iterator[Document]:
    for path in sorted(scan.matching(is_issues_file, log, SOURCE)):
        rel = scan.rel(path)
        rig, commit = scan.provenance(path)
        backup = is_backup_dir(path.parent)
        side = _load_side_tables(path.parent, scan, log) if backup else {}
        mtime = file_mtime(path)
        seen: set[str] = set()
        for lineno, row in iter_jsonl(path, log, SOURCE, max_bytes=scan.max_bytes, rel=rel, rig=rig):
            bead_id = row.get("id")
            if not isinstance(bead_id, str) or not bead_id:
                log.quarantine(
                    SOURCE, rel, "missing_id", f"line {lineno} has no bead id", rig=rig, line=lineno
                )
                continue
            if row.get("status") == "tombstone":
                log.skip("tombstone")
                continue
            if bead_id in seen:
                log.quarantine(
                    SOURCE, rel, "duplicate_id", f"line {lineno} repeats bead {bead_id}", rig=rig, line=lineno
                )
                continue
            seen.add(bead_id)
            bead = dict(row)
            if backup:
                bead["dependencies"] = side["dependencies"].get(bead_id, [])
                bead["labels"] = _labels(side["labels"].get(bead_id, []))
                bead["comments"] = side["comments"].get(bead_id, [])
                bead["events"] = side["events"].get(bead_id, [])
            # The parent of a dotted child id, when not given explicitly.
            if not bead.get("parent") and "." in bead_id:
                bead["parent"] = bead_id.rsplit(".", 1)[0]
            role, _rig, _agent = role_from_actor(bead.get("assignee") or "")
            yield Document(
                source=SOURCE,
                kind="backup" if backup else "export",
                path=rel,
                text=render_bead(bead),
                title=f"bead {bead_id}: {bead.get('title') or ''}"[:200],
                rig=rig,
                commit=commit,
                mtime=mtime,
                role=role,
                key=bead_id,
                meta={"format": "backup" if backup else "export", "line": lineno, **bead},
            )
        if backup:
            for name in BACKUP_SIDE_FILES:
                orphans = sum(len(v) for k, v in side[name].items() if k not in seen)
                if orphans:
                    log.skip(f"{name}_of_unknown_or_tombstoned_issue", orphans)
