"""The evaluation's GGUF files, the base model's and the merged tuned model's, cached by fingerprint.

Each file is named after the fingerprint of what it is made from: the model directory (file names
and contents), the adapter's for the tuned one, and the converter's own source (export/gguf.py and
export/merge.py). An unchanged pair is never converted twice, and a changed model, adapter or
converter never reuses a stale file. The cache keeps the `KEEP` most recently used files.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

KEEP = 4  # two evaluations' pairs: the one running and the one before


@dataclass(frozen=True)
class GGUFPair:
    base: Path
    tuned: Path | None
    converted: tuple[str, ...]  # "base" / "tuned": converted by this call (the others came from the cache)
    seconds: float  # fingerprinting and converting, all told


def _hash_file(h, path: Path) -> None:
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)


def dir_fingerprint(path: Path | str) -> str:
    """sha256 (hex) over the relative names and contents of the files under `path` (hidden ones and
    temporary leftovers skipped); independent of the directory's location and of file times."""
    root = Path(path)
    total = hashlib.sha256()
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(s.startswith(".") for s in p.relative_to(root).parts)
    )
    for p in files:
        h = hashlib.sha256()
        _hash_file(h, p)
        total.update(p.relative_to(root).as_posix().encode("utf-8") + b"\0" + h.digest())
    return total.hexdigest()


def converter_fingerprint() -> str:
    """sha256 (hex) of the source that writes the files: a changed converter makes new files."""
    from gastown_ft.export import gguf, merge

    h = hashlib.sha256()
    for module in (gguf, merge):
        _hash_file(h, Path(module.__file__))
    return h.hexdigest()


def _touch(path: Path) -> None:
    os.utime(path)  # the newest files are the ones kept


def _prune(cache: Path, keep: int) -> None:
    files = sorted(cache.glob("*.gguf"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in files[keep:]:
        old.unlink(missing_ok=True)


def gguf_pair(
    base_dir: Path | str,
    adapter_dir: Path | str | None,
    cache_dir: Path | str,
    *,
    dtype: str = "f16",
    keep: int = KEEP,
) -> GGUFPair:
    """(base GGUF, tuned GGUF) for a base model directory and its LoRA adapter, from `cache_dir` when
    there, else converted into it (the adapter merged in float32, then written in `dtype` as the export
    writes). GastownFTError when the model cannot be written as GGUF (another architecture...)."""
    from gastown_ft.export.gguf import write_gguf
    from gastown_ft.export.merge import merge_adapter

    started = time.perf_counter()
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    base_dir = Path(base_dir)
    converter = converter_fingerprint()
    base_fp = hashlib.sha256(f"{converter}:{dtype}:{dir_fingerprint(base_dir)}".encode()).hexdigest()
    base_gguf = cache / f"base-{base_fp[:20]}.gguf"
    converted: list[str] = []
    if not base_gguf.is_file():
        write_gguf(base_dir, base_gguf, dtype, name="base")  # written beside, renamed into place
        converted.append("base")
    _touch(base_gguf)
    tuned_gguf = None
    if adapter_dir is not None:
        tuned_fp = hashlib.sha256(f"{base_fp}:{dir_fingerprint(adapter_dir)}".encode()).hexdigest()
        tuned_gguf = cache / f"tuned-{tuned_fp[:20]}.gguf"
        if not tuned_gguf.is_file():
            merged_dir = cache / f".merged-{tuned_fp[:20]}-{os.getpid()}"
            try:
                merged = merge_adapter(base_dir, adapter_dir, merged_dir, dtype="float32")
                write_gguf(merged.path, tuned_gguf, dtype, name="tuned")
            finally:
                shutil.rmtree(merged_dir, ignore_errors=True)  # only the GGUF is kept
            converted.append("tuned")
        _touch(tuned_gguf)
    _prune(cache, max(keep, 2))
    return GGUFPair(base_gguf, tuned_gguf, tuple(converted), time.perf_counter() - started)
