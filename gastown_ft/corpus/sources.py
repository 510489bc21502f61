"""The readers by source name, and which files some reader claims (for walk problems)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from gastown_ft.corpus.beads import is_issues_file
from gastown_ft.corpus.beads_source import read_beads_from_source
from gastown_ft.corpus.conventions import is_convention_file, read_conventions
from gastown_ft.corpus.documents import Document, ReadLog
from gastown_ft.corpus.events import is_events_file, read_events
from gastown_ft.corpus.formulas import is_formula_file, read_formulas
from gastown_ft.corpus.scan import TownScan
from gastown_ft.corpus.transcripts import is_transcript_candidate, read_transcripts

Reader = Callable[[TownScan, ReadLog], Iterator[Document]]

READERS: dict[str, Reader] = {
    "formulas": read_formulas,
    "beads": read_beads_from_source,  # JSONL exports or the Dolt server, per town.beads_source
    "conventions": read_conventions,
    "transcripts": read_transcripts,
    "events": read_events,
}

_CLAIMS: tuple[Callable[[Path], bool], ...] = (
    is_formula_file,
    is_issues_file,
    is_convention_file,
    is_transcript_candidate,
    is_events_file,
)


def claimed_by_any_reader(path: Path) -> bool:
    return any(claim(path) for claim in _CLAIMS)
