"""Safe file access for readers: every failure becomes a quarantine reason, never an exception."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gastown_ft.corpus.documents import ReadLog

SNIFF_BYTES = 8192


def looks_binary(head: bytes) -> bool:
    """NUL bytes, or mostly control characters, in the first block: not a text file."""
    if b"\x00" in head:
        return True
    if not head:
        return False
    control = sum(1 for b in head if b < 9 or 13 < b < 32)
    return control / len(head) > 0.30


def os_error_reason(e: OSError) -> str:
    if e.errno == errno.ELOOP:
        return "symlink_loop"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "unreadable"
    if e.errno == errno.ENOENT:
        return "vanished_or_broken_link"
    if e.errno == errno.EISDIR:
        return "not_a_file"
    return "unreadable"


def check_file(
    path: Path, log: ReadLog, source: str, *, max_bytes: int, rel: str, rig: str | None = None
) -> bool:
    """Stat and sniff a file; quarantine it (and return False) when it cannot be used as text."""
    try:
        st = path.stat()
        if st.st_size == 0:
            log.quarantine(source, rel, "empty_file", "the file is empty", rig=rig)
            return False
        if st.st_size > max_bytes:
            log.quarantine(
                source,
                rel,
                "too_large",
                f"{st.st_size} bytes is over the limit of {max_bytes} (town.max_file_mb)",
                rig=rig,
            )
            return False
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError as e:
        log.quarantine(source, rel, os_error_reason(e), f"{type(e).__name__}: {e.strerror or e}", rig=rig)
        return False
    if looks_binary(head):
        log.quarantine(source, rel, "binary_file", "the file holds binary data, not text", rig=rig)
        return False
    return True


def read_text(
    path: Path,
    log: ReadLog,
    source: str,
    *,
    max_bytes: int,
    rel: str,
    rig: str | None = None,
    strict: bool = False,
) -> str | None:
    """The file's text, or None after quarantining it.

    strict=True quarantines invalid UTF-8 (for TOML/JSON that must parse); otherwise bad bytes are
    replaced and the document is kept.
    """
    if not check_file(path, log, source, max_bytes=max_bytes, rel=rel, rig=rig):
        return None
    try:
        data = path.read_bytes()
    except OSError as e:
        log.quarantine(source, rel, os_error_reason(e), f"{type(e).__name__}: {e.strerror or e}", rig=rig)
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        if strict:
            log.quarantine(source, rel, "bad_utf8", f"not valid UTF-8 at byte {e.start}", rig=rig)
            return None
        text = data.decode("utf-8", "replace")
    if not text.strip():
        log.quarantine(source, rel, "empty_file", "the file holds only whitespace", rig=rig)
        return None
    log.files_read += 1
    return text.lstrip("\ufeff")


def iter_jsonl(
    path: Path, log: ReadLog, source: str, *, max_bytes: int, rel: str, rig: str | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Stream (line number, object) from a JSONL file, quarantining bad lines one by one.

    Tolerates bad UTF-8 (replaced), blank lines, a truncated last line; memory stays at one line.
    """
    if not check_file(path, log, source, max_bytes=max_bytes, rel=rel, rig=rig):
        return
    try:
        fh = open(path, "rb")
    except OSError as e:
        log.quarantine(source, rel, os_error_reason(e), f"{type(e).__name__}: {e.strerror or e}", rig=rig)
        return
    good = 0
    with fh:
        lineno = 0
        for raw in fh:
            lineno += 1
            if not raw.strip():
                continue
            complete = raw.endswith(b"\n")
            line = raw.decode("utf-8", "replace")
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                reason = "truncated_last_line" if not complete else "invalid_json"
                log.quarantine(source, rel, reason, f"line {lineno}: {e.msg}", rig=rig, line=lineno)
                continue
            if not isinstance(obj, dict):
                log.quarantine(
                    source,
                    rel,
                    "not_an_object",
                    f"line {lineno} is a JSON {type(obj).__name__}, not an object",
                    rig=rig,
                    line=lineno,
                )
                continue
            good += 1
            yield lineno, obj
    if good:
        log.files_read += 1
    elif lineno:
        log.quarantine(source, rel, "no_valid_lines", "no line of the file is a JSON object", rig=rig)


def file_mtime(path: Path) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None
