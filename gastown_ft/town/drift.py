"""Drift made visible: the corpus changed past the retrain threshold, and nothing will retrain.

The retrain sensor (sensors/training.py, automation/retrain.py) adds up each corpus build's
`corpus_change_fraction` since the build the adapter was trained on. When that reaches
`[automation] retrain_threshold` but the sensor is switched off in the config, the adapter is stale and
nobody is told: `gastown-ft status` says so, and with town reporting on, a bead does (one per trained
corpus; later builds comment on it).
"""

from __future__ import annotations

from typing import Any

from gastown_ft.config import Settings
from gastown_ft.town import feed

DRIFT_FILE = "drift.json"


def _meta(record, key: str) -> Any:
    entry = record.asset_materialization.metadata.get(key) if record.asset_materialization else None
    return getattr(entry, "value", entry)


_KEYS = (
    "corpus_version",
    "corpus_change_fraction",
    "examples_added",
    "examples_removed",
    "by_split_and_task",
)


def _tasks(meta: dict[str, Any]) -> dict[str, int]:
    by_split = meta.get("by_split_and_task") or {}
    out: dict[str, int] = {}
    for tasks in by_split.values() if isinstance(by_split, dict) else []:
        for task, n in (tasks or {}).items():
            out[task] = out.get(task, 0) + int(n)
    return out


def drift_state(
    instance, settings: Settings, building: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """What drifted since the adapter's corpus, when past the threshold with retraining off; else None.

    `building`: the metadata of a corpus_splits build not yet recorded (the step reporting it)."""
    from dagster import AssetKey

    from gastown_ft.automation.retrain import CorpusBuild, decide_retrain
    from gastown_ft.sensors.training import MAX_BUILDS, trained_corpus_version

    if settings.automation.retrain_sensor:
        return None  # the sensor retrains by itself
    trained = trained_corpus_version(instance)
    if trained is None:
        return None  # nothing trained yet: nothing to be stale
    records = instance.fetch_materializations(AssetKey("corpus_splits"), limit=MAX_BUILDS).records
    builds = [{k: _meta(r, k) for k in _KEYS} for r in records]  # newest first
    if building is not None:
        builds.insert(0, {k: building.get(k) for k in _KEYS})
    if not builds:
        return None
    threshold = settings.automation.retrain_threshold

    def fraction(b: dict[str, Any]) -> float | None:
        try:
            return None if b["corpus_change_fraction"] is None else float(b["corpus_change_fraction"])
        except (TypeError, ValueError):
            return None

    decision = decide_retrain(
        [CorpusBuild(i, b["corpus_version"], fraction(b)) for i, b in enumerate(builds)], trained, threshold
    )
    if not decision.retrain:
        return None
    since = builds[: decision.builds_since_training]
    then = next((b for b in builds if b["corpus_version"] == trained), None)
    before, after = (_tasks(then) if then else {}), _tasks(builds[0])
    by_task = {
        t: {"before": before.get(t, 0), "now": after.get(t, 0)}
        for t in sorted(set(before) | set(after))
        if before.get(t, 0) != after.get(t, 0)
    }
    return {
        "change_fraction": round(decision.pending_change, 4),
        "threshold": threshold,
        "builds_since_training": decision.builds_since_training,
        "trained_corpus": str(trained)[:12],
        "current_corpus": str(builds[0]["corpus_version"] or "")[:12],
        "examples_added": sum(int(b["examples_added"] or 0) for b in since),
        "examples_removed": sum(int(b["examples_removed"] or 0) for b in since),
        "by_task": by_task,
        "reason": decision.reason,
        "retrain_off": "automation.retrain_sensor is off",
    }


def drift_text(d: dict[str, Any]) -> str:
    changed = ", ".join(f"{t} {c['before']}->{c['now']}" for t, c in list(d["by_task"].items())[:8])
    return (
        f"the corpus changed {d['change_fraction']:.1%} since the adapter was trained (retrain threshold "
        f"{d['threshold']:.1%}) over {d['builds_since_training']} build(s): +{d['examples_added']} "
        f"-{d['examples_removed']} examples, corpus {d['trained_corpus']} -> {d['current_corpus']}"
        + (f"; by task: {changed}" if changed else "")
        + f"; retraining is off ({d['retrain_off']}): run `gastown-ft train`, or switch the sensor on"
    )


def report_drift(hook, building: dict[str, Any]) -> None:
    """With reporting on, after a corpus build: a drift bead (one per trained corpus) and an event."""
    from gastown_ft.town import run_bead
    from gastown_ft.town.reporting import OUTBOX_BEAD, bead_ref, read_json, write_json

    d = drift_state(hook.context.instance, hook.settings, building)
    if d is None:
        return
    text = drift_text(d)
    reporter = hook.reporter
    path = _drift_file(reporter)
    known = read_json(path)
    bead = known.get("bead") if known.get("trained_corpus") == d["trained_corpus"] else None
    if bead is None:
        sent = reporter.cli.run(
            "bd",
            run_bead.create_args(
                f"gastown-ft: the adapter is stale, the corpus changed {d['change_fraction']:.0%}",
                text,
                [*reporter.cfg.labels, "drift"],
                reporter.cfg.actor,
            ),
            reporter.bd_dir,
            "bead_create",
            run=reporter.run_id,
        )
        bead = (run_bead.parse_created_id(sent.stdout) if sent.ok else None) or (
            f"{OUTBOX_BEAD}drift-{d['trained_corpus']}"
        )
        write_json(path, {"bead": bead, "trained_corpus": d["trained_corpus"]})
    else:
        reporter.cli.run(
            "bd",
            run_bead.comment_args(bead_ref(bead), text, reporter.cfg.actor),
            reporter.bd_dir,
            "bead_comment",
        )
    reporter.event(
        feed.DRIFT,
        {
            "stage": "corpus",
            "bead": bead,
            "message": text,
            **{k: d[k] for k in ("change_fraction", "threshold", "builds_since_training")},
        },
    )


def _drift_file(reporter):
    return reporter.state_path.parent.parent / DRIFT_FILE


def close_drift(reporter, reason: str) -> None:
    """A new adapter is trained: the drift bead of the old one is done."""
    from gastown_ft.town import run_bead
    from gastown_ft.town.reporting import bead_ref, read_json

    path = _drift_file(reporter)
    bead = read_json(path).get("bead")
    if not bead:
        return
    reporter.cli.run(
        "bd", run_bead.close_args(bead_ref(bead), reason, reporter.cfg.actor), reporter.bd_dir, "bead_close"
    )
    path.unlink(missing_ok=True)
