"""The outbox: what would have gone to the town when `bd` or `gt` could not take it.

`<artifacts>/town/outbox.jsonl`, one record a line: `{ts, cli, argv, cwd, kind, why, ...}` with the exact
command line, so an operator can read the story of a run, or replay the commands once `bd`/`gt` are
installed (a bead created there has no id here: later commands name it `<bead of RUN>`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from gastown_ft.town.feed import append_jsonl, now_rfc3339

OUTBOX_DIR = "town"
OUTBOX_FILE = "outbox.jsonl"


def outbox_path(artifacts_dir: str | os.PathLike) -> Path:
    return Path(artifacts_dir) / OUTBOX_DIR / OUTBOX_FILE


class Outbox:
    def __init__(self, artifacts_dir: str | os.PathLike) -> None:
        self.path = outbox_path(artifacts_dir)

    def add(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        append_jsonl(self.path, {"ts": now_rfc3339(), **record})

    def records(self) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out

    def summary(self) -> dict[str, Any] | None:
        """{path, count, by_kind, last, why}; None when nothing is waiting."""
        records = self.records()
        if not records:
            return None
        by_kind: dict[str, int] = {}
        for r in records:
            by_kind[str(r.get("kind"))] = by_kind.get(str(r.get("kind")), 0) + 1
        whys = sorted({str(r.get("why")) for r in records if r.get("why")})
        return {
            "path": str(self.path),
            "count": len(records),
            "by_kind": by_kind,
            "last": records[-1].get("ts"),
            "why": whys,
        }
