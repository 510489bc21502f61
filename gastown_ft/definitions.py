"""The Dagster code location: `dagster dev -m gastown_ft.definitions`."""

from __future__ import annotations

from dagster import Definitions, ResourceDefinition

from gastown_ft.assets.corpus import corpus_splits, instruction_pairs, scrubbed_documents
from gastown_ft.assets.evaluation import evaluation_assets, evaluation_checks
from gastown_ft.assets.release import release_assets
from gastown_ft.assets.sources import quarantine, source_assets
from gastown_ft.assets.training import base_model, lora_adapter, train_job
from gastown_ft.resources import GastownSettings
from gastown_ft.sensors import automation_jobs, schedules, sensors

defs = Definitions(
    assets=[
        *source_assets,
        scrubbed_documents,
        quarantine,
        instruction_pairs,
        corpus_splits,
        base_model,
        lora_adapter,
        *evaluation_assets,
        *release_assets,
    ],
    asset_checks=[*evaluation_checks],
    jobs=[train_job, *automation_jobs],
    sensors=[*sensors],
    schedules=[*schedules],
    resources={
        "settings": GastownSettings(),
        # Where training progress goes besides the run log: nowhere here; the CLI passes its progress bar.
        "progress_sink": ResourceDefinition.none_resource(),
    },
)
