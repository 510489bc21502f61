"""Stat-based snapshots of what each sensor watches: rig HEADs, formula, beads and transcript files.

A file snapshot maps each file's provenance path (as the readers store it: relative to the town
root, `claude-projects/...` for transcripts, absolute outside the town) to its size, mtime and rig.
Files are found with the readers' own rules (corpus.scan.TownScan, transcripts.transcript_files), so
a sensor watches exactly what a run would read; no file is opened.

What cannot be looked at goes to `unreadable` (a directory that cannot be listed, a dangling link):
the diff keeps the earlier state of files below it instead of calling them removed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from gastown_ft.automation.git_heads import read_git_head, rig_dirs
from gastown_ft.config import TownConfig
from gastown_ft.corpus.beads import BACKUP_SIDE_FILES, is_backup_dir, is_issues_file
from gastown_ft.corpus.documents import ReadLog
from gastown_ft.corpus.formulas import is_formula_file
from gastown_ft.corpus.scan import TownScan
from gastown_ft.corpus.transcripts import encode_project_dir, is_transcript_candidate, transcript_files


@dataclass(frozen=True)
class FileStat:
    size: int
    mtime_ns: int
    rig: str | None

    def to_json(self) -> list:
        return [self.size, self.mtime_ns, self.rig]

    @classmethod
    def from_json(cls, v: list) -> FileStat:
        return cls(int(v[0]), int(v[1]), v[2])


@dataclass
class FileSnapshot:
    files: dict[str, FileStat] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)  # provenance path -> why
    town_missing: str | None = None  # set when the town root itself is gone: nothing can be judged

    def rigs(self) -> set[str]:
        return {s.rig for s in self.files.values() if s.rig}


@dataclass
class HeadsSnapshot:
    heads: dict[str, dict] = field(default_factory=dict)  # rig -> {"commit": .., "branch": ..}
    unreadable: dict[str, str] = field(default_factory=dict)  # rig -> why
    town_missing: str | None = None


def _town_root(town: TownConfig) -> Path:
    return Path(os.path.expanduser(str(town.root)))


def _town_missing(town: TownConfig) -> str | None:
    root = _town_root(town)
    try:
        os.listdir(root)
    except OSError as e:
        return f"cannot list the town root {root}: {e.strerror or e}"
    return None


def rig_heads(town: TownConfig) -> HeadsSnapshot:
    snap = HeadsSnapshot(town_missing=_town_missing(town))
    if snap.town_missing:
        return snap
    try:
        rigs = rig_dirs(town)
    except OSError as e:
        snap.town_missing = f"cannot list the town root: {e.strerror or e}"
        return snap
    for name, path in rigs.items():
        head = read_git_head(path)
        if head is None:
            snap.heads[name] = {"commit": None, "branch": None, "git": False}
        elif head.error:
            snap.unreadable[name] = head.error
        else:
            snap.heads[name] = {"commit": head.commit, "branch": head.branch, "git": True}
    return snap


def _stat_into(snap: FileSnapshot, path: Path, prov: str, rig: str | None) -> None:
    try:
        st = os.stat(path)
    except OSError as e:
        snap.unreadable[prov] = e.strerror or str(e)
        return
    snap.files[prov] = FileStat(st.st_size, st.st_mtime_ns, rig)


def _walk_problems(scan: TownScan, snap: FileSnapshot, wanted) -> None:
    """Directories the walk could not list, and broken entries a reader would have taken."""
    for issue in scan.issues:
        if issue.is_dir or wanted(issue.path):
            snap.unreadable[scan.rel(issue.path)] = f"{issue.reason}: {issue.detail}"


def formula_files(town: TownConfig) -> FileSnapshot:
    """Every formula file in any search path the reader uses: rig and town `.beads/formulas/`, the
    copies embedded anywhere else in the town, and the extra paths."""
    snap = FileSnapshot(town_missing=_town_missing(town))
    if snap.town_missing:
        return snap
    scan = TownScan(town)
    _walk_problems(scan, snap, is_formula_file)
    for path in scan.files:
        if is_formula_file(path):
            rig, _ = scan.provenance(path)
            _stat_into(snap, path, scan.rel(path), rig)
    return snap


def beads_files(town: TownConfig) -> FileSnapshot:
    """`bd export` files (issues.jsonl) and, for `bd backup` directories, the side tables read with them."""
    snap = FileSnapshot(town_missing=_town_missing(town))
    if snap.town_missing:
        return snap
    scan = TownScan(town)
    _walk_problems(scan, snap, is_issues_file)
    for path in scan.files:
        if not is_issues_file(path):
            continue
        rig, _ = scan.provenance(path)
        _stat_into(snap, path, scan.rel(path), rig)
        if is_backup_dir(path.parent):
            for name in BACKUP_SIDE_FILES:
                side = path.parent / f"{name}.jsonl"
                if side.exists():
                    _stat_into(snap, side, scan.rel(side), rig)
    return snap


def _transcript_rig(prov: str, prefixes: list[str], rigs: list[str]) -> str | None:
    """The rig of a transcript from its project directory name (the encoded cwd of the session)."""
    parts = prov.split("/")
    if len(parts) < 2 or parts[0] != "claude-projects":
        return None
    project = parts[1]
    for prefix in prefixes:
        if not project.startswith(prefix + "-"):
            continue
        rest = project[len(prefix) + 1 :]
        # Longest first: rig "api-gw" must win over rig "api".
        for rig in sorted(rigs, key=len, reverse=True):
            encoded = encode_project_dir(rig)
            if rest == encoded or rest.startswith(encoded + "-"):
                return rig
    return None


def transcript_files_snapshot(town: TownConfig) -> FileSnapshot:
    """Every session transcript the reader would take (Claude projects of the town, extra paths)."""
    snap = FileSnapshot(town_missing=_town_missing(town))
    if snap.town_missing:
        return snap
    scan = TownScan(town)
    log = ReadLog()
    found = transcript_files(scan, log)
    _walk_problems(scan, snap, is_transcript_candidate)
    for q in log.quarantined:
        snap.unreadable[q.path] = f"{q.reason}: {q.detail}"
    root = _town_root(town).absolute()
    prefixes = sorted({encode_project_dir(root), encode_project_dir(root.resolve())}, key=len, reverse=True)
    for path, prov in found:
        rig = scan.rig_of(path)
        name = rig.name if rig else _transcript_rig(prov, prefixes, list(scan.rigs))
        _stat_into(snap, path, prov, name)
    return snap


def parse_file_state(raw: object) -> dict[str, FileStat] | None:
    """A file state read back from a cursor; None when it has the wrong shape (then: a new baseline)."""
    if not isinstance(raw, dict):
        return None
    try:
        return {str(p): FileStat.from_json(v) for p, v in raw.items()}
    except (TypeError, ValueError, IndexError):
        return None


def parse_heads_state(raw: object) -> dict[str, dict] | None:
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        return None
    return raw
