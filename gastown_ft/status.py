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


def asset_status(instance: DagsterInstance, settings: Any = None) -> dict[str, dict[str, Any]]:
    """Every asset's state; with `settings`, `exported_model` also has `serving` (see serving_engine)."""
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
    if settings is not None and "exported_model" in out:
        out["exported_model"]["serving"] = serving_engine(settings)
    if settings is not None and "lora_adapter" in out:  # the town: reporting, outbox, drift (gastown_ft/town)
        from gastown_ft.town.status import attach_town_state

        attach_town_state(out, settings, instance)
    return out


def serving_engine(settings: Any) -> dict[str, Any] | None:
    """The engine `gastown-ft serve` would run the promoted version on, and why: serve's own decision
    (`serve.engine.choose_engine`, with [serve] engine, quantization and device). None when no version
    is promoted."""
    from gastown_ft.errors import GastownFTError
    from gastown_ft.export.registry import Registry, registry_root
    from gastown_ft.llamacpp.runtime import unavailable
    from gastown_ft.serve.engine import choose_engine, gguf_path, pick_device

    cfg = settings.serve
    try:
        current = Registry(registry_root(settings)).current()
    except GastownFTError as e:
        return {"version": None, "engine": None, "why": str(e)}
    if current is None:
        return None
    quant = None if cfg.quantization == "none" else cfg.quantization
    gguf = gguf_path(current.merged_dir, quant)
    out: dict[str, Any] = {
        "version": current.version,
        "requested": cfg.engine,
        "quantization": quant,
        "gguf": str(gguf),
        "gguf_present": gguf.is_file(),
        "llama_cpp": unavailable() or "importable",
    }
    try:
        chosen = choose_engine(cfg.engine, current.merged_dir, quant=quant, device=pick_device(cfg.device))
    except GastownFTError as e:  # serve would refuse to start
        return out | {"engine": None, "why": str(e)}
    why = chosen.note or (
        "requested" if cfg.engine == chosen.engine else f"{gguf.name} present, llama-cpp-python importable"
    )
    return out | {"engine": chosen.engine, "why": why}


def serving_line(state: dict[str, dict[str, Any]]) -> str | None:
    """One line for `gastown-ft status`: the engine serve would use for the promoted version, and why."""
    from rich.markup import escape

    s = (state.get("exported_model") or {}).get("serving")
    if not s:
        return None
    if s.get("engine") is None:
        what = f"cannot serve {s['version']}" if s.get("version") else "registry unreadable"
        return f"[bold]serve engine[/bold]: {what}: {escape(s['why'])}"
    return f"[bold]serve engine[/bold]: {s['engine']} for {s['version']} ({escape(s['why'])})"
