"""The mail that sums up a run for a person: what ran, base against tuned, where the model is, what next.

Gas Town's mail convention (docs/design/mail-protocol.md): a short subject, then key-value lines, a
blank line, and free text.
"""

from __future__ import annotations

from typing import Any

STAGE_ORDER = ("corpus", "training", "evaluation", "export", "promotion")


def next_step(outcome: str, stage: str, state: dict[str, Any]) -> str:
    stages = state.get("stages") or {}
    export = (stages.get("export") or {}).get("figures") or {}
    if outcome == "failed":
        if stage == "training":
            return (
                "rerun `gastown-ft train`: it resumes from the last checkpoint; the error is in the run log "
                "(`gastown-ft ui`)."
            )
        return f"fix the {stage} error above, then rerun the run (`gastown-ft materialize`); details in `gastown-ft ui`."
    if outcome == "refused":
        return (
            "nothing was released and the model in service is unchanged. Read the evaluation report, then "
            "retrain with more data or steps (`gastown-ft train`), or change [evaluation] if the gate is wrong."
        )
    if export.get("version"):
        if export.get("promoted"):
            return (
                f"`gastown-ft serve` now serves {export['version']}; `gastown-ft models rollback` goes back "
                "to the previous version if it misbehaves."
            )
        return f"promote it when ready: `gastown-ft models promote {export['version']}`."
    if "evaluation" in stages:
        return "export it: `gastown-ft materialize --select exported_model`."
    if "training" in stages:
        return "evaluate it against the base: `gastown-ft materialize --select eval_report`."
    return "train on it: `gastown-ft train`."


def compose(
    outcome: str, stage: str, state: dict[str, Any], run_id: str, bead: str | None, error: str | None = None
) -> tuple[str, str]:
    """(subject, body) for a run that `outcome` ("succeeded", "failed", "refused") at `stage`."""
    stages = state.get("stages") or {}
    what = {
        "succeeded": "succeeded",
        "failed": f"FAILED in {stage}",
        "refused": "refused by the evaluation gate",
    }[outcome]
    export = (stages.get("export") or {}).get("figures") or {}
    tail = (
        f": {export['version']}" + (" promoted" if export.get("promoted") else "")
        if export.get("version")
        else ""
    )
    subject = f"gastown-ft: training run {what}{tail}"
    lines = [f"Outcome: {what}", f"Run: {run_id}"]
    if bead:
        lines.append(f"Bead: {bead}" + ("" if bead.startswith("<") else f" (bd show {bead})"))
    lines.append("")
    lines.append("What ran:")
    for name in STAGE_ORDER:
        s = stages.get(name)
        if s:
            lines.append(f"- {name}: {s.get('line')}")
    if error:
        lines.append(f"- {stage}: {error}")
    metrics = ((stages.get("evaluation") or {}).get("figures") or {}).get("metrics") or []
    if metrics:
        lines += ["", "Base vs tuned (test split):", *(f"  {m}" for m in metrics)]
    training = (stages.get("training") or {}).get("figures") or {}
    where = export.get("merged_path") or export.get("path") or training.get("path")
    if where:
        lines += ["", f"Where the model is: {where}"]
        if export.get("gguf_path"):
            lines.append(f"GGUF: {export['gguf_path']}")
    lines += ["", f"Next: {next_step(outcome, stage, state)}"]
    return subject, "\n".join(lines)
