"""A sensor's cursor: the state it last acted on, as versioned JSON (compressed when large).

Dagster stores the cursor string in the instance, so it survives daemon restarts. A cursor this code
cannot read (another version, hand-edited) decodes to None: the sensor then records a new baseline
instead of guessing what changed.
"""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import dataclass
from typing import Any

CURSOR_VERSION = 1
_COMPRESSED = "z1:"
_COMPRESS_ABOVE = 16 * 1024  # transcript cursors of a busy town run to hundreds of KB as plain JSON


@dataclass(frozen=True)
class Cursor:
    state: Any
    # Runs requested so far. It goes into each run key: a HEAD that moves A -> B, back, and to B again
    # must request a third run, not be taken for a retry of the first (same state, same key).
    requests: int = 0


def encode_cursor(kind: str, state: Any, requests: int = 0) -> str:
    text = json.dumps(
        {"v": CURSOR_VERSION, "kind": kind, "requests": requests, "state": state}, separators=(",", ":")
    )
    if len(text) > _COMPRESS_ABOVE:
        return _COMPRESSED + base64.b64encode(zlib.compress(text.encode("utf-8"), 6)).decode("ascii")
    return text


def decode_cursor(kind: str, cursor: str | None) -> Cursor | None:
    """What encode_cursor(kind, ...) stored, or None when absent or unreadable."""
    if not cursor:
        return None
    try:
        if cursor.startswith(_COMPRESSED):
            cursor = zlib.decompress(base64.b64decode(cursor[len(_COMPRESSED) :])).decode("utf-8")
        data = json.loads(cursor)
    except (ValueError, zlib.error):
        return None
    if not isinstance(data, dict) or data.get("v") != CURSOR_VERSION or data.get("kind") != kind:
        return None
    requests = data.get("requests", 0)
    return Cursor(data.get("state"), requests if isinstance(requests, int) else 0)
