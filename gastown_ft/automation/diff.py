"""What changed between a sensor's cursor (the last state it acted on) and a new snapshot, in words.

Files below a path that could not be read keep their earlier state: an unreadable directory is not
a deleted one, and must not empty the corpus.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from gastown_ft.automation.snapshots import FileSnapshot, FileStat, HeadsSnapshot

FILE_KINDS = ("added", "changed", "grew", "shrank", "removed")


@dataclass(frozen=True)
class FileChange:
    path: str
    kind: str  # one of FILE_KINDS
    rig: str | None
    size_before: int | None = None
    size_after: int | None = None
    mtime_ns: int | None = None  # of the file as it is now (None when removed)

    def describe(self) -> str:
        if self.kind in ("grew", "shrank") and self.size_before is not None and self.size_after is not None:
            return f"{self.kind} {self.path} ({_size(self.size_after - self.size_before, signed=True)})"
        return f"{self.kind} {self.path}"


def _size(n: int, signed: bool = False) -> str:
    sign = ("+" if n >= 0 else "-") if signed else ""
    n = abs(n)
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{sign}{n:.0f} {unit}" if unit == "B" else f"{sign}{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _under(path: str, prefixes: dict[str, str]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes)


def diff_files(before: dict[str, FileStat], after: FileSnapshot) -> list[FileChange]:
    """Every added, changed or removed file, in path order."""
    out: list[FileChange] = []
    for path, new in after.files.items():
        old = before.get(path)
        if old is None:
            out.append(FileChange(path, "added", new.rig, None, new.size, new.mtime_ns))
        elif (old.size, old.mtime_ns) != (new.size, new.mtime_ns):
            kind = "grew" if new.size > old.size else "shrank" if new.size < old.size else "changed"
            out.append(FileChange(path, kind, new.rig or old.rig, old.size, new.size, new.mtime_ns))
    for path, old in before.items():
        if path not in after.files and not _under(path, after.unreadable):
            out.append(FileChange(path, "removed", old.rig, old.size, None, None))
    return sorted(out, key=lambda c: c.path)


def next_file_state(
    before: dict[str, FileStat], after: FileSnapshot, deferred: frozenset[str] = frozenset()
) -> dict[str, FileStat]:
    """The cursor state after acting on the changes: the new snapshot, except files below an unreadable
    path (kept as they were) and `deferred` paths (not acted on yet, so they stay as they were)."""
    state = dict(after.files)
    for path, old in before.items():
        if path not in after.files and _under(path, after.unreadable):
            state[path] = old
    for path in deferred:
        if path in before:
            state[path] = before[path]
        else:
            state.pop(path, None)
    return dict(sorted(state.items()))


def describe_file_changes(what: str, changes: list[FileChange], limit: int = 4) -> str:
    """One line: 'formulas: 1 changed, 1 added: changed a.formula.toml; added b.formula.toml'."""
    counts = Counter(c.kind for c in changes)
    summary = ", ".join(f"{counts[k]} {k}" for k in FILE_KINDS if counts[k])
    shown = "; ".join(c.describe() for c in changes[:limit])
    more = f"; and {len(changes) - limit} more" if len(changes) > limit else ""
    return f"{what}: {summary}: {shown}{more}"


def rigs_of(changes: list[FileChange]) -> list[str]:
    return sorted({c.rig for c in changes if c.rig})


def _short(head: dict | None) -> str:
    commit = (head or {}).get("commit")
    return commit[:7] if commit else "(no commit)"


@dataclass(frozen=True)
class HeadChange:
    rig: str
    kind: str  # "commit", "branch", "added", "removed"
    before: dict | None
    after: dict | None

    def describe(self) -> str:
        if self.kind == "added":
            if not self.after or not self.after.get("git", True):
                return f"rig {self.rig}: new rig (not a git repository)"
            return f"rig {self.rig}: new rig (HEAD {_short(self.after)} on {self.after.get('branch') or 'detached HEAD'})"
        if self.kind == "removed":
            return f"rig {self.rig}: removed from the town"
        old_branch = (self.before or {}).get("branch")
        new_branch = (self.after or {}).get("branch")
        if self.kind == "branch":
            return (
                f"rig {self.rig}: branch {old_branch or 'detached HEAD'} -> {new_branch or 'detached HEAD'} "
                f"(HEAD {_short(self.before)} -> {_short(self.after)})"
            )
        return (
            f"rig {self.rig}: HEAD {_short(self.before)} -> {_short(self.after)} "
            f"({'branch ' + new_branch if new_branch else 'detached HEAD'})"
        )


def diff_heads(before: dict[str, dict], after: HeadsSnapshot) -> list[HeadChange]:
    out: list[HeadChange] = []
    for rig, new in after.heads.items():
        old = before.get(rig)
        if old is None:
            out.append(HeadChange(rig, "added", None, new))
        elif old.get("branch") != new.get("branch"):
            out.append(HeadChange(rig, "branch", old, new))
        elif old.get("commit") != new.get("commit"):
            out.append(HeadChange(rig, "commit", old, new))
    for rig, old in before.items():
        if rig not in after.heads and rig not in after.unreadable:
            out.append(HeadChange(rig, "removed", old, None))
    return sorted(out, key=lambda c: c.rig)


def next_heads_state(before: dict[str, dict], after: HeadsSnapshot) -> dict[str, dict]:
    """The new HEADs, keeping the last known HEAD of a rig that could not be read this time."""
    state = dict(after.heads)
    for rig in after.unreadable:
        if rig in before:
            state[rig] = before[rig]
    return dict(sorted(state.items()))
