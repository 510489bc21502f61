"""Reuse of earlier stage results by content: keys, code versions and the cache tables.

Every cache entry is keyed by what determines it: the content of its input rows, the settings that
affect the stage, and the source code of the modules that compute it (`code_version`). A cache
table lives under <artifacts>/cache/<name>.parquet and carries the version of the stage that wrote
it in its schema metadata; a table written by another version is ignored. Each build rewrites the
table with only the entries it used, so entries of content that no longer occurs are evicted.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from gastown_ft import atomic
from gastown_ft.artifacts import ArtifactStore
from gastown_ft.corpus.splits import CARD_NAME

CACHE_STAGE = "cache"
VERSION_KEY = b"gastown_ft_reuse_version"


def code_version(*modules: ModuleType | str) -> str:
    """A hash of the source files of `modules`: editing the code of a stage invalidates its cache."""
    h = hashlib.sha256()
    for m in modules:
        mod = sys.modules[m] if isinstance(m, str) else m
        path = getattr(mod, "__file__", None)
        h.update(mod.__name__.encode() + b"\0")
        if path:
            h.update(Path(path).read_bytes())
    return h.hexdigest()


def fingerprint(*parts: Any) -> str:
    """A hash of JSON-able parts (settings, versions)."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def row_keys(table: pa.Table, salt: str, columns: Sequence[str] | None = None) -> list[str]:
    """One key per row: a hash of `salt` and every value of the row (all columns unless named)."""
    names = list(columns or table.column_names)
    values = [table.column(n).to_pylist() for n in names]
    prefix = salt.encode()
    out = []
    for row in zip(*values, strict=True):
        h = hashlib.blake2b(prefix, digest_size=16)
        for v in row:
            h.update(b"\x1f" + repr(v).encode("utf-8", "surrogatepass"))
        out.append(h.hexdigest())
    return out


def derived_key(*parts: str) -> str:
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()


def load_cache(store: ArtifactStore, name: str, version: str) -> pa.Table | None:
    """The cache table `name` if it exists and was written by this `version`, else None."""
    path = store.path(CACHE_STAGE, name)
    if not path.exists():
        return None
    try:
        schema = pq.read_schema(path)
        if (schema.metadata or {}).get(VERSION_KEY) != version.encode():
            return None
        return pq.read_table(path)
    except (OSError, pa.ArrowException):
        return None  # a damaged cache is only a slower build


def save_cache(store: ArtifactStore, name: str, version: str, table: pa.Table) -> Path:
    meta = dict(table.schema.metadata or {})
    meta[VERSION_KEY] = version.encode()
    return store.write_table(CACHE_STAGE, name, table.replace_schema_metadata(meta))


def open_cache(store: ArtifactStore, name: str, version: str) -> pq.ParquetFile | None:
    """`load_cache` for reading a row group at a time: the open file, or None."""
    path = store.path(CACHE_STAGE, name)
    if not path.exists():
        return None
    try:
        pf = pq.ParquetFile(path)
        if (pf.schema_arrow.metadata or {}).get(VERSION_KEY) != version.encode():
            return None
        return pf
    except (OSError, pa.ArrowException):
        return None


class CacheWriter:
    """A cache table written a batch at a time (each batch one row group). It takes the place of the
    old table only on `commit`, so the old one can be read while the new one is written."""

    def __init__(self, store: ArtifactStore, name: str, version: str, schema: pa.Schema) -> None:
        self.path = store.path(CACHE_STAGE, name)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = atomic.temp_path(self.path)
        meta = {**(schema.metadata or {}), VERSION_KEY: version.encode()}
        self.schema = schema.with_metadata(meta)
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(self.tmp, self.schema, compression="zstd")

    def write(self, table: pa.Table) -> None:
        if table.num_rows and self._writer is not None:
            self._writer.write_table(table.replace_schema_metadata(self.schema.metadata))

    def close(self) -> Path:
        """The written table, not yet in place."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        return self.tmp

    def commit(self) -> Path:
        atomic.replace_file(self.close(), self.path)
        return self.path

    def discard(self) -> None:
        self.close()
        self.tmp.unlink(missing_ok=True)


def load_state(store: ArtifactStore, name: str) -> dict[str, Any] | None:
    path = store.path(CACHE_STAGE, name, ".json")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def save_state(store: ArtifactStore, name: str, state: dict[str, Any]) -> None:
    atomic.write_json(store.path(CACHE_STAGE, name, ".json"), state, sort_keys=True, default=str)


def file_stamp(path: Path) -> list[Any]:
    """What tells a file changed without reading it: size, mtime and ctime (ns), inode."""
    try:
        st = os.stat(path)
    except OSError as e:
        return [str(path), "missing", e.errno]
    return [str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def stamps(paths: Iterable[Path]) -> list[list[Any]]:
    return [file_stamp(p) for p in sorted(set(paths))]


def build_outputs(root: Path) -> dict[str, Any]:
    """Every output of the corpus stages under an artifacts dir (not the cache): tables and the
    dataset card, by relative path. Two builds agree when these are equal."""
    root = Path(root)
    out: dict[str, Any] = {}
    for stage in ("raw", "quarantine", "corpus"):
        for path in sorted((root / stage).rglob("*.parquet")):
            out[path.relative_to(root).as_posix()] = pq.read_table(path)
    card = ArtifactStore(root).splits_dir() / CARD_NAME
    if card.exists():
        out[card.relative_to(root).as_posix()] = card.read_text()
    return out


def output_differences(a: Path, b: Path) -> list[str]:
    """What differs between the outputs under two artifacts dirs; empty when they are equal."""
    left, right = build_outputs(a), build_outputs(b)
    diffs = [f"{name}: only in {a if name in left else b}" for name in sorted(set(left) ^ set(right))]
    for name in sorted(set(left) & set(right)):
        x, y = left[name], right[name]
        if isinstance(x, pa.Table):
            if x.schema.remove_metadata() != y.schema.remove_metadata():
                diffs.append(f"{name}: schemas differ")
            elif not x.equals(y):
                diffs.append(f"{name}: {x.num_rows} vs {y.num_rows} rows, contents differ")
        elif x != y:
            diffs.append(f"{name}: differs")
    return diffs
