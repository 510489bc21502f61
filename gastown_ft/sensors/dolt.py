"""The Dolt beads sensor: a new commit or changed rows in the town's Dolt beads databases rebuilds
raw_beads and the corpus stages below it.

Thin on purpose: the state and its diff are gastown_ft.automation.dolt_watch. The first tick records a
baseline; a town whose beads come from JSONL exports (town.beads_source) is not watched here (the
beads_sensor watches its files). A server that cannot be read is a skip with its one-line reason, and
the cursor stays. Its switch is automation.beads_sensor.
"""

from dagster import (
    AssetSelection,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from gastown_ft.automation.cursor import decode_cursor, encode_cursor
from gastown_ft.automation.dolt_watch import changed_rigs, describe_state, diff_dolt, dolt_snapshot
from gastown_ft.config import AutomationConfig, Settings
from gastown_ft.corpus.beads_source import beads_source_in_force
from gastown_ft.errors import GastownFTError
from gastown_ft.resources import GastownSettings
from gastown_ft.sensors.common import (
    CORPUS_GROUPS,
    IN_PROCESS,
    corpus_assets_for,
    load_or_reason,
    logger,
    run_key,
    run_tags,
    sensor_status,
)

NAME = "dolt_beads"


def evaluate_dolt_beads(context: SensorEvaluationContext, cfg: Settings):
    if "beads" not in cfg.town.sources:
        return SkipReason("beads is not in town.sources")
    if beads_source_in_force(cfg.town) != "dolt":
        return SkipReason(
            f"beads are read from JSONL exports (town.beads_source = {cfg.town.beads_source!r}); "
            "no Dolt server to watch"
        )
    try:
        state = dolt_snapshot(cfg.town)
    except GastownFTError as e:
        context.log.warning(str(e))
        return SkipReason(f"{e}; cursor kept")
    previous = decode_cursor(NAME, context.cursor)
    requests = previous.requests if previous else 0
    if previous is None or not isinstance(previous.state, dict):
        return SensorResult(
            skip_reason=f"baseline recorded: {describe_state(state)}; a new commit or changed rows "
            "request a run from now on",
            cursor=encode_cursor(NAME, state, requests),
        )
    changes = diff_dolt(previous.state, state)
    if not changes:
        return SensorResult(
            skip_reason=f"no change in {describe_state(state)}", cursor=encode_cursor(NAME, state, requests)
        )
    reason = "Dolt beads: " + "; ".join(changes)
    cursor = encode_cursor(NAME, state, requests + 1)
    context.log.info(f"requesting raw_beads and the corpus stages: {reason}")
    return SensorResult(
        run_requests=[
            RunRequest(
                run_key=run_key(NAME, cursor),
                run_config=IN_PROCESS,
                asset_selection=corpus_assets_for(context, ["beads"]),
                tags=run_tags(
                    f"sensor:{NAME}_sensor", reason, changed_rigs(previous.state, state), corpus=True
                ),
            )
        ],
        cursor=cursor,
    )


def dolt_sensor(auto: AutomationConfig) -> SensorDefinition:
    @sensor(
        name=f"{NAME}_sensor",
        minimum_interval_seconds=auto.sensor_interval_seconds,
        default_status=sensor_status(auto.beads_sensor),
        target=AssetSelection.groups(*CORPUS_GROUPS),
        description="The town's Dolt beads databases (when beads are read from the Dolt server): a new "
        "Dolt commit, or rows added, changed or removed, rebuilds raw_beads and the corpus stages below it.",
    )
    def _dolt_beads_sensor(context: SensorEvaluationContext, settings: GastownSettings):
        cfg, problem = load_or_reason(settings)
        if cfg is None:
            context.log.error(problem)
            return SkipReason(f"{problem}; cursor kept")
        try:
            return evaluate_dolt_beads(context, cfg)
        except Exception as e:  # noqa: BLE001 (a sensor reports, it does not crash)
            logger.exception("%s_sensor could not look at the Dolt server", NAME)
            return SkipReason(f"{NAME}_sensor failed ({type(e).__name__}: {e}); cursor kept")

    return _dolt_beads_sensor
