"""Which beads reader a town uses: its JSONL exports or its Dolt SQL server (town.beads_source).

auto: the JSONL files (`bd export` / `bd backup`) when the town has any, else the Dolt server when
[town.dolt] is set. Rows on a server leave no file behind, so read reuse also fingerprints the
servers' state (`live_input_state`) while beads come from Dolt.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gastown_ft.config import TownConfig
from gastown_ft.corpus.beads import is_issues_file, read_beads
from gastown_ft.corpus.documents import Document, ReadLog
from gastown_ft.corpus.dolt import town_dolt_state
from gastown_ft.corpus.dolt_beads import read_dolt_beads
from gastown_ft.corpus.scan import TownScan

# The code the beads documents depend on besides this module (read reuse hashes it).
READER_MODULES = ("gastown_ft.corpus.beads", "gastown_ft.corpus.dolt_beads", "gastown_ft.corpus.dolt")


def beads_source_in_force(town: TownConfig, scan: TownScan | None = None) -> str:
    """ "jsonl" or "dolt". Walks the town (or uses `scan`) only when auto has to look for files."""
    if town.beads_source != "auto":
        return town.beads_source
    if town.dolt is None:
        return "jsonl"
    scan = scan if scan is not None else TownScan(town)
    return "jsonl" if any(is_issues_file(p) for p in scan.files) else "dolt"


def read_beads_from_source(scan: TownScan, log: ReadLog) -> Iterator[Document]:
    if beads_source_in_force(scan.config, scan) == "dolt":
        scan.record_layout(log)  # the JSONL reader counts them itself
        return read_dolt_beads(scan, log)
    return read_beads(scan, log)


def live_input_state(town: TownConfig, scan: TownScan) -> Any:
    """The Dolt databases' state while beads come from the server; None with JSONL (files say it all)."""
    if beads_source_in_force(town, scan) != "dolt":
        return None
    return town_dolt_state(town)
