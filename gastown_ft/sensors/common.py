"""What every sensor and schedule shares: the config they start from, run tags, and asset selections.

(No `from __future__ import annotations` in sensor modules: Dagster inspects the hints.)
"""

import hashlib
import logging
from collections.abc import Sequence

from dagster import AssetKey, AssetSelection, DefaultScheduleStatus, DefaultSensorStatus

from gastown_ft.config import AutomationConfig, Settings, load_settings

logger = logging.getLogger("gastown_ft.sensors")

TRIGGER_TAG = "gastown-ft/trigger"
REASON_TAG = "gastown-ft/reason"
RIGS_TAG = "gastown-ft/rigs"
# Runs that rebuild the corpus carry this tag; the run queue (dagster.yaml) runs one at a time, so two
# sensors that fire together never write the same artifacts at once.
CORPUS_STAGE_TAGS = {"gastown-ft/stage": "corpus"}
# The source and corpus groups: what a change in the town can make stale, short of training.
CORPUS_GROUPS = ("sources", "corpus")
MAX_REASON_CHARS = 1000
# Corpus rebuilds run their steps in one process: the stages run one after another anyway, and a
# process per step costs seconds of start-up each.
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}


def automation_config_at_load() -> AutomationConfig:
    """The [automation] section in force when the code location loads (it sets default statuses and
    intervals). A config that cannot be read must not stop the code location: defaults, and a log line."""
    try:
        return load_settings().automation
    except Exception as e:  # noqa: BLE001 (any failure here would take the whole UI down)
        logger.warning("gastown-ft: automation uses its defaults; the config could not be read: %s", e)
        return AutomationConfig()


def scheduler_cron(expr: str, field: str) -> str:
    """`expr` if Dagster's scheduler accepts it, else the default (with a log line): a cron string the
    config check let through must not stop the code location from loading."""
    from dagster._utils.schedules import is_valid_cron_string

    if is_valid_cron_string(expr):
        return expr
    default = AutomationConfig.model_fields[field].default
    logger.warning(
        "gastown-ft: automation.%s = %r is not accepted by the scheduler; using %r", field, expr, default
    )
    return default


def sensor_status(on: bool) -> DefaultSensorStatus:
    return DefaultSensorStatus.RUNNING if on else DefaultSensorStatus.STOPPED


def schedule_status(on: bool) -> DefaultScheduleStatus:
    return DefaultScheduleStatus.RUNNING if on else DefaultScheduleStatus.STOPPED


def run_tags(trigger: str, reason: str, rigs: Sequence[str] = (), corpus: bool = False) -> dict[str, str]:
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[: MAX_REASON_CHARS - 1] + "…"
    tags = {TRIGGER_TAG: trigger, REASON_TAG: reason, **(CORPUS_STAGE_TAGS if corpus else {})}
    if rigs:
        tags[RIGS_TAG] = ",".join(sorted(rigs))
    return tags


def run_key(name: str, cursor: str) -> str:
    """The same new state gives the same key, so a tick retried after a crash requests no second run."""
    return f"{name}:{hashlib.sha256(cursor.encode('utf-8')).hexdigest()[:20]}"


def corpus_assets_for(context, sources: Sequence[str]) -> list[AssetKey]:
    """The source assets of `sources` and every corpus stage below them, from the asset graph."""
    repo = getattr(context, "repository_def", None)
    if repo is not None:
        graph = repo.asset_graph
    else:  # evaluated outside a code location (a direct call in a script)
        from gastown_ft.definitions import defs

        graph = defs.resolve_asset_graph()
    selection = AssetSelection.assets(*(f"raw_{s}" for s in sources)).downstream() & AssetSelection.groups(
        *CORPUS_GROUPS
    )
    return sorted(selection.resolve(graph), key=lambda k: k.to_user_string())


def load_or_reason(settings) -> tuple[Settings | None, str | None]:
    """The settings in force at this tick, or why they could not be loaded."""
    try:
        return settings.load(), None
    except Exception as e:  # noqa: BLE001 (a sensor reports, it does not crash)
        return None, f"the gastown-ft config could not be loaded: {e}"
