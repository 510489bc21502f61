"""Run the pipeline in-process against the local instance (what `demo` and `materialize` do)."""

from __future__ import annotations

from collections.abc import Sequence

from dagster import AssetSelection, DagsterInstance, materialize

from gastown_ft.config import Settings
from gastown_ft.definitions import defs
from gastown_ft.errors import GastownFTError
from gastown_ft.resources import GastownSettings


def all_asset_names() -> list[str]:
    return sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys())


def materialize_assets(
    settings: Settings,
    instance: DagsterInstance,
    selection: Sequence[str] | None = None,
    log_level: str = "INFO",
):
    """Materialize the selected assets (all when None) in dependency order; returns the run result."""
    graph_assets = list(defs.assets or [])
    known = set(all_asset_names())
    if selection:
        unknown = [s for s in selection if s not in known]
        if unknown:
            raise GastownFTError(
                f"unknown asset(s): {', '.join(unknown)}", hint=f"known assets: {', '.join(sorted(known))}"
            )
        sel = AssetSelection.assets(*selection)
    else:
        sel = AssetSelection.all()
    config_file = str(settings.config_path) if settings.config_path else ""
    return materialize(
        graph_assets,
        selection=sel,
        instance=instance,
        resources={"settings": GastownSettings(config_file=config_file)},
        raise_on_error=False,
        # Step progress at INFO; the per-event DEBUG lines stay in the run's log in the UI.
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        tags={"gastown-ft/trigger": "cli"},
    )
