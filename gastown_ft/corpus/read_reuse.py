"""When a reader's output can be kept as it is: the fingerprint of everything a source's reader sees.

A reader's documents are a function of the town settings, the reader code, the git heads of the
town and its rigs, the walk problems and the files it may open. Which files a reader opens is not
declared, so the fingerprint of a source stamps (size, mtime, ctime, inode) every walked file
except those another reader claims: a file no reader claims (a side table, a rig config) counts
for every source, which is safe; an edited formula changes only the formulas fingerprint.
"""

from __future__ import annotations

import sys
from pathlib import Path

from gastown_ft.config import TownConfig
from gastown_ft.corpus import reuse
from gastown_ft.corpus.documents import SOURCES, ReadLog
from gastown_ft.corpus.scan import TownScan
from gastown_ft.corpus.sources import _CLAIMS, READERS
from gastown_ft.corpus.transcripts import transcript_files

CLAIMS = dict(zip(SOURCES, _CLAIMS, strict=True))

_READER_MODULES = (
    "gastown_ft.corpus.documents",
    "gastown_ft.corpus.files",
    "gastown_ft.corpus.scan",
    "gastown_ft.corpus.roles",
    "gastown_ft.corpus.sources",
    "gastown_ft.corpus.stages",
)


def _reader_modules(source: str) -> list[str]:
    reader = READERS[source]
    # A reader that dispatches (beads: JSONL or Dolt) names the modules it depends on.
    extra = getattr(sys.modules[reader.__module__], "READER_MODULES", ())
    mods = [*_READER_MODULES, reader.__module__, *extra]
    return [m for m in mods if m in sys.modules]


def _live_state(town: TownConfig, scan: TownScan, source: str) -> list:
    """Input a reader takes from a server, not a file (beads from Dolt): a part of its fingerprint."""
    live = getattr(sys.modules[READERS[source].__module__], "live_input_state", None)
    state = live(town, scan) if live is not None else None
    return [] if state is None else [state]


def source_fingerprint(town: TownConfig, scan: TownScan, source: str) -> str:
    others = [claim for name, claim in CLAIMS.items() if name != source]
    files: list[Path] = [p for p in scan.files if not any(claim(p) for claim in others)]
    if source == "transcripts":  # the Claude projects tree lies outside the town walk
        files += [p for p, _ in transcript_files(scan, ReadLog())]
    return reuse.fingerprint(
        "read",
        source,
        town.model_dump(mode="json"),
        reuse.code_version(*_reader_modules(source)),
        scan.town_commit,
        sorted((r.name, str(r.path), r.commit, r.branch) for r in scan.rigs.values()),
        sorted((str(i.path), i.reason, i.is_dir) for i in scan.issues),
        scan.excluded,
        sorted(scan.layout_counts().items()),  # a new worktree or redirect changes what the report says
        reuse.stamps(files),
        *_live_state(town, scan, source),
    )
