"""Find a town's rigs and files once, with exclusions applied and walk problems recorded.

Layout (see ../shared/gastown-reference/README.md): the town root holds `mayor/`, `deacon/`,
`.beads/` (town beads and formulas), `.events.jsonl` and `logs/town.log`; every other top-level
directory is a rig (a git repo with its own `.beads/`, polecats/, crew/, CLAUDE.md, ...).
"""

from __future__ import annotations

import fnmatch
import os
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from gastown_ft.config import TownConfig
from gastown_ft.corpus.documents import ReadLog
from gastown_ft.corpus.files import os_error_reason

# Town-level directories that are not rigs.
TOWN_DIRS = frozenset({"mayor", "deacon", "logs", "settings", "plugins", "daemon", "docs"})
# Directories never walked: VCS internals and dependency trees, never corpus material.
SKIP_DIRS = frozenset({".git", "node_modules", "__pycache__", ".venv", ".dolt"})

# Quarantine source for problems that belong to no reader (a directory symlink loop, ...).
TOWN_SOURCE = "town"


@dataclass(frozen=True)
class Rig:
    name: str
    path: Path
    commit: str | None
    branch: str | None


@dataclass(frozen=True)
class WalkIssue:
    path: Path
    reason: str
    detail: str
    is_dir: bool


def git_head(path: Path) -> tuple[str | None, str | None]:
    """(commit, branch) of the git repo at `path`, or (None, None) when it is not one."""
    if not (path / ".git").exists():
        return None, None
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD", "--abbrev-ref", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None, None
    parts = out.stdout.split()
    if out.returncode != 0 or len(parts) < 2:
        return None, None
    return parts[0], parts[1]


@dataclass
class TownScan:
    """One walk of the town (and extra paths); readers filter `files` by their own patterns."""

    config: TownConfig
    root: Path = field(init=False)
    rigs: dict[str, Rig] = field(init=False, default_factory=dict)
    town_commit: str | None = field(init=False, default=None)
    files: list[Path] = field(init=False, default_factory=list)
    issues: list[WalkIssue] = field(init=False, default_factory=list)
    excluded: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.root = Path(self.config.root)
        self.town_commit, _ = git_head(self.root)
        self.rigs = self._find_rigs()
        self._walk()

    @property
    def max_bytes(self) -> int:
        return int(self.config.max_file_mb * 1024 * 1024)

    # -- rigs ---------------------------------------------------------------------------------
    def _find_rigs(self) -> dict[str, Rig]:
        rigs: dict[str, Rig] = {}
        try:
            entries = sorted(os.scandir(self.root), key=lambda e: e.name)
        except OSError:
            return rigs
        for e in entries:
            if e.name.startswith(".") or e.name in TOWN_DIRS:
                continue
            try:
                if not e.is_dir():
                    continue
            except OSError:
                continue
            if self.config.rigs and e.name not in self.config.rigs:
                continue
            if e.name in self.config.exclude_rigs:
                continue
            commit, branch = git_head(Path(e.path))
            rigs[e.name] = Rig(e.name, Path(e.path), commit, branch)
        return rigs

    def _is_rig_dir_excluded(self, name: str) -> bool:
        """A top-level directory that is a rig the config leaves out."""
        if name.startswith(".") or name in TOWN_DIRS:
            return False
        return name not in self.rigs

    # -- paths --------------------------------------------------------------------------------
    def rel(self, path: Path) -> str:
        """The path as stored in provenance: relative to the town root when inside it."""
        try:
            return Path(path).relative_to(self.root).as_posix()
        except ValueError:
            return Path(path).as_posix()

    def is_excluded(self, path: Path) -> bool:
        if not self.config.exclude:
            return False
        rel, absolute = self.rel(path), Path(path).as_posix()
        return any(
            fnmatch.fnmatchcase(rel, g) or fnmatch.fnmatchcase(absolute, g) for g in self.config.exclude
        )

    def rig_of(self, path: Path) -> Rig | None:
        rel = self.rel(path)
        if rel.startswith("/"):
            return None
        top = rel.split("/", 1)[0]
        return self.rigs.get(top)

    def provenance(self, path: Path) -> tuple[str | None, str | None]:
        """(rig name, git commit) for a file: its rig's HEAD, else the town's."""
        rig = self.rig_of(path)
        if rig is not None:
            return rig.name, rig.commit
        return None, self.town_commit

    # -- walking ------------------------------------------------------------------------------
    def _walk(self) -> None:
        roots = [self.root, *[Path(p) for p in self.config.extra_paths]]
        seen_dirs: set[tuple[int, int]] = set()
        for root in roots:
            if root.is_file():
                if not self.is_excluded(root):
                    self.files.append(root)
                continue
            if not root.is_dir():
                self.issues.append(WalkIssue(root, "missing_path", "source path does not exist", True))
                continue
            self._walk_dir(root, seen_dirs, top=(root == self.root))

    def _walk_dir(self, directory: Path, seen: set[tuple[int, int]], top: bool = False) -> None:
        try:
            st = directory.stat()
        except OSError as e:
            self.issues.append(WalkIssue(directory, os_error_reason(e), str(e), True))
            return
        key = (st.st_dev, st.st_ino)
        if key in seen:
            self.issues.append(
                WalkIssue(directory, "symlink_loop", "directory reached twice through a symlink", True)
            )
            return
        seen.add(key)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as e:
            self.issues.append(WalkIssue(directory, os_error_reason(e), str(e), True))
            return
        for e in entries:
            path = Path(e.path)
            if e.name in SKIP_DIRS:
                continue
            if self.is_excluded(path):
                self.excluded += 1
                continue
            try:
                is_dir = e.is_dir()  # follows symlinks
                if e.is_symlink():
                    os.stat(path)  # raises on loops and dangling links
            except OSError as err:
                self.issues.append(WalkIssue(path, os_error_reason(err), str(err), False))
                continue
            if top and is_dir and self._is_rig_dir_excluded(e.name):
                self.excluded += 1
                continue
            if is_dir:
                self._walk_dir(path, seen)
            else:
                self.files.append(path)

    def matching(
        self, predicate: Callable[[Path], bool], log: ReadLog, source: str, extra: Iterable[Path] = ()
    ) -> list[Path]:
        """Files this reader takes; walk problems on paths it would take go to its quarantine."""
        for issue in self.issues:
            if not issue.is_dir and predicate(issue.path):
                rig, _ = self.provenance(issue.path)
                log.quarantine(source, self.rel(issue.path), issue.reason, issue.detail, rig=rig)
        return [p for p in [*self.files, *extra] if predicate(p)]

    def town_level_issues(self, log: ReadLog, claimed: Callable[[Path], bool]) -> None:
        """Walk problems no reader claims (directory loops, unreadable directories)."""
        for issue in self.issues:
            if issue.is_dir or not claimed(issue.path):
                rig, _ = self.provenance(issue.path)
                log.quarantine(TOWN_SOURCE, self.rel(issue.path), issue.reason, issue.detail, rig=rig)
