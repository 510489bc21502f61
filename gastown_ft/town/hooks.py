"""The one hook each reporting asset wears: `@reports_to_town(stage)` under its `@asset`.

It reads `[town_reporting]`; when that is off (the default) it calls the asset and nothing else.
When on, it reports the stage's start, its progress (training: at most every progress_every_s), its
success with figures, its failure, and a gate refusal (the evaluation check failing) to the town feed;
in a run that trains, or that evaluates or exports a trained adapter, it keeps that training's bead
(created, set in progress, commented with figures, blocked on failure, closed with a reason) and
records the bead's id in the asset's metadata; and it mails a summary when the run ends (its last
reporting asset succeeded), fails or is refused. Whatever happens in here, the asset's own outcome is
unchanged: reporting problems are warnings.

The decorated function keeps its name, signature and annotations (functools.wraps), which is what
Dagster reads for its resources.
"""

from __future__ import annotations

import contextvars
import functools
import time
from collections.abc import Callable
from typing import Any

from gastown_ft.town import feed
from gastown_ft.town.mail import compose
from gastown_ft.town.reporting import TownReporter, adapter_bead, bead_ref
from gastown_ft.town.summaries import plain, progress_line, stage_summary

TRAINING_ASSET = "lora_adapter"
REPORTED: dict[str, str] = {}  # asset name -> stage, for every decorated asset
_current: contextvars.ContextVar[StageHook | None] = contextvars.ContextVar("town_stage", default=None)


def current_stage() -> StageHook | None:
    """The reporting hook of the asset running now (None when reporting is off)."""
    return _current.get()


def reports_to_town(stage: str, *, announce_start: bool = True, announce_success: bool = True):
    """Report this asset as (part of) `stage`; a stage made of several assets announces its start
    from the first and its success from the last (failures always)."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        REPORTED[fn.__name__] = stage

        @functools.wraps(fn)
        def asset_fn(context, *args, **kwargs):
            hook = StageHook.open(context, kwargs.get("settings"), fn.__name__, stage)
            if hook is None:
                return fn(context, *args, **kwargs)
            if "progress_sink" in kwargs:
                kwargs["progress_sink"] = hook.progress_tee(kwargs["progress_sink"])
            token = _current.set(hook)
            try:
                hook.guard(hook.started, announce_start)
                try:
                    result = fn(context, *args, **kwargs)
                except BaseException as e:
                    hook.guard(hook.failed, e)
                    raise
                hook.guard(hook.succeeded, result, announce_success)
                return result
            finally:
                _current.reset(token)

        return asset_fn

    return decorate


def _selected_assets(context) -> set[str]:
    """The assets this run materializes (the run's selection, else its job's)."""
    selection = getattr(context.run, "asset_selection", None)
    if not selection:
        try:
            selection = context.job_def.asset_layer.selected_asset_keys
        except Exception:  # noqa: BLE001 (another Dagster version: assume every asset)
            selection = None
    if selection:
        return {k.to_user_string() for k in selection}
    return set(REPORTED)


def _downstream(context, name: str) -> set[str]:
    from dagster import AssetSelection

    try:  # the graph of the job this run executes
        graph = context.job_def.asset_layer.asset_graph
    except Exception:  # noqa: BLE001 (another Dagster version: the code location's graph)
        from gastown_ft.definitions import defs

        graph = defs.resolve_asset_graph()
    keys = AssetSelection.assets(name).downstream().resolve(graph)
    return {k.to_user_string() for k in keys} - {name}


def _error_text(e: BaseException) -> str:
    text = getattr(e, "description", None) or str(e) or type(e).__name__
    return str(text).strip().splitlines()[0][:500] if str(text).strip() else type(e).__name__


class StageHook:
    def __init__(self, context, settings, asset: str, stage: str, reporter: TownReporter) -> None:
        self.context, self.settings, self.asset, self.stage = context, settings, asset, stage
        self.reporter = reporter
        self.run_id: str = context.run.run_id
        self.selected = _selected_assets(context)
        self.last_progress = time.monotonic()

    @classmethod
    def open(cls, context, settings_resource, asset: str, stage: str) -> StageHook | None:
        try:
            settings = settings_resource.load()
            if not settings.town_reporting.enabled:
                return None
            reporter = TownReporter(settings, context.run.run_id, warn=context.log.warning)
            return cls(context, settings, asset, stage, reporter)
        except Exception as e:  # noqa: BLE001 (reporting never stops an asset)
            context.log.warning(f"town reporting is off for {asset}: {type(e).__name__}: {e}")
            return None

    def guard(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001
            self.context.log.warning(f"town reporting ({self.asset}): {type(e).__name__}: {e}")

    # --- what the asset and its helpers call -------------------------------------------------------

    def note(self, type_: str, message: str, comment: bool = True, **payload: Any) -> None:
        """An event of this stage (and a comment on the run's bead): pauses, resumes, drift."""
        self.guard(self._note, type_, message, comment, payload)

    def _note(self, type_: str, message: str, comment: bool, payload: dict[str, Any]) -> None:
        bead = self.reporter.bead
        self.reporter.event(type_, {"stage": self.stage, "asset": self.asset, "message": message, **payload})
        if comment and bead:
            self.reporter.comment(f"{self.stage}: {message}")

    def progress_tee(self, sink: Any) -> Callable[[dict[str, Any]], None]:
        def tee(ev: dict[str, Any]) -> None:
            if callable(sink):
                sink(ev)
            now = time.monotonic()
            if now - self.last_progress >= self.reporter.cfg.progress_every_s:
                self.last_progress = now
                self.note(feed.PROGRESS, progress_line(ev), step=ev.get("step"), total=ev.get("total_steps"))

        return tee

    # --- the stage's life --------------------------------------------------------------------------

    def _trains(self) -> bool:
        return TRAINING_ASSET in self.selected

    def _bead_for_this_run(self) -> None:
        """Training opens (or takes over) the training bead; evaluation and export report to the bead
        of the adapter they work on."""
        if self.reporter.bead:
            return
        if self.stage == "training" and self._trains():
            cfg = self.settings
            self.reporter.open_training_bead(
                f"gastown-ft: fine-tune {cfg.training.base_model} on the town's corpus",
                "\n".join(
                    [
                        "A gastown-ft training run, reported by gastown-ft ([town_reporting]).",
                        f"Config: {cfg.config_path or '(defaults)'}",
                        f"Base model: {cfg.training.base_model}",
                        f"Dagster run: {self.run_id}",
                        "Progress and figures arrive as comments; the town feed has every event "
                        f"(source {feed.SOURCE}).",
                    ]
                ),
            )
        elif self.stage in ("evaluation", "export"):
            from gastown_ft.instance import latest_metadata

            adapter = (latest_metadata(self.context.instance, TRAINING_ASSET) or {}).get("path")
            recorded = adapter_bead(adapter)
            if recorded.get("bead") and not recorded.get("closed"):
                self.reporter.use_bead(recorded["bead"])
                self.reporter.update_state(adapter_dir=str(adapter))
                self.reporter.set_status("in_progress")

    def started(self, announce: bool) -> None:
        self._bead_for_this_run()
        if self.asset == TRAINING_ASSET and "base_model" in self.selected:
            announce = False  # the run's base_model step announced the training
        if announce:
            self.reporter.event(
                feed.STARTED,
                {
                    "stage": self.stage,
                    "asset": self.asset,
                    "bead": self.reporter.bead,
                    "message": f"{self.stage} started",
                },
            )

    def failed(self, e: BaseException) -> None:
        error = _error_text(e)
        self.reporter.record_stage(self.stage, "failed", error)
        bead = self.reporter.bead
        self.reporter.event(
            feed.FAILED, {"stage": self.stage, "asset": self.asset, "bead": bead, "message": error}
        )
        if bead:
            self.reporter.comment(f"{self.stage} FAILED ({self.asset}): {error}")
            self.reporter.set_status("blocked")
        self._mail("failed", error)

    def succeeded(self, result: Any, announce: bool) -> None:
        meta = plain(getattr(result, "metadata", None))
        checks = getattr(result, "check_results", None) or []
        refused = self.stage == "evaluation" and any(not c.passed for c in checks)
        line, figures = stage_summary(self.asset, meta)
        bead = self.reporter.bead
        if bead:
            self.context.add_asset_metadata({"town_bead": bead})
        if self.asset == TRAINING_ASSET and meta.get("path"):
            from gastown_ft.town.drift import close_drift

            self.reporter.attach_adapter(str(meta["path"]))
            close_drift(self.reporter, f"retrained in run {self.run_id[:8]}")
        if not (announce or refused):
            return
        status = "refused" if refused else "succeeded"
        self.reporter.record_stage(self.stage, status, line, figures)
        self.reporter.event(
            feed.REFUSED if refused else feed.SUCCEEDED,
            {"stage": self.stage, "asset": self.asset, "bead": bead, "message": line, "figures": figures},
        )
        if bead:
            self.reporter.comment(line)
        if refused:
            if bead:
                self.reporter.close(f"refused by the evaluation gate: {figures.get('decision') or line}")
            self._mail("refused")
            return
        if self.asset == "exported_model":
            self._exported(meta, bead)
        if self.asset == "corpus_splits" and not self._trains():
            from gastown_ft.town.drift import report_drift

            report_drift(self, meta)
        if self._terminal():
            if bead and not self.reporter.state().get("closed"):
                self.reporter.set_status("open")  # this run is done; the bead waits for the next step
            if bead or self.stage != "corpus":
                self._mail("succeeded")

    def _exported(self, meta: dict[str, Any], bead: str | None) -> None:
        version = meta.get("version")
        if meta.get("promoted"):
            message = f"{version} promoted: `gastown-ft serve` uses it"
            self.reporter.record_stage("promotion", "succeeded", message, {"version": version})
            self.reporter.event(
                feed.SUCCEEDED,
                {
                    "stage": "promotion",
                    "asset": self.asset,
                    "bead": bead,
                    "message": message,
                    "version": version,
                },
            )
        if bead:
            self.reporter.close(
                f"exported {version}" + (" and promoted" if meta.get("promoted") else " (not promoted)")
            )

    def _terminal(self) -> bool:
        later = _downstream(self.context, self.asset) & self.selected & set(REPORTED)
        return not later

    def _mail(self, outcome: str, error: str | None = None) -> None:
        state = self.reporter.state()
        bead = state.get("bead")
        ref = bead_ref(bead) if bead else None
        subject, body = compose(outcome, self.stage, state, self.run_id, ref, error)
        self.reporter.mail(subject, body)
