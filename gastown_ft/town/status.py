"""What `gastown-ft status` says about the town: reporting, the last run's story, the outbox, drift."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.markup import escape

from gastown_ft.config import Settings
from gastown_ft.town.drift import drift_state, drift_text
from gastown_ft.town.outbox import OUTBOX_DIR, Outbox
from gastown_ft.town.reporting import PENDING_FILE, RUNS_DIR, read_json


def last_run(artifacts_dir: Path) -> dict[str, Any] | None:
    runs = sorted((artifacts_dir / OUTBOX_DIR / RUNS_DIR).glob("*.json"), key=lambda p: p.stat().st_mtime)
    if not runs:
        return None
    state = read_json(runs[-1])
    stages = {name: s.get("status") for name, s in (state.get("stages") or {}).items()}
    return {"run_id": runs[-1].stem, "bead": state.get("bead"), "stages": stages, "mail": state.get("mailed")}


def town_state(settings: Settings, instance) -> dict[str, Any]:
    """{reporting, last_run?, pending_bead?, outbox?, drift?}: only what there is to say."""
    art = Path(settings.artifacts.dir)
    out: dict[str, Any] = {"reporting": "on" if settings.town_reporting.enabled else "off"}
    run = last_run(art)
    if run:
        out["last_run"] = run
    pending = read_json(art / OUTBOX_DIR / PENDING_FILE).get("bead")
    if pending:
        out["pending_bead"] = pending
    outbox = Outbox(art).summary()
    if outbox:
        out["outbox"] = outbox
    drift = drift_state(instance, settings)
    if drift:
        out["drift"] = drift
    return out


def town_lines(state: dict[str, Any]) -> list[str]:
    lines = []
    run = state.get("last_run")
    if state.get("reporting") == "on" or run:
        line = f"[bold]town reporting[/bold]: {state.get('reporting')}"
        if run:
            stages = ", ".join(f"{k} {v}" for k, v in run["stages"].items())
            line += f"; last run {run['run_id'][:8]}" + (f", bead {run['bead']}" if run.get("bead") else "")
            line += f": {stages}" if stages else ""
            if run.get("mail"):
                line += f"; mailed: {run['mail']}"
        lines.append(escape(line).replace("\\[bold]", "[bold]").replace("\\[/bold]", "[/bold]"))
    if state.get("pending_bead"):
        lines.append(
            f"  a training that has not finished keeps bead {escape(state['pending_bead'])}; "
            "the next `gastown-ft train` takes it over"
        )
    outbox = state.get("outbox")
    if outbox:
        kinds = ", ".join(f"{k} {n}" for k, n in outbox["by_kind"].items())
        lines.append(
            f"[yellow]town outbox[/yellow]: {outbox['count']} message(s) the town did not get ({kinds}), "
            f"last {outbox['last']}, in {escape(outbox['path'])}"
        )
        lines += [f"  why: {escape(w)}" for w in outbox["why"][:3]]
    if state.get("drift"):
        lines.append(f"[yellow]drift[/yellow]: {escape(drift_text(state['drift']))}")
    if state.get("error"):
        lines.append(f"[yellow]town state unreadable[/yellow]: {escape(state['error'])}")
    return lines


def attach_town_state(state: dict[str, dict[str, Any]], settings: Settings, instance) -> None:
    """Into `asset_status`'s state (keyed by asset): the town's state on `lora_adapter` (training runs
    are what the beads track) and the drift on `corpus_splits` too."""
    try:
        town = town_state(settings, instance)
    except Exception as e:  # noqa: BLE001 (status must always print)
        town = {
            "reporting": "on" if settings.town_reporting.enabled else "off",
            "error": f"{type(e).__name__}: {e}",
        }
    state["lora_adapter"]["town"] = town
    if town.get("drift") and "corpus_splits" in state:
        state["corpus_splits"]["drift"] = town["drift"]


def status_town_lines(state: dict[str, dict[str, Any]]) -> list[str]:
    return town_lines((state.get("lora_adapter") or {}).get("town") or {})


def run_town_lines(settings: Settings, run_id: str) -> list[str]:
    """The closing note of a run: what the town heard of it (bead, feed events, mail, outbox)."""
    if not settings.town_reporting.enabled:
        return []
    from gastown_ft.town.feed import events_path, read_events

    art = Path(settings.artifacts.dir)
    state = read_json(art / OUTBOX_DIR / RUNS_DIR / f"{run_id}.json")
    feed = events_path(settings.town.root)
    events = [e for e in read_events(feed) if (e.get("payload") or {}).get("run") == run_id[:8]]
    outboxed = [
        r
        for r in Outbox(art).records()
        if r.get("run") == run_id or (r.get("event") or {}).get("payload", {}).get("run") == run_id[:8]
    ]
    bead = state.get("bead")
    lines = [f"[bold]town[/bold]: {len(events)} event(s) in the feed {escape(str(feed))} (`gt feed`)"]
    if bead:
        shown = bead if not bead.startswith("outbox:") else f"{bead} (not created: bd is missing)"
        lines.append(
            f"  bead {escape(shown)}" + ("" if bead.startswith("outbox:") else f": `bd show {bead}`")
        )
    if state.get("mailed"):
        lines.append(f"  mail to {escape(settings.town_reporting.mail_to)}: {escape(state['mailed'])}")
    if outboxed:
        lines.append(
            f"  [yellow]{len(outboxed)} message(s) went to the outbox[/yellow] {escape(str(Outbox(art).path))} "
            f"({escape(outboxed[-1].get('why', ''))})"
        )
    return lines
