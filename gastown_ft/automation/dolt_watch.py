"""What the Dolt beads sensor compares: per beads database, the Dolt HEAD (`dolt_log`, where the
server is Dolt), the row count and the newest updated_at (the watermark on any other server, and for
writes not yet committed)."""

from __future__ import annotations

from typing import Any

from gastown_ft.config import TownConfig
from gastown_ft.corpus.dolt import town_dolt_state
from gastown_ft.corpus.dolt_beads import TOWN_DATABASE

State = dict[str, dict[str, Any]]


def dolt_snapshot(town: TownConfig) -> State:
    """Raises GastownFTError (one line) when the server cannot be read."""
    return town_dolt_state(town)


def describe_state(state: State) -> str:
    parts = [
        f"{db} ({s.get('rows')} rows" + (f", HEAD {str(s['head'])[:8]})" if s.get("head") else ")")
        for db, s in sorted(state.items())
    ]
    return f"{len(state)} Dolt beads database(s): " + (", ".join(parts) or "none")


def diff_dolt(before: State, after: State) -> list[str]:
    """One description per database that changed, sorted by name."""
    out = []
    for db in sorted(set(before) | set(after)):
        if db not in before:
            out.append(f"{db}: new database ({after[db].get('rows')} rows)")
            continue
        if db not in after:
            out.append(f"{db}: database gone")
            continue
        b, a = before[db], after[db]
        parts = []
        if a.get("head") != b.get("head"):
            parts.append(f"new commit {str(a['head'])[:8]}" if a.get("head") else "no dolt_log any more")
        if a.get("rows") != b.get("rows"):
            parts.append(f"{b.get('rows')} -> {a.get('rows')} rows")
        if a.get("updated_at") != b.get("updated_at"):
            parts.append(f"newest updated_at {a.get('updated_at')}")
        if parts:
            out.append(f"{db}: " + ", ".join(parts))
    return out


def changed_rigs(before: State, after: State) -> list[str]:
    """The rigs (database names other than the town's `hq`) whose state differs."""
    return sorted(
        db for db in set(before) | set(after) if db != TOWN_DATABASE and before.get(db) != after.get(db)
    )
