"""The artifact store: where each stage writes its Parquet tables (plain paths, atomic writes)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, stage: str, name: str, suffix: str = ".parquet") -> Path:
        return self.root / stage / f"{name}{suffix}"

    def write_batches(self, stage: str, name: str, schema: pa.Schema, batches: Iterable[pa.Table]) -> Path:
        """Stream tables into one Parquet file; readers never see a half-written file."""
        dest = self.path(stage, name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(f".tmp-{os.getpid()}")
        try:
            with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
                wrote = False
                for t in batches:
                    if t.num_rows:
                        writer.write_table(t)
                        wrote = True
                if not wrote:
                    writer.write_table(schema.empty_table())
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest

    def write_table(self, stage: str, name: str, table: pa.Table) -> Path:
        return self.write_batches(stage, name, table.schema, [table])

    def read_table(self, stage: str, name: str) -> pa.Table:
        return pq.read_table(self.path(stage, name))

    def exists(self, stage: str, name: str) -> bool:
        return self.path(stage, name).exists()
