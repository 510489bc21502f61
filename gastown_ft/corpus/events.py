"""Town events: the `.events.jsonl` feed and `logs/town.log`, one document per event.

`.events.jsonl` lines are `{ts, source: "gt", type, actor, payload, visibility}` (kind "event").
`logs/town.log` lines (kind "log") are either JSON objects `{timestamp, type, agent, context}` or the
text `gt` writes, `<timestamp> [<type>] <agent> <detail>`, with the timestamp as
`2025-12-26 15:30:45` or ISO 8601. The files are read at the town root, at a rig's root, or anywhere
under `town.extra_paths`; both are streamed line by line, and bad lines are quarantined one by one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gastown_ft.corpus.documents import Document, ReadLog
from gastown_ft.corpus.files import check_file, file_mtime, iter_jsonl, os_error_reason
from gastown_ft.corpus.roles import role_from_actor
from gastown_ft.corpus.scan import TownScan
from gastown_ft.corpus.transcripts import decode_line, iter_bounded_lines
from gastown_ft.town.feed import SOURCE as OWN_FEED_SOURCE

SOURCE = "events"
EVENTS_FILE = ".events.jsonl"
TOWN_LOG = "town.log"
MAX_LOG_LINE_BYTES = 1024 * 1024
PAYLOAD_TEXT_CHARS = 600  # the payload's share of an event's text line
VALUE_CHARS = 4000  # any one string kept in meta

_TEXT_LINE = re.compile(
    r"^(?P<ts>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)\s+"
    r"\[(?P<type>[^\]\s][^\]]*)\]\s+(?P<agent>\S+)(?:\s+(?P<context>.*))?$"
)


def is_events_file(path: Path) -> bool:
    """By name: `.events.jsonl`, or `town.log` inside a `logs/` directory."""
    return path.name == EVENTS_FILE or (path.name == TOWN_LOG and path.parent.name == "logs")


def _wanted(scan: TownScan, path: Path) -> bool:
    """At the town root or a rig root (town.log in their logs/), or anywhere under an extra path."""
    if path.name not in (EVENTS_FILE, TOWN_LOG):
        return False
    for extra in scan.config.extra_paths:
        try:
            path.relative_to(Path(extra))
            return True
        except ValueError:
            continue
    if not is_events_file(path):
        return False
    home = path.parent if path.name == EVENTS_FILE else path.parent.parent
    return any(home == r for r in (scan.root, *(rig.path for rig in scan.rigs.values())))


def _clip(v: Any, depth: int = 0) -> Any:
    if isinstance(v, str):
        return v if len(v) <= VALUE_CHARS else v[:VALUE_CHARS] + "…"
    if depth > 10:
        return None
    if isinstance(v, dict):
        return {str(k): _clip(x, depth + 1) for k, x in v.items()}
    if isinstance(v, list):
        return [_clip(x, depth + 1) for x in v[:200]]
    return v


def _compact(v: Any) -> str:
    if isinstance(v, dict):
        s = " ".join(
            f"{k}={json.dumps(x, ensure_ascii=False, default=str) if not isinstance(x, str) else x}"
            for k, x in v.items()
        )
    elif v is None:
        s = ""
    else:
        s = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
    return s if len(s) <= PAYLOAD_TEXT_CHARS else s[:PAYLOAD_TEXT_CHARS] + "…"


def _agent_fields(actor: Any) -> tuple[str | None, str | None, str | None]:
    return role_from_actor(actor if isinstance(actor, str) else None)


def _rig_excluded(scan: TownScan, rig: str | None) -> bool:
    cfg = scan.config
    return bool(rig) and (rig in cfg.exclude_rigs or (bool(cfg.rigs) and rig not in cfg.rigs))


def _commit(scan: TownScan, rig: str | None, path: Path) -> str | None:
    if rig and rig in scan.rigs:
        return scan.rigs[rig].commit
    return scan.provenance(path)[1]


def _read_events_jsonl(path: Path, rel: str, scan: TownScan, log: ReadLog) -> Iterator[Document]:
    file_rig, _ = scan.provenance(path)
    mtime = file_mtime(path)
    for lineno, obj in iter_jsonl(path, log, SOURCE, max_bytes=scan.max_bytes, rel=rel, rig=file_rig):
        etype, actor = obj.get("type"), obj.get("actor")
        if obj.get("source") == OWN_FEED_SOURCE:  # this project's own reports are not agent behaviour
            log.skip("own_report")
            continue
        ts = obj.get("ts", obj.get("timestamp"))
        if etype is None and actor is None:
            log.quarantine(
                SOURCE,
                rel,
                "not_an_event",
                f"line {lineno} has neither a type nor an actor",
                rig=file_rig,
                line=lineno,
            )
            continue
        role, rig, agent = _agent_fields(actor)
        payload = obj.get("payload")
        if (
            rig is None
            and isinstance(payload, dict)
            and isinstance(payload.get("rig"), str)
            and payload["rig"]
        ):
            rig = payload["rig"]
        rig = rig or file_rig
        if _rig_excluded(scan, rig):
            log.skip("excluded_rig")
            continue
        text = f"{ts or '?'} [{etype or '?'}] {actor or '?'}"
        if payload not in (None, {}, ""):
            text += f": {_compact(payload)}"
        meta = {k: _clip(v) for k, v in obj.items()}
        meta.update({"line": lineno, "format": "events_jsonl", "agent_name": agent})
        yield Document(
            source=SOURCE,
            kind="event",
            path=rel,
            text=text,
            title=f"{etype or 'event'} by {actor or '?'}",
            rig=rig,
            commit=_commit(scan, rig, path),
            mtime=mtime,
            role=role,
            key=str(lineno),
            meta=meta,
        )


def parse_log_line(line: str) -> dict[str, Any] | None:
    """A text town.log line as {timestamp, type, agent, context}, or None when it is not one."""
    m = _TEXT_LINE.match(line.strip())
    if not m:
        return None
    return {
        "timestamp": m.group("ts"),
        "type": m.group("type"),
        "agent": m.group("agent"),
        "context": m.group("context") or "",
    }


def _read_town_log(path: Path, rel: str, scan: TownScan, log: ReadLog) -> Iterator[Document]:
    file_rig, _ = scan.provenance(path)
    if not check_file(path, log, SOURCE, max_bytes=scan.max_bytes, rel=rel, rig=file_rig):
        return
    mtime = file_mtime(path)
    try:
        fh = open(path, "rb")
    except OSError as e:
        log.quarantine(
            SOURCE, rel, os_error_reason(e), f"{type(e).__name__}: {e.strerror or e}", rig=file_rig
        )
        return
    good = lines = 0
    with fh:
        lineno = 0
        try:
            for raw in iter_bounded_lines(fh, max_line=MAX_LOG_LINE_BYTES):
                lineno += 1
                if raw.data is None:
                    lines += 1
                    log.quarantine(
                        SOURCE,
                        rel,
                        "line_too_large",
                        f"line {lineno}: {raw.length} bytes is over the limit of {MAX_LOG_LINE_BYTES}",
                        rig=file_rig,
                        line=lineno,
                    )
                    continue
                line, _bad = decode_line(raw.data)
                line = line.lstrip("\ufeff").strip()
                if not line:
                    continue
                lines += 1
                if line.startswith("{"):
                    try:
                        obj = json.loads(line)
                    except ValueError as e:
                        reason = "invalid_json" if raw.complete else "truncated_last_line"
                        log.quarantine(
                            SOURCE,
                            rel,
                            reason,
                            f"line {lineno}: {getattr(e, 'msg', e)}",
                            rig=file_rig,
                            line=lineno,
                        )
                        continue
                    if not isinstance(obj, dict):
                        log.quarantine(
                            SOURCE,
                            rel,
                            "not_an_object",
                            f"line {lineno} is not a JSON object",
                            rig=file_rig,
                            line=lineno,
                        )
                        continue
                    fields = {k: _clip(v) for k, v in obj.items()}
                    fmt = "json"
                elif line.startswith("["):
                    log.quarantine(
                        SOURCE,
                        rel,
                        "not_an_object",
                        f"line {lineno} is a JSON array",
                        rig=file_rig,
                        line=lineno,
                    )
                    continue
                else:
                    parsed = parse_log_line(line)
                    if parsed is None:
                        reason = "unparsed_log_line" if raw.complete else "truncated_last_line"
                        log.quarantine(
                            SOURCE,
                            rel,
                            reason,
                            f"line {lineno} is neither JSON nor '<time> [<type>] <agent> ...': {line[:200]}",
                            rig=file_rig,
                            line=lineno,
                        )
                        continue
                    fields = parsed
                    fmt = "text"
                etype = fields.get("type")
                agent_name = fields.get("agent", fields.get("actor"))
                ts = fields.get("timestamp", fields.get("ts"))
                if etype is None and agent_name is None:
                    log.quarantine(
                        SOURCE,
                        rel,
                        "not_an_event",
                        f"line {lineno} has neither a type nor an agent",
                        rig=file_rig,
                        line=lineno,
                    )
                    continue
                role, rig, agent = _agent_fields(agent_name)
                rig = rig or file_rig
                if _rig_excluded(scan, rig):
                    log.skip("excluded_rig")
                    continue
                context = fields.get("context")
                text = f"{ts or '?'} [{etype or '?'}] {agent_name or '?'}"
                if context not in (None, "", {}):
                    text += f" {_compact(context)}"
                meta = dict(fields)
                meta.update({"line": lineno, "format": fmt, "agent_name": agent})
                good += 1
                yield Document(
                    source=SOURCE,
                    kind="log",
                    path=rel,
                    text=text,
                    title=f"{etype or 'log'} by {agent_name or '?'}",
                    rig=rig,
                    commit=_commit(scan, rig, path),
                    mtime=mtime,
                    role=role,
                    key=str(lineno),
                    meta=meta,
                )
        except OSError as e:
            log.quarantine(
                SOURCE, rel, os_error_reason(e), f"{type(e).__name__}: {e.strerror or e}", rig=file_rig
            )
            return
    if good:
        log.files_read += 1
    elif lines:
        log.quarantine(SOURCE, rel, "no_valid_lines", "no line of the log could be read", rig=file_rig)
    else:
        log.quarantine(SOURCE, rel, "empty_file", "the file holds only whitespace", rig=file_rig)


def read_events(scan: TownScan, log: ReadLog) -> Iterator[Document]:
    """Documents for every event of `.events.jsonl` (kind "event") and `logs/town.log` (kind "log")."""
    for path in sorted(scan.matching(lambda p: _wanted(scan, p), log, SOURCE)):
        rel = scan.rel(path)
        if path.name == EVENTS_FILE:
            yield from _read_events_jsonl(path, rel, scan, log)
        else:
            yield from _read_town_log(path, rel, scan, log)
