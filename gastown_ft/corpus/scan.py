"""Find a town's rigs and files once, with exclusions applied and walk problems recorded.

Layout (../shared/gastown-samples/gastown/docs/design/architecture.md, "Directory Structure"): the
town root holds `mayor/` (with `rigs.json`, the rig registry), `deacon/`, `.beads/` (town beads, `hq-`
ids, `routes.jsonl`, town formulas), `directives/`, `formula-overlays/`, `.events.jsonl` and
`logs/town.log`. A rig `<town>/<rig>/` is not a git clone: its canonical clone is `<rig>/mayor/rig`
(the rig's `.beads/` and its HEAD live there); `<rig>/refinery/rig` and `<rig>/polecats/<name>/<rig>`
are git worktrees of it and `<rig>/crew/<name>` are full clones. Those copies are not walked, so no
bead, formula or convention is read twice (transcripts are found by project folder, not here).

Rigs come from `mayor/rigs.json`; without it every other top-level directory is a rig. A flat rig
(a git clone at the top level, the layout of older towns and small fixtures) is its own clone.
A `.beads/redirect` stub is followed to the directory it names, which is read once (and not at all
when the walk already read it); the stub's own beads are never read.

The town's `.beads/routes.jsonl` (`{"prefix": "gt-", "path": "gastown/mayor/rig"}`, `"."` for the
town's own `hq-`) says where each bead id prefix lives: a bead belongs to the rig its prefix routes to,
whichever file it was read from (a rig's copy of an `hq-` bead is the town's). What the walk left out
(worktrees, clones, rigs, redirects followed or not needed) is counted by `layout_counts`, so the read
report shows it.
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from gastown_ft.config import TownConfig
from gastown_ft.corpus.documents import ReadLog
from gastown_ft.corpus.files import os_error_reason

# Town-level directories that are never rigs.
TOWN_DIRS = frozenset(
    {
        "mayor",
        "deacon",
        "logs",
        "settings",
        "plugins",
        "daemon",
        "docs",
        "directives",
        "formula-overlays",
        "config",
    }
)
# Directories never walked: VCS internals and dependency trees, never corpus material.
SKIP_DIRS = frozenset({".git", "node_modules", "__pycache__", ".venv", ".dolt", ".dolt-data"})
# Names a rig can never have, even when the rig registry lists them.
RESERVED_NAMES = frozenset(
    {"mayor", "deacon", "directives", "formula-overlays", "daemon", "logs", "settings"}
)
RIGS_REGISTRY = ("mayor", "rigs.json")
CANONICAL_CLONE = ("mayor", "rig")  # a rig's canonical clone, relative to the rig directory
# Rig subdirectories where agents keep worktrees and clones of the canonical clone.
AGENT_DIRS = frozenset({"refinery", "polecats", "crew", "witness"})
BEADS_DIR = ".beads"
REDIRECT_FILE = "redirect"
ROUTES_FILE = (BEADS_DIR, "routes.jsonl")  # the town's prefix -> beads location table
MAX_REDIRECT_HOPS = 8

# Quarantine source for problems that belong to no reader (a directory symlink loop, ...).
TOWN_SOURCE = "town"


@dataclass(frozen=True)
class Rig:
    name: str
    path: Path  # the rig directory under the town root
    commit: str | None  # HEAD of the canonical clone
    branch: str | None
    clone: Path | None = None  # the canonical clone: <rig>/mayor/rig, or the rig itself when flat

    @property
    def repo(self) -> Path:
        return self.clone or self.path


@dataclass(frozen=True)
class RigDirs:
    """Where a rig lies, before its git HEAD is read."""

    name: str
    path: Path
    clone: Path


@dataclass(frozen=True)
class WalkIssue:
    path: Path
    reason: str
    detail: str
    is_dir: bool


@dataclass(frozen=True)
class Copy:
    """A worktree or clone of a rig's canonical clone that the walk left out."""

    path: Path
    rig: str
    kind: str  # "worktree" (`.git` is a file) or "clone"


@dataclass(frozen=True)
class Redirect:
    """A `.beads/redirect` stub and what became of it."""

    stub: Path  # the .beads directory holding the redirect file
    target: Path | None  # the .beads directory it leads to (after any chain)
    rig: str | None
    outcome: str  # "read", "already_read", "excluded", or a problem reason


@dataclass(frozen=True)
class Route:
    """One line of the town's `.beads/routes.jsonl`: bead ids starting with `prefix` live at `path`."""

    prefix: str
    path: str  # as written: relative to the town root, "." for the town's own beads
    rig: str | None  # the rig that path lies in; None for the town, or for a place no rig read holds
    town: bool  # the path is the town's own `.beads/`

    @property
    def resolved(self) -> bool:
        return self.town or self.rig is not None


# Reasons in `layout_counts` (read report: what the walk did not read, and why).
LAYOUT_COUNTS = (
    "worktree_not_read",  # a git worktree of a rig's canonical clone (refinery/rig, polecats/<name>/<rig>)
    "clone_not_read",  # a full clone of it (crew/<name>)
    "rig_left_out",  # a rig-shaped directory not in mayor/rigs.json, or left out by town.rigs / exclude_rigs
    "redirect_followed",  # a `.beads/redirect` whose target was read through it
    "redirect_already_read",  # one whose target the walk had read already: not read twice
    "redirect_excluded",  # one whose target town.exclude leaves out
    "route_to_unread_place",  # a routes.jsonl line whose path lies in no rig that is read
)


@dataclass
class RigDiscovery:
    """The rigs of a town, how they were found, and top-level directories that are not read."""

    rigs: dict[str, RigDirs] = field(default_factory=dict)
    source: str = "layout"  # "rigs.json" or "layout"
    left_out: dict[str, str] = field(default_factory=dict)  # top-level dir -> why it is not walked
    issues: list[WalkIssue] = field(default_factory=list)


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


def read_rig_registry(root: Path) -> tuple[list[str] | None, WalkIssue | None]:
    """Rig names from `mayor/rigs.json` ({"version": 1, "rigs": {name: {...}}}).

    (None, None) when the file is absent; (None, issue) when it cannot be used."""
    path = root.joinpath(*RIGS_REGISTRY)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError) as e:
        reason = os_error_reason(e) if isinstance(e, OSError) else "bad_utf8"
        return None, WalkIssue(path, reason, f"cannot read the rig registry: {e}", False)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        return None, WalkIssue(path, "invalid_rigs_json", f"line {e.lineno}: {e.msg}", False)
    rigs = data.get("rigs") if isinstance(data, dict) else None
    if not isinstance(rigs, dict):
        return None, WalkIssue(path, "invalid_rigs_json", "no `rigs` object", False)
    return sorted(str(n) for n in rigs), None


def _rig_shaped(path: Path) -> bool:
    """A directory laid out like a rig (or a flat rig clone)."""
    return any(path.joinpath(*p).exists() for p in (CANONICAL_CLONE, (".git",), ("polecats",), ("refinery",)))


def _canonical_clone(rig_dir: Path) -> Path:
    clone = rig_dir.joinpath(*CANONICAL_CLONE)
    return clone if clone.is_dir() else rig_dir


def discover_rigs(config: TownConfig) -> RigDiscovery:
    """The town's rigs: from `mayor/rigs.json`, else every top-level directory that is not a town one.

    The config's `rigs` / `exclude_rigs` apply on top. Raises OSError when the root cannot be listed."""
    root = Path(os.path.expanduser(str(config.root)))
    found = RigDiscovery()
    entries = sorted(os.scandir(root), key=lambda e: e.name)
    registered, issue = read_rig_registry(root)
    if issue:
        found.issues.append(issue)
    if registered is not None:
        found.source = "rigs.json"
    dirs: dict[str, Path] = {}
    for e in entries:
        try:
            if e.is_dir():
                dirs[e.name] = Path(e.path)
        except OSError:
            continue
    if registered is not None:
        candidates = [n for n in registered if not n.startswith(".") and n not in RESERVED_NAMES]
        for name in candidates:
            if name not in dirs:
                found.issues.append(
                    WalkIssue(root / name, "missing_rig", "listed in mayor/rigs.json but not on disk", True)
                )
        for name, path in dirs.items():
            if name.startswith(".") or name in TOWN_DIRS or name in candidates:
                continue
            if _rig_shaped(path):
                found.left_out[name] = "not in mayor/rigs.json"
        names = [n for n in candidates if n in dirs]
    else:
        names = [n for n in dirs if not n.startswith(".") and n not in TOWN_DIRS]
    for name in names:
        if config.rigs and name not in config.rigs:
            found.left_out[name] = "not in town.rigs"
            continue
        if name in config.exclude_rigs:
            found.left_out[name] = "in town.exclude_rigs"
            continue
        path = dirs[name]
        found.rigs[name] = RigDirs(name, path, _canonical_clone(path))
    return found


def _redirect_line(text: str) -> str | None:
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line
    return None


def follow_redirect(beads_dir: Path) -> tuple[Path | None, str]:
    """The `.beads` directory a redirect stub leads to, after any chain: (target, "ok") or (None, why).

    A relative target is taken from the directory that holds the stub's `.beads` (as bd does)."""
    current = beads_dir
    visited = {os.path.normpath(beads_dir)}
    for _ in range(MAX_REDIRECT_HOPS):
        pointer = current / REDIRECT_FILE
        if not pointer.is_file():
            return current, "ok"
        try:
            line = _redirect_line(pointer.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            return None, "unreadable_redirect"
        if line is None:
            return None, "empty_redirect"
        target = Path(os.path.expanduser(line))
        if not target.is_absolute():
            target = current.parent / target
        target = Path(os.path.normpath(target))
        if str(target) in visited:
            return None, "redirect_loop"
        visited.add(str(target))
        if not target.is_dir():
            return None, "redirect_target_missing"
        current = target
    return None, "redirect_loop"


def read_routes(root: Path) -> tuple[list[tuple[str, str]], list[WalkIssue]]:
    """(prefix, path) pairs of the town's `.beads/routes.jsonl`, and problems with its lines.

    Absent file: no routes. A line that is not a JSON object with text `prefix` and `path` is reported
    (reason `invalid_route`) and left out; the other lines still count."""
    path = root.joinpath(*ROUTES_FILE)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return [], []
    except OSError as e:
        return [], [WalkIssue(path, os_error_reason(e), f"cannot read the bead routes: {e}", False)]
    routes: list[tuple[str, str]] = []
    issues: list[WalkIssue] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            issues.append(WalkIssue(path, "invalid_route", f"line {lineno}: {e.msg}", False))
            continue
        prefix = row.get("prefix") if isinstance(row, dict) else None
        where = row.get("path") if isinstance(row, dict) else None
        if not isinstance(prefix, str) or not prefix or not isinstance(where, str) or not where:
            issues.append(
                WalkIssue(path, "invalid_route", f"line {lineno}: needs text `prefix` and `path`", False)
            )
            continue
        routes.append((prefix, where))
    return routes, issues


@dataclass
class TownScan:
    """One walk of the town (and extra paths); readers filter `files` by their own patterns."""

    config: TownConfig
    root: Path = field(init=False)
    rigs: dict[str, Rig] = field(init=False, default_factory=dict)
    rig_source: str = field(init=False, default="layout")  # "rigs.json" or "layout"
    town_commit: str | None = field(init=False, default=None)
    files: list[Path] = field(init=False, default_factory=list)
    issues: list[WalkIssue] = field(init=False, default_factory=list)
    excluded: int = field(init=False, default=0)
    copies: list[Copy] = field(init=False, default_factory=list)
    redirects: list[Redirect] = field(init=False, default_factory=list)
    left_out: dict[str, str] = field(init=False, default_factory=dict)
    routes: list[Route] = field(init=False, default_factory=list)  # longest prefix first
    _redirect_roots: dict[Path, str | None] = field(init=False, default_factory=dict)
    _stubs: list[Path] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(os.path.expanduser(str(self.config.root)))
        self.town_commit, _ = git_head(self.root)
        self.rigs = self._find_rigs()
        self._walk()
        self.routes = self._read_routes()

    @property
    def max_bytes(self) -> int:
        return int(self.config.max_file_mb * 1024 * 1024)

    # -- rigs ---------------------------------------------------------------------------------
    def _find_rigs(self) -> dict[str, Rig]:
        try:
            found = discover_rigs(self.config)
        except OSError:
            return {}
        self.rig_source = found.source
        self.left_out = dict(found.left_out)
        self.issues.extend(found.issues)
        rigs: dict[str, Rig] = {}
        for name, d in found.rigs.items():
            commit, branch = git_head(d.clone)
            rigs[name] = Rig(name, d.path, commit, branch, d.clone)
        return rigs

    def _is_rig_dir_excluded(self, name: str) -> bool:
        """A top-level directory that is a rig the config (or the rig registry) leaves out."""
        return name in self.left_out

    def beads_dirs_of(self, rig: str) -> list[str]:
        """Where a rig's beads (and rig-tier formulas) live, as provenance paths."""
        r = self.rigs.get(rig)
        if r is None:
            return []
        out = [self.rel(r.path / BEADS_DIR), self.rel(r.repo / BEADS_DIR)]
        out += [self.rel(base) for base, name in self._redirect_roots.items() if name == rig]
        return list(dict.fromkeys(out))

    # -- bead routes ----------------------------------------------------------------------------
    def _read_routes(self) -> list[Route]:
        pairs, issues = read_routes(self.root)
        self.issues.extend(issues)
        routes: dict[str, Route] = {}
        for prefix, where in pairs:
            target = Path(os.path.expanduser(where))
            target = Path(os.path.normpath(target if target.is_absolute() else self.root / target))
            town = target == Path(os.path.normpath(self.root))
            rig = None if town else self.rig_of(target)
            routes[prefix] = Route(prefix, where, rig.name if rig else None, town)  # a later line wins
        return sorted(routes.values(), key=lambda r: (-len(r.prefix), r.prefix))

    def route_of(self, bead_id: str) -> Route | None:
        """The route of a bead id (the longest prefix that matches and leads somewhere read)."""
        for r in self.routes:
            if r.resolved and bead_id.startswith(r.prefix):
                return r
        return None

    def bead_provenance(self, bead_id: str, path: Path) -> tuple[str | None, str | None]:
        """(rig, commit) of a bead read from `path`: the rig its prefix routes to, when the town has
        routes for it (with that rig's HEAD, or the town's), else the file's own provenance."""
        route = self.route_of(bead_id)
        if route is None:
            return self.provenance(path)
        if route.town:
            return None, self.town_commit
        rig = self.rigs[route.rig]  # type: ignore[index]  # resolved: a rig that is read
        return rig.name, rig.commit

    # -- what the walk left out ---------------------------------------------------------------
    def layout_counts(self) -> dict[str, int]:
        """How many copies, rigs, redirects and routes the walk left out or followed (LAYOUT_COUNTS)."""
        counts = {
            "worktree_not_read": sum(1 for c in self.copies if c.kind == "worktree"),
            "clone_not_read": sum(1 for c in self.copies if c.kind == "clone"),
            "rig_left_out": len(self.left_out),
            "redirect_followed": sum(1 for r in self.redirects if r.outcome == "read"),
            "redirect_already_read": sum(1 for r in self.redirects if r.outcome == "already_read"),
            "redirect_excluded": sum(1 for r in self.redirects if r.outcome == "excluded"),
            "route_to_unread_place": sum(1 for r in self.routes if not r.resolved),
        }
        return {k: v for k, v in counts.items() if v}

    def record_layout(self, log: ReadLog) -> None:
        """Put `layout_counts` in a reader's log (its `skipped`), where the read report shows them."""
        for reason, n in self.layout_counts().items():
            log.skip(reason, n)

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
        for base, name in self._redirect_roots.items():
            if Path(path).is_relative_to(base):
                return self.rigs.get(name) if name else None
        rel = self.rel(path)
        if rel.startswith("/"):
            return None
        top = rel.split("/", 1)[0]
        return self.rigs.get(top)

    def provenance(self, path: Path) -> tuple[str | None, str | None]:
        """(rig name, git commit) for a file: its rig's canonical-clone HEAD, else the town's."""
        rig = self.rig_of(path)
        if rig is not None:
            return rig.name, rig.commit
        return None, self.town_commit

    def path_in_repo(self, path: Path) -> str:
        """The path inside its rig's canonical clone when it lies there, else the provenance path."""
        rig = self.rig_of(path)
        if rig is not None:
            try:
                return Path(path).relative_to(rig.repo).as_posix()
            except ValueError:
                pass
        return self.rel(path)

    def _copy_kind(self, directory: Path) -> tuple[str, str] | None:
        """(rig, "worktree" | "clone") when `directory` is a checkout an agent works in, not the canonical one."""
        try:
            parts = directory.relative_to(self.root).parts
        except ValueError:
            return None
        if len(parts) < 3 or parts[0] not in self.rigs or parts[1] not in AGENT_DIRS:
            return None
        if directory == self.rigs[parts[0]].repo:
            return None
        dotgit = directory / ".git"
        if dotgit.is_file():
            return parts[0], "worktree"
        if dotgit.is_dir():
            return parts[0], "clone"
        return None

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
        self._follow_redirects(seen_dirs)

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
            if not is_dir:
                self.files.append(path)
                continue
            if top and self._is_rig_dir_excluded(e.name):
                self.excluded += 1
                continue
            copy = self._copy_kind(path)
            if copy is not None:
                self.copies.append(Copy(path, *copy))
                continue
            if e.name == BEADS_DIR and (path / REDIRECT_FILE).is_file():
                self._stubs.append(path)
                # The stub's beads live elsewhere; formulas beside it are still found from here.
                if (path / "formulas").is_dir():
                    self._walk_dir(path / "formulas", seen)
                continue
            self._walk_dir(path, seen)

    def _follow_redirects(self, seen: set[tuple[int, int]]) -> None:
        """Read each redirect target once, after the walk, so a target the walk reached is not read again."""
        for stub in self._stubs:
            rig = self.rig_of(stub)
            rig_name = rig.name if rig else None
            target, why = follow_redirect(stub)
            if target is None:
                self.redirects.append(Redirect(stub, None, rig_name, why))
                self.issues.append(
                    WalkIssue(
                        stub / REDIRECT_FILE, why, f"{self.rel(stub)}/redirect cannot be followed", False
                    )
                )
                continue
            try:
                st = target.stat()
            except OSError as e:
                self.redirects.append(Redirect(stub, target, rig_name, os_error_reason(e)))
                self.issues.append(WalkIssue(target, os_error_reason(e), str(e), True))
                continue
            if (st.st_dev, st.st_ino) in seen:
                self.redirects.append(Redirect(stub, target, rig_name, "already_read"))
                continue
            if self.is_excluded(target):
                self.excluded += 1
                self.redirects.append(Redirect(stub, target, rig_name, "excluded"))
                continue
            self._redirect_roots[target] = rig_name
            self.redirects.append(Redirect(stub, target, rig_name, "read"))
            self._walk_dir(target, seen)

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
