"""Events in the town feed, `<town>/.events.jsonl`, in Gas Town's schema (gastown internal/events).

One JSON object a line: `{ts, source, type, actor, payload, visibility}`, `ts` in RFC 3339 UTC to the
second as `gt` writes it. `gt` appends with O_APPEND and one write a line; so do we, and we also hold an
exclusive `flock` on the file while writing, so that other lock-taking writers (another gastown-ft
process) never interleave with us, and a line is never split by a concurrent `gt`: with O_APPEND a
single write(2) of a line lands whole at the end of the file.
"""

from __future__ import annotations

import fcntl
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

EVENTS_FILE = ".events.jsonl"
SOURCE = "gastown-ft"
VISIBILITIES = ("audit", "feed", "both")

# Event types, prefixed so that `gt feed` readers and greps can tell ours apart from gt's own.
STARTED = "ft_started"
PROGRESS = "ft_progress"
SUCCEEDED = "ft_succeeded"
FAILED = "ft_failed"
REFUSED = "ft_refused"
PAUSED = "ft_paused"
RESUMED = "ft_resumed"
DRIFT = "ft_drift"


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_event(
    type_: str, actor: str, payload: dict[str, Any] | None = None, visibility: str = "feed"
) -> dict[str, Any]:
    if visibility not in VISIBILITIES:
        raise ValueError(f"visibility must be one of {VISIBILITIES}, not {visibility!r}")
    event: dict[str, Any] = {"ts": now_rfc3339(), "source": SOURCE, "type": type_, "actor": actor}
    if payload:  # gt leaves an empty payload out (omitempty)
        event["payload"] = payload
    event["visibility"] = visibility
    return event


def encode_line(event: dict[str, Any]) -> bytes:
    """One line, no newline inside (json escapes them), UTF-8."""
    return (json.dumps(event, ensure_ascii=False, separators=(",", ":"), default=str) + "\n").encode()


def append_event(events_path: str | os.PathLike, event: dict[str, Any]) -> None:
    """Append one event line (raises OSError when the file cannot be written)."""
    append_jsonl(events_path, event)


def append_jsonl(path: str | os.PathLike, obj: dict[str, Any]) -> None:
    """Append one JSON line: O_APPEND, one write, under an exclusive flock."""
    data = encode_line(obj)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            written = os.write(fd, data)
            if written != len(data):  # a short write (disk full): finish the line rather than leave half
                os.write(fd, data[written:])
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def events_path(town_root: str | os.PathLike) -> Path:
    return Path(town_root) / EVENTS_FILE


def read_events(path: str | os.PathLike, source: str | None = SOURCE) -> list[dict[str, Any]]:
    """The events of one source (all sources with None); unparseable lines are skipped."""
    out = []
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if isinstance(ev, dict) and (source is None or ev.get("source") == source):
            out.append(ev)
    return out
