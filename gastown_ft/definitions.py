"""The Dagster code location: `dagster dev -m gastown_ft.definitions`."""

from __future__ import annotations

from dagster import Definitions

from gastown_ft.assets.sources import quarantine, source_assets
from gastown_ft.resources import GastownSettings

defs = Definitions(
    assets=[*source_assets, quarantine],
    resources={"settings": GastownSettings()},
)
