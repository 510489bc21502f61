"""At-a-glance state of every asset, read from the Dagster instance's event log."""

from __future__ import annotations

import datetime as dt
from typing import Any

from dagster import AssetCheckKey, AssetKey, DagsterInstance

from gastown_ft.definitions import defs


def _plain(value: Any) -> Any:
    v = getattr(value, "value", value)
    if hasattr(v, "__fspath__"):
        return str(v)
    return v


def asset_status(instance: DagsterInstance) -> dict[str, dict[str, Any]]:
    graph = defs.resolve_asset_graph()
    out: dict[str, dict[str, Any]] = {}
    # In the order the definitions declare them: the pipeline's own order, sources first.
    declared = [k for a in defs.assets or [] for k in a.keys]
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: declared.index(k) if k in declared else 999):
        node = graph.get(key)
        name = key.to_user_string()
        entry: dict[str, Any] = {"group": node.group_name, "materialized": False}
        event = instance.get_latest_materialization_event(AssetKey(key.path))
        if event is not None and event.asset_materialization is not None:
            metadata = {k: _plain(v) for k, v in event.asset_materialization.metadata.items()}
            entry.update(
                materialized=True,
                last_materialization=dt.datetime.fromtimestamp(event.timestamp, dt.UTC).isoformat(),
                run_id=event.run_id,
                numbers={
                    k: v
                    for k, v in metadata.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)
                },
                outputs={k: v for k, v in metadata.items() if k == "path" or k.endswith("_path")},
                metadata={k: v for k, v in metadata.items() if k != "preview"},
            )
        failed = []
        for check_key in node.check_keys:
            record = instance.get_latest_asset_check_evaluation_record(AssetCheckKey(key, check_key.name))
            evaluation = (
                getattr(getattr(record, "event", None), "asset_check_evaluation", None) if record else None
            )
            if evaluation is not None and not evaluation.passed:
                failed.append(check_key.name)
        entry["failed_checks"] = failed
        entry["checks"] = sorted(k.name for k in node.check_keys)
        out[name] = entry
    return out
