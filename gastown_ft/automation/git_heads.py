"""Each rig's git HEAD (its canonical clone's: commit and branch), read from the files under .git.

Reading `.git/HEAD`, the loose ref and `packed-refs` costs a few small reads per rig, where
`git rev-parse` costs a process; the `git` executable is the fallback for what the files cannot
answer (the reftable ref format). A rig that cannot be read gets an error, never an exception.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from gastown_ft.config import TownConfig
from gastown_ft.corpus.scan import discover_rigs

_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")  # SHA-1 or SHA-256 object ids
_MAX_SYMREF_DEPTH = 5


@dataclass(frozen=True)
class GitHead:
    """Where a repository's HEAD points. commit None: an unborn branch (no commit yet);
    branch None: a detached HEAD. `error` says why it could not be read (then both are None)."""

    commit: str | None
    branch: str | None
    error: str | None = None

    def short(self) -> str:
        return self.commit[:7] if self.commit else "(no commit)"


def _git_dir(repo: Path) -> Path | None:
    """The repository's git directory: `.git`, or where a `.git` file (worktree, submodule) points."""
    dotgit = repo / ".git"
    if dotgit.is_dir():
        return dotgit
    if dotgit.is_file():
        text = dotgit.read_text(encoding="utf-8").strip()
        if text.startswith("gitdir:"):
            target = Path(text[len("gitdir:") :].strip())
            return target if target.is_absolute() else (repo / target)
        raise OSError(f"{dotgit} is a file but not a `gitdir:` pointer")
    return None


def _common_dir(git_dir: Path) -> Path:
    """Where shared refs live: a linked worktree's git dir names it in `commondir`."""
    pointer = git_dir / "commondir"
    if pointer.is_file():
        target = Path(pointer.read_text(encoding="utf-8").strip())
        return target if target.is_absolute() else (git_dir / target)
    return git_dir


def _packed_ref(common: Path, ref: str) -> str | None:
    packed = common / "packed-refs"
    if not packed.is_file():
        return None
    for line in packed.read_text(encoding="utf-8").splitlines():
        if not line or line[0] in "#^":
            continue
        sha, _, name = line.partition(" ")
        if name == ref:
            return sha
    return None


class _NeedsGit(Exception):
    """The files alone cannot answer (reftable refs, an odd symref chain)."""


def _resolve_ref(git_dir: Path, common: Path, ref: str) -> str | None:
    """The commit a ref points at, or None for a branch without commits."""
    for _ in range(_MAX_SYMREF_DEPTH):
        for base in (git_dir, common):
            loose = base / ref
            if loose.is_file():
                value = loose.read_text(encoding="utf-8").strip()
                break
        else:
            value = _packed_ref(common, ref)
            if value is None:
                if (common / "reftable").is_dir():
                    raise _NeedsGit
                return None
        if value.startswith("ref:"):
            ref = value[4:].strip()
            continue
        if _SHA.match(value):
            return value
        raise _NeedsGit
    raise _NeedsGit


def _head_with_git(repo: Path) -> GitHead:
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "-q", "--verify", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        branch = subprocess.run(
            ["git", "-C", str(repo), "symbolic-ref", "-q", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError) as e:
        return GitHead(None, None, f"git failed: {e}")
    if commit.returncode not in (0, 1) or branch.returncode not in (0, 1):
        return GitHead(None, None, f"git failed: {(commit.stderr or branch.stderr).strip()[:200]}")
    return GitHead(commit.stdout.strip() or None, branch.stdout.strip() or None)


def read_git_head(repo: Path) -> GitHead | None:
    """HEAD of the repository at `repo`; None when it is not a git repository."""
    repo = Path(repo)
    try:
        git_dir = _git_dir(repo)
        if git_dir is None:
            return None
        head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
        if head.startswith("ref:"):
            ref = head[4:].strip()
            branch = ref.removeprefix("refs/heads/")
            return GitHead(_resolve_ref(git_dir, _common_dir(git_dir), ref), branch)
        if _SHA.match(head):
            return GitHead(head, None)
        raise _NeedsGit
    except _NeedsGit:
        return _head_with_git(repo)
    except (OSError, UnicodeDecodeError) as e:
        detail = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        return GitHead(None, None, f"cannot read the git HEAD of {repo}: {detail}")


def rig_dirs(town: TownConfig) -> dict[str, Path]:
    """The town's rigs (name -> the repository whose HEAD is the rig's commit), found as
    corpus.scan.TownScan finds them: `mayor/rigs.json` or the layout, and each rig's canonical clone
    `<rig>/mayor/rig` (the rig directory itself for a flat rig).

    Raises OSError when the town root itself cannot be listed."""
    return {name: d.clone for name, d in discover_rigs(town).rigs.items()}
