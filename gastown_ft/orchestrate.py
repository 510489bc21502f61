"""Run the pipeline in-process against the local instance (what `demo`, `materialize` and `train` do)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from dagster import AssetKey, AssetSelection, DagsterInstance, materialize

from gastown_ft.assets.training import TRAINING_TAGS
from gastown_ft.config import Settings
from gastown_ft.definitions import defs
from gastown_ft.errors import GastownFTError
from gastown_ft.resources import GastownSettings

TRAINING_GROUP = "training"


def all_asset_names() -> list[str]:
    return sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys())


def asset_names_through(last: str) -> list[str]:
    """`last`, everything upstream of it, and the side assets of those groups (such as `quarantine`)."""
    if last not in all_asset_names():
        raise GastownFTError(f"unknown asset: {last}", hint=f"known assets: {', '.join(all_asset_names())}")
    graph = defs.resolve_asset_graph()
    keys = set(AssetSelection.assets(last).upstream().resolve(graph))
    groups = {graph.get(k).group_name for k in keys}
    keys |= {
        k
        for k in graph.get_all_asset_keys()
        if graph.get(k).group_name in groups and graph.get(k).parent_keys <= keys
    }
    return sorted(k.to_user_string() for k in keys)


def materialize_assets(
    settings: Settings,
    instance: DagsterInstance,
    selection: Sequence[str] | None = None,
    log_level: str = "INFO",
    progress: Callable[[dict[str, Any]], None] | None = None,
):
    """Materialize the selected assets (all when None) in dependency order; returns the run result.

    A run that trains carries the training tag, so the run queue keeps it to one at a time.
    """
    graph = defs.resolve_asset_graph()
    known = set(all_asset_names())
    if selection:
        unknown = [s for s in selection if s not in known]
        if unknown:
            raise GastownFTError(
                f"unknown asset(s): {', '.join(unknown)}", hint=f"known assets: {', '.join(sorted(known))}"
            )
        names = list(selection)
    else:
        names = sorted(known)
    trains = any(graph.get(AssetKey(n)).group_name == TRAINING_GROUP for n in names)
    config_file = str(settings.config_path) if settings.config_path else ""
    return materialize(
        list(defs.assets or []),
        selection=AssetSelection.assets(*names),
        instance=instance,
        resources={"settings": GastownSettings(config_file=config_file), "progress_sink": progress},
        raise_on_error=False,
        # Step progress at INFO; the per-event DEBUG lines stay in the run's log in the UI.
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        tags={"gastown-ft/trigger": "cli", **(TRAINING_TAGS if trains else {})},
    )
