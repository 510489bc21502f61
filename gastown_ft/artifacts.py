"""The artifact store: the one place that knows where each artifact lives under the artifacts root,
and where each stage writes its Parquet tables (plain paths, atomic writes).

    <root>/raw|quarantine|corpus/<name>.parquet   the corpus stages' tables (`path`)
    <root>/corpus/splits/                         the dataset: data/<split>.parquet, README.md
    <root>/models/embedded/                       the embedded base model, when built
    <root>/training/runs/<plan>/                  one local training run per plan (resumable)
    <root>/training/swarm/<run id>/               one swarm peer's run
    <root>/evaluation/<run>/, evaluation/gguf/    evaluation results; llama.cpp's GGUF cache
    <root>/release/staging-<run>/                 an export being built, before it is registered
    <root>/registry/                              the model registry
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from gastown_ft.atomic import atomic_path
from gastown_ft.corpus.splits import DATA_DIR as SPLITS_DATA_DIR


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, stage: str, name: str, suffix: str = ".parquet") -> Path:
        return self.root / stage / f"{name}{suffix}"

    def splits_dir(self) -> Path:
        return self.root / "corpus" / "splits"

    def splits_data_dir(self) -> Path:
        return self.splits_dir() / SPLITS_DATA_DIR

    def split_path(self, split: str) -> Path:
        """One split's Parquet file in the dataset (present only when the split has rows)."""
        return self.splits_data_dir() / f"{split}.parquet"

    def embedded_model_dir(self) -> Path:
        return self.root / "models" / "embedded"

    def training_run_dir(self, plan_fingerprint: str) -> Path:
        """One directory per training plan, so a rerun of the same plan resumes from its checkpoint."""
        return self.root / "training" / "runs" / plan_fingerprint[:16]

    def swarm_run_dir(self, run_id: str) -> Path:
        return self.root / "training" / "swarm" / run_id

    def evaluation_dir(self, run_name: str) -> Path:
        """One trained run's evaluation results (named after the run's directory)."""
        return self.root / "evaluation" / run_name

    def gguf_cache_dir(self) -> Path:
        """llama.cpp's GGUF files made for evaluation, reused across runs."""
        return self.root / "evaluation" / "gguf"

    def release_staging_dir(self, run_id: str) -> Path:
        return self.root / "release" / f"staging-{run_id[:8]}"

    def registry_dir(self) -> Path:
        return self.root / "registry"

    def write_batches(self, stage: str, name: str, schema: pa.Schema, batches: Iterable[pa.Table]) -> Path:
        """Stream tables into one Parquet file; readers never see a half-written file."""
        dest = self.path(stage, name)
        with atomic_path(dest) as tmp, pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            wrote = False
            for t in batches:
                if t.num_rows:
                    writer.write_table(t)
                    wrote = True
            if not wrote:
                writer.write_table(schema.empty_table())
        return dest

    def write_table(self, stage: str, name: str, table: pa.Table) -> Path:
        return self.write_batches(stage, name, table.schema, [table])

    def read_table(self, stage: str, name: str) -> pa.Table:
        return pq.read_table(self.path(stage, name))

    def exists(self, stage: str, name: str) -> bool:
        return self.path(stage, name).exists()
