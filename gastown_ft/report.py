"""What the CLI prints after a run and in `status`: per stage, per task, per split, redactions by
kind, quarantine by reason, and the asset checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gastown_ft.corpus.scan import LAYOUT_COUNTS
from gastown_ft.errors import GastownFTError
from gastown_ft.export.registry import Registry, embedded_base_notice
from gastown_ft.status import asset_status


def _counts_line(title: str, counts: dict[str, Any] | None) -> str | None:
    if not counts:
        return None
    body = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"[bold]{title}[/bold]: {body}"


def stage_table(state: dict[str, dict[str, Any]], title: str, only: set[str] | None = None) -> Table:
    table = Table(title=title)
    table.add_column("stage")
    table.add_column("asset", no_wrap=True)
    for col in ("rows", "MB", "quarantined", "checks"):
        table.add_column(col, justify="right" if col != "checks" else "left")
    for name, s in state.items():
        if only is not None and name not in only:
            continue
        meta = s.get("metadata", {})
        q = meta.get("quarantine_count", meta.get("row_count") if name == "quarantine" else "")
        mb = f"{meta['bytes'] / 1e6:.2f}" if isinstance(meta.get("bytes"), int) else ""
        checks = (
            ("failed: " + ", ".join(s["failed_checks"]))
            if s["failed_checks"]
            else ("ok" if s.get("checks") else "")
        )
        table.add_row(s["group"] or "", name, str(meta.get("row_count", "")), mb, str(q), checks)
    return table


def detail_lines(state: dict[str, dict[str, Any]]) -> list[str]:
    meta = {name: s.get("metadata", {}) for name, s in state.items()}
    lines = [
        _counts_line("examples by task", meta.get("instruction_pairs", {}).get("by_task")),
        _counts_line("dedup", meta.get("instruction_pairs", {}).get("dedup")),
        _machinery_line(meta.get("instruction_pairs", {}).get("machinery")),
        _counts_line(
            "left out for invalid gt/bd commands",
            meta.get("instruction_pairs", {}).get("invalid_commands_dropped"),
        ),
    ]
    splits = meta.get("corpus_splits", {})
    if splits:
        lines.append(
            _counts_line(
                "examples by split",
                {
                    k[: -len("_count")]: v
                    for k, v in splits.items()
                    if k.endswith("_count") and k != "row_count"
                },
            )
        )
        if splits.get("corpus_version"):
            lines.append(
                f"[bold]corpus version[/bold]: {splits['corpus_version'][:16]}  ({splits.get('path', '')})"
            )
        lines += [f"  [yellow]WARNING:[/yellow] splits: {w}" for w in splits.get("warnings") or []]
    lora = meta.get("lora_adapter", {})
    if lora:
        lines.append(
            f"[bold]training[/bold]: {lora.get('status')} after {lora.get('steps')} steps; validation loss "
            f"{lora.get('val_loss_first', 0):.3f} -> {lora.get('val_loss_final', 0):.3f}; "
            f"{lora.get('tokens_per_s', 0):,.0f} tokens/s; peak RSS {lora.get('peak_rss_mb', 0):,.0f} MB "
            f"(estimated {lora.get('estimated_peak_mb', 0):,.0f} MB); adapter {lora.get('path', '')}"
        )
    base = meta.get("base_model", {})
    if base:
        lines.append(
            f"[bold]base model[/bold]: {base.get('name')} ({base.get('source')}), "
            f"{str(base.get('fingerprint', ''))[:19]}"
        )
        notice = embedded_base_notice(base, base.get("parameters"))
        if notice:
            lines.append(f"  [yellow]WARNING:[/yellow] {notice}")
    lines += _eval_lines(meta.get("eval_report", {}))
    release = meta.get("exported_model", {})
    if release:
        lines.append(
            f"[bold]export[/bold]: registry version {release.get('version')}"
            + (" (promoted: `gastown-ft serve` uses it)" if release.get("promoted") else " (not promoted)")
            + f"; merged safetensors {release.get('merged_path', '')}"
            + (
                f"; GGUF {release.get('gguf_path')} ({release.get('gguf_mb')} MiB)"
                if release.get("gguf_path")
                else ""
            )
            + (f"; Modelfile {release.get('modelfile_path')}" if release.get("modelfile_path") else "")
        )
        if release.get("base_notice"):
            lines.append(f"  [yellow]WARNING:[/yellow] {release.get('version')}: {release['base_notice']}")
        lines += _served_lines(release)
    lines.append(
        _counts_line("redactions by kind", meta.get("scrubbed_documents", {}).get("redactions_by_kind"))
    )
    # Bead rows left out on purpose (identical repeats, tombstones): counted, not quarantined. The
    # walk's own counts (copies not read, redirects followed) are on a line of their own.
    skipped = meta.get("raw_beads", {}).get("skipped") or {}
    rows = {k: v for k, v in skipped.items() if k not in LAYOUT_COUNTS}
    lines.append(_counts_line("bead rows skipped", rows))
    lines.append(_counts_line("town layout", {k: v for k, v in skipped.items() if k in LAYOUT_COUNTS}))
    lines.append(_counts_line("quarantine by reason", meta.get("quarantine", {}).get("by_reason")))
    lines += quarantined_file_lines(meta.get("quarantine", {}))
    return [ln for ln in lines if ln]


def _machinery_line(m: dict[str, Any] | None) -> str | None:
    """Beads the machinery wrote, by kind, and what the bead tasks did with them."""
    if not m or not m.get("beads"):
        return None
    what = "left out of the bead tasks" if m.get("mode") == "exclude" else "kept in the bead tasks"
    line = f"[bold]machinery beads[/bold] ({what}): {m.get('machinery', 0)} of {m['beads']}"
    if m.get("by_kind"):
        line += " — " + ", ".join(f"{k} {v}" for k, v in m["by_kind"].items())
    if m.get("machinery_closes"):
        closes = ", ".join(f"{k} {v}" for k, v in m["machinery_closes"].items())
        line += f"; closes by machinery on other beads: {closes}"
    return line


def quarantined_file_lines(q: dict[str, Any]) -> list[str]:
    """The most quarantined files with their line numbers (as the quarantine stage capped them)."""
    files = q.get("by_file") or []
    if not files:
        return []
    total = q.get("file_count", len(files))
    head = "[bold]quarantined files[/bold]" + (
        f" (top {len(files)} of {total})" if total > len(files) else ""
    )
    out = [head + ":"]
    for f in files:
        reasons = ", ".join(f"{k} {v}" for k, v in (f.get("reasons") or {}).items())
        line = f"  {escape(str(f['path']))}: {f['count']} ({reasons})"
        if f.get("lines"):
            line += " at line" + ("s " if len(f["lines"]) > 1 else " ") + ", ".join(map(str, f["lines"]))
            if f.get("more_lines"):
                line += f" and {f['more_lines']} more"
        out.append(line)
    return out


def _served_lines(release: dict[str, Any]) -> list[str]:
    """The promoted version (what `gastown-ft serve` uses) when it is not the one just exported, or when
    its base is the tiny embedded model."""
    if not release.get("registry"):
        return []
    try:
        current = Registry(Path(str(release["registry"]))).current()
    except GastownFTError:
        return ["[bold]served model[/bold]: the registry is unreadable"]
    if current is None:
        return []
    notice = current.base_notice
    if current.version == release.get("version") and (release.get("base_notice") or not notice):
        return []  # the export line above is this version, warning included
    line = f"[bold]served model[/bold]: {current.version} (promoted: `gastown-ft serve` uses it)"
    return [line] + ([f"  [yellow]WARNING:[/yellow] {current.version}: {notice}"] if notice else [])


def _eval_lines(meta: dict[str, Any]) -> list[str]:
    """Base against tuned on the headline metrics (per-task ones are in the report)."""
    if not meta.get("results_path"):
        return []
    try:
        results = json.loads(Path(str(meta["results_path"])).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return [f"[bold]evaluation[/bold]: results unreadable at {meta['results_path']}"]
    verdict = "[green]passed[/green]" if results.get("passed") else "[red]FAILED[/red]"
    lines = [
        f"[bold]evaluation[/bold] (base -> tuned, test split): {verdict}; report {meta.get('report_path', '')}"
    ]
    for name, v in (results.get("metrics") or {}).items():
        if "/" not in name:
            lines.append(f"  {name:<32} {v['base']:>10.4f} -> {v['tuned']:.4f}")
    if not results.get("passed"):
        summary = (results.get("decision") or {}).get("summary")
        if summary:
            lines.append(f"  [red]why[/red]: {summary}")
    lines += [f"  [yellow]WARNING:[/yellow] {w}" for w in results.get("warnings") or []]
    return lines


def print_state(
    console: Console, state: dict[str, dict[str, Any]], title: str, only: set[str] | None = None
) -> None:
    console.print(stage_table(state, title, only))
    for line in detail_lines(state):
        console.print(line)


def print_run_summary(console: Console, instance, result) -> None:
    state = asset_status(instance)
    ran = {ev.asset_key.to_user_string() for ev in result.get_asset_materialization_events()}
    print_state(
        console, state, f"run {result.run_id[:8]}: {'succeeded' if result.success else 'FAILED'}", ran
    )
    for ev in result.all_events:
        if ev.is_step_failure:
            data = ev.step_failure_data
            message = data.error.message.strip().splitlines()[-1] if data.error else ""
            console.print(f"[red]step {ev.step_key} failed:[/red] {message}")
