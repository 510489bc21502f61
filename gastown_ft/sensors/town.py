"""Sensors on the town: rig git HEADs, formula files, beads exports, session transcripts.

Each keeps the state it last acted on as its cursor, compares a fresh stat-based snapshot with it
(gastown_ft.automation) and requests one run of the affected source assets and the corpus stages
below them, tagged with the trigger, the reason and the rigs. With nothing changed it skips and
says what it checked. The first tick (no cursor) only records a baseline. A problem reading the town
is logged and reported as the skip reason; the cursor then stays as it was.
"""

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

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
from gastown_ft.automation.diff import (
    FileChange,
    describe_file_changes,
    diff_files,
    diff_heads,
    next_file_state,
    next_heads_state,
    rigs_of,
)
from gastown_ft.automation.snapshots import (
    FileSnapshot,
    FileStat,
    beads_files,
    formula_files,
    parse_file_state,
    parse_heads_state,
    rig_heads,
    transcript_files_snapshot,
)
from gastown_ft.config import AutomationConfig, Settings, TownConfig
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

# What a moved HEAD can change: every file of the rig's tree, read by these sources. Transcripts and
# events live outside the rig; their own sensor and the corpus refresh pick them up.
RIG_TREE_SOURCES = ("formulas", "beads", "conventions")
MAX_LOGGED_PROBLEMS = 10


def _log_unreadable(context: SensorEvaluationContext, unreadable: dict[str, str]) -> str:
    """Log what could not be read; return a short note for the skip reason."""
    for path, why in list(unreadable.items())[:MAX_LOGGED_PROBLEMS]:
        context.log.warning(f"cannot read {path}: {why}; its last known state is kept")
    if len(unreadable) > MAX_LOGGED_PROBLEMS:
        context.log.warning(f"... and {len(unreadable) - MAX_LOGGED_PROBLEMS} more unreadable paths")
    if not unreadable:
        return ""
    first = next(iter(unreadable))
    return f"; {len(unreadable)} unreadable path(s) kept as they were (first: {first})"


def _guarded(context: SensorEvaluationContext, name: str, evaluate: Callable[[], object]):
    """Run one evaluation; any unexpected error becomes a logged skip, never a failed tick."""
    try:
        return evaluate()
    except Exception as e:  # noqa: BLE001
        logger.exception("%s could not look at the town", name)
        context.log.exception(f"{name} could not look at the town")
        return SkipReason(f"{name} could not look at the town ({type(e).__name__}: {e}); cursor kept")


def _wanted_sources(cfg: Settings, sources: tuple[str, ...]) -> list[str]:
    return [s for s in sources if s in cfg.town.sources]


# -- rig HEADs ----------------------------------------------------------------------------------------
def evaluate_rig_heads(context: SensorEvaluationContext, cfg: Settings):
    sources = _wanted_sources(cfg, RIG_TREE_SOURCES)
    if not sources:
        return SkipReason(f"none of {', '.join(RIG_TREE_SOURCES)} is in town.sources")
    snap = rig_heads(cfg.town)
    if snap.town_missing:
        context.log.warning(snap.town_missing)
        return SkipReason(f"{snap.town_missing}; cursor kept")
    note = _log_unreadable(context, snap.unreadable)
    previous = decode_cursor("rig_heads", context.cursor)
    requests = previous.requests if previous else 0
    before = parse_heads_state(previous.state) if previous else None
    state = next_heads_state(before or {}, snap)
    cursor = encode_cursor("rig_heads", state, requests)
    if before is None:
        return SensorResult(
            skip_reason=f"baseline recorded: {len(state)} rig HEAD(s); a moved HEAD requests a run from now on"
            + note,
            cursor=cursor,
        )
    changes = diff_heads(before, snap)
    if not changes:
        checked = ", ".join(
            f"{rig} {h.get('branch') or 'detached'}@{(h.get('commit') or 'none')[:7]}"
            for rig, h in state.items()
        )
        return SensorResult(
            skip_reason=f"no rig HEAD moved: checked {len(state)} rig(s) ({checked or 'none'})" + note,
            cursor=cursor,
        )
    reason = "; ".join(c.describe() for c in changes)
    rigs = sorted({c.rig for c in changes})
    cursor = encode_cursor("rig_heads", state, requests + 1)
    context.log.info(f"requesting {', '.join('raw_' + s for s in sources)} and the corpus stages: {reason}")
    return SensorResult(
        run_requests=[
            RunRequest(
                run_key=run_key("rig_heads", cursor),
                run_config=IN_PROCESS,
                asset_selection=corpus_assets_for(context, sources),
                tags=run_tags("sensor:rig_heads_sensor", reason, rigs, corpus=True),
            )
        ],
        cursor=cursor,
    )


# -- files: formulas, beads, transcripts ----------------------------------------------------------------
@dataclass(frozen=True)
class FileWatch:
    name: str  # the sensor's name without "_sensor"; also its cursor kind
    source: str  # the source it rebuilds (raw_<source>)
    what: str  # plural noun in reasons: "formula files"
    snapshot: Callable[[TownConfig], FileSnapshot]
    quiet_seconds: Callable[[AutomationConfig], int] = lambda _a: 0


def _inventory(snap_files: dict[str, FileStat]) -> str:
    by_rig = Counter(st.rig or "town" for st in snap_files.values())
    return ", ".join(f"{rig}: {n}" for rig, n in sorted(by_rig.items())) or "none found"


def evaluate_files(context: SensorEvaluationContext, cfg: Settings, watch: FileWatch):
    if watch.source not in cfg.town.sources:
        return SkipReason(f"{watch.source} is not in town.sources")
    snap = watch.snapshot(cfg.town)
    if snap.town_missing:
        context.log.warning(snap.town_missing)
        return SkipReason(f"{snap.town_missing}; cursor kept")
    note = _log_unreadable(context, snap.unreadable)
    previous = decode_cursor(watch.name, context.cursor)
    requests = previous.requests if previous else 0
    before = parse_file_state(previous.state) if previous else None
    if before is None:
        state = next_file_state({}, snap)
        return SensorResult(
            skip_reason=f"baseline recorded: {len(state)} {watch.what} ({_inventory(state)}); "
            "changes from now on request a run" + note,
            cursor=encode_cursor(watch.name, {p: st.to_json() for p, st in state.items()}, requests),
        )
    changes = diff_files(before, snap)
    quiet = watch.quiet_seconds(cfg.automation)
    now_ns = time.time_ns()

    def settled(c: FileChange) -> bool:
        return c.mtime_ns is None or now_ns - c.mtime_ns >= quiet * 1_000_000_000

    ready = [c for c in changes if settled(c)]
    deferred = frozenset(c.path for c in changes if not settled(c))
    state = next_file_state(before, snap, deferred)
    stored = {p: st.to_json() for p, st in state.items()}
    cursor = encode_cursor(watch.name, stored, requests)
    if not ready:
        waiting = (
            f"; {len(deferred)} still being written (counted once quiet for {quiet}s)" if deferred else ""
        )
        return SensorResult(
            skip_reason=f"no change in {len(snap.files)} {watch.what} ({_inventory(snap.files)})"
            + waiting
            + note,
            cursor=cursor,
        )
    reason = describe_file_changes(watch.what, ready)
    cursor = encode_cursor(watch.name, stored, requests + 1)
    context.log.info(f"requesting raw_{watch.source} and the corpus stages: {reason}")
    return SensorResult(
        run_requests=[
            RunRequest(
                run_key=run_key(watch.name, cursor),
                run_config=IN_PROCESS,
                asset_selection=corpus_assets_for(context, [watch.source]),
                tags=run_tags(f"sensor:{watch.name}_sensor", reason, rigs_of(ready), corpus=True),
            )
        ],
        cursor=cursor,
    )


FORMULAS = FileWatch("formulas", "formulas", "formula files", formula_files)
BEADS = FileWatch("beads", "beads", "beads exports", beads_files)
TRANSCRIPTS = FileWatch(
    "transcripts",
    "transcripts",
    "transcripts",
    transcript_files_snapshot,
    quiet_seconds=lambda a: a.transcript_quiet_seconds,
)

_DESCRIPTIONS = {
    "rig_heads": "Each rig's git HEAD: a new commit or a branch switch rebuilds raw_formulas, raw_beads, "
    "raw_conventions and the corpus stages below them.",
    "formulas": "Formula files in every search path (rig and town .beads/formulas, embedded copies, extra "
    "paths): added, changed or removed rebuilds raw_formulas and the corpus stages below it.",
    "beads": "Beads exports and backups (issues.jsonl and its side tables): a new or changed one rebuilds "
    "raw_beads and the corpus stages below it.",
    "transcripts": "Claude Code session transcripts of the town: new or grown ones (once quiet) rebuild "
    "raw_transcripts and the corpus stages below it.",
}


def _make_sensor(name: str, evaluate, interval: int, on: bool) -> SensorDefinition:
    @sensor(
        name=f"{name}_sensor",
        minimum_interval_seconds=interval,
        default_status=sensor_status(on),
        target=AssetSelection.groups(*CORPUS_GROUPS),
        description=_DESCRIPTIONS[name],
    )
    def _town_sensor(context: SensorEvaluationContext, settings: GastownSettings):
        cfg, problem = load_or_reason(settings)
        if cfg is None:
            context.log.error(problem)
            return SkipReason(f"{problem}; cursor kept")
        return _guarded(context, f"{name}_sensor", lambda: evaluate(context, cfg))

    return _town_sensor


def town_sensors(auto: AutomationConfig) -> list[SensorDefinition]:
    return [
        _make_sensor("rig_heads", evaluate_rig_heads, auto.sensor_interval_seconds, auto.rig_heads_sensor),
        _make_sensor(
            "formulas",
            lambda c, cfg: evaluate_files(c, cfg, FORMULAS),
            auto.sensor_interval_seconds,
            auto.formulas_sensor,
        ),
        _make_sensor(
            "beads",
            lambda c, cfg: evaluate_files(c, cfg, BEADS),
            auto.sensor_interval_seconds,
            auto.beads_sensor,
        ),
        _make_sensor(
            "transcripts",
            lambda c, cfg: evaluate_files(c, cfg, TRANSCRIPTS),
            auto.transcripts_interval_seconds,
            auto.transcripts_sensor,
        ),
    ]
