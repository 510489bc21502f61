"""What a stage's result says to a person: one line for the feed and the bead, from its metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def plain(metadata: Any) -> dict[str, Any]:
    """Metadata values unwrapped from Dagster's MetadataValue (paths as strings)."""
    out = {}
    for k, v in dict(metadata or {}).items():
        v = getattr(v, "value", v)
        out[k] = str(v) if hasattr(v, "__fspath__") else v
    return out


def duration(seconds: float | None) -> str:
    s = int(max(0, seconds or 0))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s"


def progress_line(ev: dict[str, Any]) -> str:
    """A training progress event of the trainer (step, total_steps, loss, tokens_per_s, eta_s)."""
    total = ev.get("total_steps") or ev.get("steps")
    loss = ev.get("loss")
    line = f"{ev.get('what') or 'training'}: step {ev.get('step')}/{total}"
    if isinstance(loss, (int, float)):
        line += f", loss {loss:.4f}"
    if ev.get("tokens_per_s"):
        line += f", {ev['tokens_per_s']:,.0f} tokens/s"
    if ev.get("eta_s") is not None:
        line += f", ETA {duration(ev['eta_s'])}"
    return line


def eval_metrics(results_path: str | None) -> tuple[bool | None, str | None, list[str]]:
    """(passed, decision summary, "metric base -> tuned" lines) from an evaluation's results.json."""
    if not results_path:
        return None, None, []
    try:
        results = json.loads(Path(results_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None, []
    lines = [
        f"{name}: {v['base']:.4f} -> {v['tuned']:.4f}"
        for name, v in (results.get("metrics") or {}).items()
        if "/" not in name and isinstance(v, dict) and {"base", "tuned"} <= v.keys()
    ]
    return bool(results.get("passed")), (results.get("decision") or {}).get("summary"), lines


def stage_summary(asset: str, meta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(one line, figures) for a materialized asset."""
    if asset == "corpus_splits":
        figures = {
            k: meta.get(k)
            for k in (
                "row_count",
                "train_count",
                "validation_count",
                "test_count",
                "examples_added",
                "examples_removed",
                "corpus_change_fraction",
            )
            if meta.get(k) is not None
        }
        figures["corpus_version"] = str(meta.get("corpus_version") or "")[:12]
        line = (
            f"corpus built: {meta.get('row_count', 0):,} examples (train {meta.get('train_count', 0):,}, "
            f"validation {meta.get('validation_count', 0):,}, test {meta.get('test_count', 0):,}), "
            f"version {figures['corpus_version']}; since the last build +{meta.get('examples_added', 0)} "
            f"-{meta.get('examples_removed', 0)} ({float(meta.get('corpus_change_fraction') or 0):.1%})"
        )
        return line, figures
    if asset == "base_model":
        line = f"base model {meta.get('name')} ({meta.get('source')}) ready"
        return line, {"base_model": meta.get("name"), "source": meta.get("source")}
    if asset == "lora_adapter":
        figures = {
            k: meta.get(k)
            for k in (
                "steps",
                "val_loss_first",
                "val_loss_final",
                "tokens_per_s",
                "wall_seconds",
                "peak_rss_mb",
                "yield_pauses",
                "yield_paused_seconds",
                "path",
            )
            if meta.get(k) is not None
        }
        line = (
            f"trained {meta.get('steps')} steps in {duration(meta.get('wall_seconds'))}: validation loss "
            f"{float(meta.get('val_loss_first') or 0):.4f} -> {float(meta.get('val_loss_final') or 0):.4f}; "
            f"{float(meta.get('tokens_per_s') or 0):,.0f} tokens/s; peak RSS "
            f"{float(meta.get('peak_rss_mb') or 0):,.0f} MB; adapter {meta.get('path')}"
        )
        if meta.get("yield_pauses"):
            line += (
                f"; paused {meta['yield_pauses']} time(s) for the town "
                f"({duration(meta.get('yield_paused_seconds'))})"
            )
        return line, figures
    if asset == "eval_report":
        passed, decision, lines = eval_metrics(meta.get("results_path"))
        passed = bool(meta.get("passed")) if passed is None else passed
        head = f"evaluation {'passed' if passed else 'FAILED the gate'}: {decision or meta.get('decision') or ''}"
        figures = {
            "passed": passed,
            "decision": decision or meta.get("decision"),
            "metrics": lines,
            "report_path": meta.get("report_path"),
        }
        return head + ("; " + "; ".join(lines) if lines else ""), figures
    if asset == "exported_model":
        promoted = bool(meta.get("promoted"))
        line = (
            f"exported {meta.get('version')} "
            + ("(promoted: `gastown-ft serve` uses it)" if promoted else "(not promoted)")
            + f"; merged safetensors {meta.get('merged_path')}"
            + (f"; GGUF {meta['gguf_path']}" if meta.get("gguf_path") else "")
        )
        figures = {
            k: meta.get(k) for k in ("version", "promoted", "path", "merged_path", "gguf_path", "registry")
        }
        return line, figures
    numbers = {k: v for k, v in meta.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return f"{asset} materialized", numbers
