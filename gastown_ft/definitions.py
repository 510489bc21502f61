"""The Dagster code location: `dagster dev -m gastown_ft.definitions`."""

from __future__ import annotations

from dagster import Definitions, ResourceDefinition

from gastown_ft.assets.corpus import corpus_splits, instruction_pairs, scrubbed_documents
from gastown_ft.assets.sources import quarantine, source_assets
from gastown_ft.assets.training import base_model, lora_adapter, train_job
from gastown_ft.resources import GastownSettings

defs = Definitions(
    assets=[
        *source_assets,
        scrubbed_documents,
        quarantine,
        instruction_pairs,
        corpus_splits,
        base_model,
        lora_adapter,
    ],
    jobs=[train_job],
    resources={
        "settings": GastownSettings(),
        # Where training progress goes besides the run log: nowhere here; the CLI passes its progress bar.
        "progress_sink": ResourceDefinition.none_resource(),
    },
)
