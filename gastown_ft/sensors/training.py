"""Retraining and the periodic corpus refresh: two jobs, a sensor and two schedules.

- `retrain` job: base_model, lora_adapter and everything below the adapter (evaluation, release),
  taken from the asset graph so assets added later join without a change here; tagged as training,
  so the run queue keeps it to one at a time.
- `retrain_sensor`: after each new `corpus_splits` build, retrains once the corpus changed by at
  least `automation.retrain_threshold` since the adapter's corpus (gastown_ft.automation.retrain).
- `retrain_schedule`: on `automation.retrain_cron`, retrains when the corpus changed at all.
- `corpus_refresh` job and `corpus_refresh_schedule`: every source and corpus stage on
  `automation.corpus_refresh_cron`; catches what no sensor watches (events, town-level conventions).
"""

from dagster import (
    AssetKey,
    AssetSelection,
    DagsterRunStatus,
    RunRequest,
    RunsFilter,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    schedule,
    sensor,
)

from gastown_ft.assets.training import TRAINING_TAGS
from gastown_ft.automation.cursor import decode_cursor, encode_cursor
from gastown_ft.automation.retrain import CorpusBuild, decide_retrain
from gastown_ft.config import AutomationConfig
from gastown_ft.resources import GastownSettings
from gastown_ft.sensors.common import (
    CORPUS_GROUPS,
    IN_PROCESS,
    load_or_reason,
    logger,
    run_tags,
    schedule_status,
    scheduler_cron,
    sensor_status,
)

SPLITS = AssetKey("corpus_splits")
ADAPTER = AssetKey("lora_adapter")
CHANGE_KEY = "corpus_change_fraction"
VERSION_KEY = "corpus_version"
# How far back to add up corpus changes; beyond this many builds since training, it counts as a full change.
MAX_BUILDS = 200
WAITING = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED]

retrain_job = define_asset_job(
    "retrain",
    selection=AssetSelection.assets("base_model", "lora_adapter")
    | AssetSelection.assets("lora_adapter").downstream(),
    tags=TRAINING_TAGS,
    description="Retrain the adapter on the current corpus, then evaluate and export (what follows lora_adapter).",
)

corpus_refresh_job = define_asset_job(
    "corpus_refresh",
    selection=AssetSelection.groups(*CORPUS_GROUPS),
    config=IN_PROCESS,
    description="Read every source again and rebuild the corpus stages.",
)


def _meta_value(record, key: str):
    entry = record.asset_materialization.metadata.get(key) if record.asset_materialization else None
    return getattr(entry, "value", entry)


def corpus_builds(instance, limit: int = MAX_BUILDS) -> list[CorpusBuild]:
    """corpus_splits materializations, newest first."""
    out = []
    for r in instance.fetch_materializations(SPLITS, limit=limit).records:
        fraction = _meta_value(r, CHANGE_KEY)
        try:
            fraction = None if fraction is None else float(fraction)
        except (TypeError, ValueError):
            fraction = None
        out.append(CorpusBuild(r.storage_id, _meta_value(r, VERSION_KEY), fraction))
    return out


def trained_corpus_version(instance) -> str | None:
    """The corpus version the newest adapter was trained on (None: no adapter yet)."""
    records = instance.fetch_materializations(ADAPTER, limit=1).records
    return _meta_value(records[0], VERSION_KEY) if records else None


def evaluate_retrain(context: SensorEvaluationContext, threshold: float):
    instance = context.instance
    latest = instance.fetch_materializations(SPLITS, limit=1).records
    if not latest:
        return SkipReason("corpus_splits has never been built; nothing to train on")
    newest = latest[0].storage_id
    seen = decode_cursor("retrain", context.cursor)
    if seen is not None and seen.state == newest:
        return SkipReason(f"no new corpus_splits build since the last look (event {newest})")
    decision = decide_retrain(corpus_builds(instance), trained_corpus_version(instance), threshold)
    cursor = encode_cursor("retrain", newest)
    if not decision.retrain:
        return SensorResult(skip_reason=decision.reason, cursor=cursor)
    if instance.get_runs(RunsFilter(job_name=retrain_job.name, statuses=WAITING), limit=1):
        return SensorResult(
            skip_reason="a retrain run is already waiting in the queue; it reads the newest corpus when it starts",
            cursor=cursor,
        )
    context.log.info(f"requesting a retrain: {decision.reason}")
    return SensorResult(
        run_requests=[
            RunRequest(run_key=f"retrain:{newest}", tags=run_tags("sensor:retrain_sensor", decision.reason))
        ],
        cursor=cursor,
    )


def make_retrain_sensor(auto: AutomationConfig) -> SensorDefinition:
    @sensor(
        name="retrain_sensor",
        job=retrain_job,
        minimum_interval_seconds=auto.sensor_interval_seconds,
        default_status=sensor_status(auto.retrain_sensor),
        description="After each corpus_splits build: retrain once the corpus changed by at least "
        "automation.retrain_threshold since the corpus the adapter was trained on.",
    )
    def retrain_sensor(context: SensorEvaluationContext, settings: GastownSettings):
        cfg, problem = load_or_reason(settings)
        if cfg is None:
            context.log.error(problem)
            return SkipReason(f"{problem}; cursor kept")
        try:
            return evaluate_retrain(context, cfg.automation.retrain_threshold)
        except Exception as e:  # noqa: BLE001 (a sensor reports, it does not crash)
            logger.exception("retrain_sensor failed")
            context.log.exception("retrain_sensor could not decide")
            return SkipReason(f"retrain_sensor could not decide ({type(e).__name__}: {e}); cursor kept")

    return retrain_sensor


def make_schedules(auto: AutomationConfig) -> list[ScheduleDefinition]:
    retrain_cron = scheduler_cron(auto.retrain_cron, "retrain_cron")
    refresh_cron = scheduler_cron(auto.corpus_refresh_cron, "corpus_refresh_cron")

    @schedule(
        name="retrain_schedule",
        cron_schedule=retrain_cron,
        execution_timezone=auto.timezone,
        job=retrain_job,
        default_status=schedule_status(auto.retrain_schedule),
        description=f"On '{retrain_cron}' ({auto.timezone}): retrain when the corpus changed at all "
        "since the adapter was trained (small changes below the sensor's threshold end up here).",
    )
    def retrain_schedule(context: ScheduleEvaluationContext):
        builds = corpus_builds(context.instance, limit=1)
        if not builds:
            return SkipReason("corpus_splits has never been built; nothing to train on")
        trained = trained_corpus_version(context.instance)
        latest = builds[0].corpus_version
        if trained is not None and latest == trained:
            return SkipReason(f"the adapter is already trained on corpus {str(latest)[:12]}")
        reason = (
            f"retrain schedule ({retrain_cron} {auto.timezone}): corpus "
            f"{(trained or 'none')[:12]} -> {str(latest)[:12]}"
        )
        return RunRequest(tags=run_tags("schedule:retrain_schedule", reason))

    refresh = ScheduleDefinition(
        name="corpus_refresh_schedule",
        cron_schedule=refresh_cron,
        execution_timezone=auto.timezone,
        job=corpus_refresh_job,
        default_status=schedule_status(auto.corpus_refresh_schedule),
        tags=run_tags(
            "schedule:corpus_refresh_schedule",
            f"periodic corpus refresh ({refresh_cron} {auto.timezone})",
            corpus=True,
        ),
        description=f"On '{refresh_cron}' ({auto.timezone}): read every source again and "
        "rebuild the corpus, for what no sensor watches (events, town-level conventions, config edits).",
    )
    return [refresh, retrain_schedule]
