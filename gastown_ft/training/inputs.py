"""What training starts from: the corpus splits on disk, the base model, and the plan built from them.

Plain functions (no Dagster) shared by the `lora_adapter` asset, `gastown-ft train --dry-run`, the
swarm peers and the evaluation.
"""

from __future__ import annotations

import pyarrow.parquet as pq

from gastown_ft.artifacts import ArtifactStore
from gastown_ft.config import Settings
from gastown_ft.corpus.splits import SPLITS, corpus_version, example_from_record
from gastown_ft.errors import GastownFTError


def resolve_configured_base(cfg: Settings, store: ArtifactStore):
    """The base model `[training] base_model` names (a ResolvedModel), presets converted on first use."""
    from gastown_ft.training.base_model import resolve_base_model

    return resolve_base_model(
        cfg.training.base_model,
        allow_network=cfg.training.allow_network,
        embedded_dir=store.embedded_model_dir(),
        cache_dir=cfg.training.model_cache_dir,
    )


def load_split_examples(store: ArtifactStore, split: str) -> list[dict]:
    path = store.split_path(split)
    if not path.exists():
        return []
    return [example_from_record(r) for r in pq.read_table(path).to_pylist()]


def plan_for(cfg: Settings, store: ArtifactStore):
    """The training plan (tokenized corpus, steps, estimate) for the current splits and base model."""
    from gastown_ft.training.lora import plan_training

    resolved = resolve_configured_base(cfg, store)
    splits = {name: load_split_examples(store, name) for name in SPLITS}
    if not splits["train"]:
        raise GastownFTError(
            "there are no training examples yet",
            hint="materialize corpus_splits first (gastown-ft materialize -s corpus_splits)",
        )
    plan = plan_training(resolved.path, splits["train"], splits["validation"], cfg.training)
    return plan, resolved, corpus_version(splits)
