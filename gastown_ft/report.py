"""The summary printed after a CLI run: what each stage produced and what it quarantined."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from gastown_ft.status import asset_status


def print_run_summary(console: Console, instance, result) -> None:
    state = asset_status(instance)
    run_assets = set()
    for ev in result.get_asset_materialization_events():
        run_assets.add(ev.asset_key.to_user_string())
    table = Table(title=f"run {result.run_id[:8]}: {'succeeded' if result.success else 'FAILED'}")
    for col in ("stage", "asset", "rows", "bytes", "quarantined", "by reason"):
        table.add_column(col)
    for name, s in state.items():
        if name not in run_assets:
            continue
        meta = s.get("metadata", {})
        reasons = meta.get("quarantine_by_reason") or meta.get("by_reason") or {}
        table.add_row(
            s["group"] or "",
            name,
            str(meta.get("row_count", "")),
            str(meta.get("bytes", "")),
            str(meta.get("quarantine_count", meta.get("row_count", "") if name == "quarantine" else "")),
            ", ".join(f"{k}={v}" for k, v in sorted(reasons.items())),
        )
    console.print(table)
    for ev in result.all_events:
        if ev.is_step_failure:
            data = ev.step_failure_data
            console.print(
                f"[red]step {ev.step_key} failed:[/red] {data.error.message.strip() if data.error else ''}"
            )
