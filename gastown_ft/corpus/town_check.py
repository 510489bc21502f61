"""Is `[town] root` a Gas Town? Checked once, before any stage reads it, so a wrong root fails with one
clear error (what is wrong, and a hint) instead of an empty corpus or a traceback in a stage.

What counts (../shared/gastown-samples/gastown/docs/design/architecture.md, "Directory Structure"):

- a real town: `mayor/town.json` or `mayor/rigs.json` (what `gt install` writes), with `.beads/`
  (`routes.jsonl`), `deacon/`, `daemon/`, `.dolt-data/`, `CLAUDE.md` and one directory per rig whose
  canonical clone is `<rig>/mayor/rig/`;
- the flat layouts gastown-ft has always read (its demo town, older towns): a town `.beads/` or `mayor/`
  plus at least one more sign: the other one of those, `deacon/`, `.beads/routes.jsonl`, `.events.jsonl`,
  or a rig directory with its own `.beads/`.

A rig (`<rig>/mayor/rig/` without `mayor/town.json`), a single beads project (only `.beads/`), an empty
or missing directory are refused, naming the enclosing town when there is one. The Claude Code project
folders the transcripts reader will match (under `claude_projects_dir`, named from the town path) are
listed too: `gastown-ft init` prints them, and a config that reads only transcripts needs at least one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from gastown_ft.config import TownConfig
from gastown_ft.corpus.documents import SOURCES
from gastown_ft.corpus.scan import TOWN_DIRS
from gastown_ft.corpus.town_paths import encode_project_dir, root_variants
from gastown_ft.errors import GastownFTError

TOWN_FILE_SOURCES = frozenset({"formulas", "beads", "conventions", "events"})  # read from the root
REAL_MARKERS = ("mayor/town.json", "mayor/rigs.json")
# Signs of a town, each with what it is (for the message).
SIGNS = {
    "mayor": "mayor/",
    ".beads": ".beads/",
    "deacon": "deacon/",
    "daemon": "daemon/",
    ".dolt-data": ".dolt-data/",
    ".beads/routes.jsonl": ".beads/routes.jsonl",
    ".events.jsonl": ".events.jsonl",
    "CLAUDE.md": "CLAUDE.md",
}
IGNORABLE = frozenset({".DS_Store", "Thumbs.db"})  # left by file browsers: not content
ROOT_HINT = "set [town] root in gastown-ft.toml to the directory `gt install` created (default ~/gt)"
ENCLOSING_LEVELS = 6  # how far up to look for the town a wrong root sits in


@dataclass
class TownCheck:
    root: Path
    layout: str  # "gas town" (mayor/town.json or rigs.json) or "flat" (older and demo towns)
    signs: list[str]
    rigs: list[str]
    claude_projects_dir: Path
    transcript_dirs: list[Path] = field(default_factory=list)  # project folders the reader will match
    transcript_files: int = 0

    def lines(self) -> list[str]:
        """What `gastown-ft init` prints about the town."""
        rigs = ", ".join(self.rigs) if self.rigs else "none found"
        out = [
            f"town        {self.root}: a Gas Town ({self.layout} layout; {', '.join(self.signs)})",
            f"rigs        {rigs}",
        ]
        if self.transcript_dirs:
            names = ", ".join(p.name for p in self.transcript_dirs[:4])
            more = f" and {len(self.transcript_dirs) - 4} more" if len(self.transcript_dirs) > 4 else ""
            out.append(
                f"transcripts {len(self.transcript_dirs)} Claude Code project folder(s) under "
                f"{self.claude_projects_dir} match the town ({self.transcript_files} .jsonl files): {names}{more}"
            )
        elif not self.claude_projects_dir.is_dir():
            out.append(
                f"transcripts {self.claude_projects_dir} does not exist: no session transcripts will be read "
                "(set [town] claude_projects_dir if Claude Code keeps them elsewhere)"
            )
        else:
            out.append(
                f"transcripts no folder under {self.claude_projects_dir} matches the town (expected names "
                f"starting with {transcript_prefixes(self.root)[0]}): no session transcripts will be read"
            )
        return out


def transcript_prefixes(root: Path) -> list[str]:
    return [encode_project_dir(p) for p in root_variants(root)]


def transcript_folders(cfg: TownConfig) -> tuple[list[Path], int]:
    """(the project folders under claude_projects_dir the transcripts reader takes, their .jsonl files)."""
    base = Path(os.path.expanduser(str(cfg.claude_projects_dir)))
    if not base.is_dir():
        return [], 0
    prefixes = transcript_prefixes(Path(cfg.root))
    try:
        entries = sorted(os.scandir(base), key=lambda e: e.name)
    except OSError:
        return [], 0
    dirs = [
        Path(e.path)
        for e in entries
        if (cfg.transcripts_all_projects or any(e.name == p or e.name.startswith(p + "-") for p in prefixes))
        and e.is_dir()
    ]
    files = sum(
        1 for d in dirs for _dirpath, _dirs, names in os.walk(d) for n in names if n.endswith(".jsonl")
    )
    return dirs, files


def _has(root: Path, rel: str) -> bool:
    try:
        return (root / rel).exists()
    except OSError:
        return False


def _rig_dirs(root: Path, entries: list[os.DirEntry]) -> list[str]:
    """Top-level directories that look like rigs: a canonical clone (mayor/rig), or a flat rig's .beads/."""
    rigs = []
    for e in entries:
        if e.name.startswith(".") or e.name in TOWN_DIRS:
            continue
        try:
            if not e.is_dir():
                continue
        except OSError:
            continue
        if _has(root / e.name, "mayor/rig") or _has(root / e.name, ".beads"):
            rigs.append(e.name)
    return rigs


def _looks_like_town(path: Path) -> bool:
    return any(_has(path, m) for m in REAL_MARKERS) or (_has(path, "mayor") and _has(path, ".beads"))


def _registered_rigs(root: Path) -> list[str] | None:
    """The rig names of `mayor/rigs.json` (the town's rig registry), None when it is absent or unreadable."""
    try:
        data = json.loads((root / "mayor" / "rigs.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    rigs = data.get("rigs") if isinstance(data, dict) else None
    return sorted(rigs) if isinstance(rigs, dict) else None


def _enclosing_town(root: Path) -> Path | None:
    return next((p for p in list(root.parents)[:ENCLOSING_LEVELS] if _looks_like_town(p)), None)


def _not_a_town(root: Path, why: str) -> GastownFTError:
    town = _enclosing_town(root)
    hint = f"it lies inside the town {town}: set [town] root to that" if town else ROOT_HINT
    return GastownFTError(f"{root} is not a Gas Town root: {why}", hint=hint)


def check_root(root: Path) -> tuple[str, list[str], list[str]]:
    """(layout, signs found, rig directories) of a town root; GastownFTError when it is not one."""
    root = Path(os.path.expanduser(str(root)))
    if not root.exists():
        parent = next((p for p in root.parents if p.exists()), None)
        where = f" ({parent} exists)" if parent is not None and parent != Path(root.anchor) else ""
        raise GastownFTError(f"the town root {root} does not exist{where}", hint=ROOT_HINT)
    if not root.is_dir():
        raise GastownFTError(f"the town root {root} is a file, not a directory", hint=ROOT_HINT)
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as e:
        raise GastownFTError(
            f"cannot read the town root {root}: {e.strerror or e}", hint="check its permissions"
        ) from None
    if not [e for e in entries if e.name not in IGNORABLE]:
        raise GastownFTError(
            f"the town root {root} is empty",
            hint=f"{ROOT_HINT}; a new town is made with `gt install <dir>`",
        )
    signs = [label for rel, label in SIGNS.items() if _has(root, rel)]
    rigs = _rig_dirs(root, entries)
    if any(_has(root, m) for m in REAL_MARKERS):
        registered = _registered_rigs(root)
        return "gas town", [m for m in REAL_MARKERS if _has(root, m)] + signs, registered or rigs
    if _has(root, "mayor/rig"):
        raise GastownFTError(
            f"{root} is a rig of a town (it has mayor/rig/, the rig's canonical clone), not the town root",
            hint=f"set [town] root to the town: {_enclosing_town(root) or root.parent}",
        )
    has_home = ".beads/" in signs or "mayor/" in signs
    others = [s for s in signs if s not in (".beads/", "CLAUDE.md")]  # a beads project has .beads/ alone
    if has_home and (others or rigs):
        return "flat", signs, rigs
    if ".beads/" in signs:
        raise _not_a_town(
            root, "it has .beads/ but no mayor/, no routes and no rigs (a single beads project?)"
        )
    found = ", ".join(e.name for e in entries[:5]) + (" ..." if len(entries) > 5 else "")
    raise _not_a_town(root, f"no mayor/, .beads/ or rig directories in it (it holds {found})")


def check_town(cfg: TownConfig) -> TownCheck:
    """The town `cfg` names, checked: GastownFTError when its root is missing, empty or not a Gas Town
    (unless only transcripts are read, which need only matching project folders)."""
    root = Path(os.path.expanduser(str(cfg.root)))
    projects = Path(os.path.expanduser(str(cfg.claude_projects_dir)))
    dirs, files = transcript_folders(cfg)
    if TOWN_FILE_SOURCES & set(cfg.sources) or not cfg.sources:
        layout, signs, rigs = check_root(root)
    else:  # transcripts only: the root is only the name the project folders are matched by
        if "transcripts" in cfg.sources and not dirs and not cfg.extra_paths:
            raise GastownFTError(
                f"[town] sources reads only transcripts, and no Claude Code project folder under {projects} "
                f"matches the town {root}",
                hint=f"folders are named after the agent's directory, e.g. {transcript_prefixes(root)[0]}-mayor;"
                " check [town] root and claude_projects_dir",
            )
        layout, signs, rigs = "transcripts only", [], []
    return TownCheck(root, layout, signs, rigs, projects, dirs, files)


# Assets that read the town itself (the readers, and the quarantine's walk of it).
TOWN_ASSETS = frozenset({f"raw_{s}" for s in SOURCES} | {"quarantine"})


def check_town_for(cfg: TownConfig, selection: Iterable[str] | None) -> TownCheck | None:
    """`check_town` when the assets selected (None: all) read the town; None when none does."""
    if selection is not None and not TOWN_ASSETS & set(selection):
        return None
    return check_town(cfg)
