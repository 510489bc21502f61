"""Every policy decision as one JSON line: what was asked, the verdict, why, and what happened.

One `open(..., "a")` write per line, flushed, so a log survives a killed session and `tail -f` shows
decisions as they are made. Records:

    {"ts", "session", "step", "role", "tool", "command", "decision", "rules", "reason",
     "outcome", "exit_code"}

`outcome`: ran | refused | confirmed (held, the operator said yes, then ran) | declined (held, the
operator said no) | held (held, nobody to ask: not run) | invalid (the call itself was malformed).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any


class DecisionLog:
    def __init__(self, path: Path | None, *, role: str | None = None, session: str | None = None) -> None:
        self.path = Path(path) if path else None
        self.role = role
        self.session = session or uuid.uuid4().hex[:12]
        self.records: list[dict[str, Any]] = []  # kept in memory too: the episode scorer reads them
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def record(
        self,
        *,
        step: int,
        tool: str,
        command: str,
        decision: str,
        rules: list[str],
        reason: str,
        outcome: str,
        exit_code: int | None = None,
    ) -> dict[str, Any]:
        rec = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "session": self.session,
            "step": step,
            "role": self.role,
            "tool": tool,
            "command": command,
            "decision": decision,
            "rules": rules,
            "reason": reason,
            "outcome": outcome,
            "exit_code": exit_code,
        }
        self.records.append(rec)
        if self.path:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                f.flush()
        return rec


def read_log(path: Path) -> list[dict[str, Any]]:
    """The records of a decision log; a cut-off last line (a killed session) is skipped."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
