"""The local Dagster instance: DAGSTER_HOME from the settings, seeded with the packaged dagster.yaml."""

from __future__ import annotations

import os
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

from gastown_ft.config import CONFIG_ENV, Settings


def prepare_dagster_home(settings: Settings) -> Path:
    """Create DAGSTER_HOME with our dagster.yaml (kept if the operator edited one) and export it."""
    home = Path(settings.dagster.home)
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists():
        with resources.as_file(resources.files("gastown_ft") / "data" / "dagster.yaml") as src:
            shutil.copyfile(src, target)
    os.environ["DAGSTER_HOME"] = str(home)
    if settings.config_path:
        os.environ[CONFIG_ENV] = str(settings.config_path)
    return home


def local_instance(settings: Settings):
    from dagster import DagsterInstance

    prepare_dagster_home(settings)
    return DagsterInstance.get()


def latest_metadata(instance, asset_name: str) -> dict[str, Any] | None:
    """The metadata values of an asset's last materialization; None when it has never been materialized."""
    from dagster import AssetKey

    event = instance.get_latest_materialization_event(AssetKey(asset_name))
    if event is None or event.asset_materialization is None:
        return None
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}
