"""Crash-safe files and directories: written beside their place, synced to disk, then renamed in.

A reader sees the old content or the new one, never half a file; after a crash or power loss the
rename is on disk only once the data it points at is (hence the fsync of the file or tree first, and
of the parent directory after). A failed write leaves the old content and no temporary behind.

    write_text / write_bytes / write_json   one file, all at once
    atomic_path(dest)                       a temp path to write by any means (a Parquet writer, a
                                            subprocess); renamed in on success, removed on failure
    replace_file(tmp, dest)                 the commit step of atomic_path, for writers that outlive
                                            one `with` block
    staged_dir(target) / replace_dir        a whole directory, staged and swapped in
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import shutil
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Sync a directory's entries (a rename in it). Some filesystems refuse this; that is not an error."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Sync every file and directory under `root`, and `root` itself."""
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            continue
        if p.is_file():
            fsync_file(p)
        elif p.is_dir():
            fsync_dir(p)
    fsync_dir(root)


def temp_path(dest: Path) -> Path:
    """A fresh hidden name beside `dest` (same directory, so the rename cannot cross filesystems)."""
    return dest.with_name(f".{dest.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def replace_file(tmp: Path, dest: Path) -> None:
    """Put the finished file `tmp` at `dest`: synced first, renamed over it, the rename synced."""
    fsync_file(tmp)
    os.replace(tmp, dest)
    fsync_dir(dest.parent)


@contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """A temp path beside `dest` to write; on success it replaces `dest`, on failure it is removed."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(dest)
    try:
        yield tmp
        replace_file(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path, data: Any, **dumps: Any) -> None:
    """`json.dumps(data, **dumps)` written atomically (exactly that text: no newline is added)."""
    write_text(path, json.dumps(data, **dumps))


# --- directories ---------------------------------------------------------------------------------

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where that is not available."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    return renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def replace_dir(staged: Path, target: Path, *, owned: Collection[str] | None = None) -> None:
    """Put the finished directory `staged` at `target` (its tree synced first, the parent after); an
    old `target` is swapped out in one step where the OS can (else moved aside first) and removed.

    With `owned`, only those entries of an old `target` are replaced: its other entries are moved
    into the new directory first, so they survive. On failure `target` is left as it was."""
    fsync_tree(staged)
    if not (target.exists() or target.is_symlink()):
        os.rename(staged, target)
        fsync_dir(target.parent)
        return
    if owned is not None and not target.is_dir():
        raise ValueError(f"{target} exists and is not a directory")
    moved: list[str] = []
    try:
        for entry in sorted(target.iterdir()) if owned is not None else ():
            if entry.name not in owned:
                os.rename(entry, staged / entry.name)
                moved.append(entry.name)
        if _exchange(staged, target):
            old = staged  # after the exchange, the staged path holds the old directory
        else:
            old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:12]}")
            os.rename(target, old)
            try:
                os.rename(staged, target)
            except OSError:
                os.rename(old, target)
                raise
    except BaseException:
        for name in moved:  # put the foreign entries back where they were
            if (staged / name).exists() and not (target / name).exists():
                os.rename(staged / name, target / name)
        raise
    fsync_dir(target.parent)
    _remove(old)


@contextmanager
def staged_dir(target: Path, *, owned: Collection[str] | None = None) -> Iterator[Path]:
    """A fresh empty directory beside `target` to fill; on success it replaces `target` (replace_dir),
    on failure it is removed and `target` is left as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    # os.mkdir, not mkdtemp: the directory gets the usual permissions (0o777 less the umask), not 0o700
    staged.mkdir()
    try:
        yield staged
        replace_dir(staged, target, owned=owned)
    finally:
        if staged.exists() or staged.is_symlink():
            _remove(staged)
