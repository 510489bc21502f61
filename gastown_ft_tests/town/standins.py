"""Stand-ins for the pipeline's assets, wearing the real `@reports_to_town` hook, for fast tests of the
town reporting through real Dagster runs (the real assets train and evaluate models: minutes).

Same names, stages, resources and metadata keys as the real assets; each does no work but writes what
the next one reads (an adapter directory, an evaluation's results.json).
(No `from __future__ import annotations`: Dagster reads the resource hints.)
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    DagsterInstance,
    Failure,
    MaterializeResult,
    MetadataValue,
    ResourceParam,
    asset,
    materialize,
)

from gastown_ft.config import (
    ArtifactsConfig,
    DagsterConfig,
    Settings,
    TownConfig,
    TownReportingConfig,
    load_settings,
    render_settings_toml,
)
from gastown_ft.resources import GastownSettings
from gastown_ft.town.hooks import reports_to_town

BEHAVIOUR: dict[str, Any] = {"fail_training": False, "eval_passes": True, "pause": False}


@asset
@reports_to_town("corpus", announce_start=False)
def corpus_splits(context: AssetExecutionContext, settings: GastownSettings) -> MaterializeResult:
    return MaterializeResult(
        metadata={
            "row_count": 120,
            "train_count": 96,
            "validation_count": 12,
            "test_count": 12,
            "corpus_version": "c0ffee" * 6,
            "examples_added": 120,
            "examples_removed": 0,
            "corpus_change_fraction": 1.0,
        }
    )


@asset(deps=[corpus_splits])
@reports_to_town("training", announce_success=False)
def base_model(
    context: AssetExecutionContext, settings: GastownSettings, progress_sink: ResourceParam[Any]
) -> MaterializeResult:
    return MaterializeResult(metadata={"name": "embedded", "source": "embedded"})


@asset(deps=[base_model])
@reports_to_town("training")
def lora_adapter(
    context: AssetExecutionContext, settings: GastownSettings, progress_sink: ResourceParam[Any]
) -> MaterializeResult:
    for step in (1, 2, 3) if callable(progress_sink) else ():
        progress_sink(
            {
                "what": "lora",
                "step": step,
                "total_steps": 3,
                "loss": 1.0 / step,
                "tokens_per_s": 900.0,
                "eta_s": 3 - step,
            }
        )
    if BEHAVIOUR.get("pause"):  # the town needs the box once, at step 2: the real guard, a fake box
        _pause_once(context)
    if BEHAVIOUR["fail_training"]:
        raise Failure(description="training stopped at step 2/3: out of memory; checkpoint saved")
    adapter = Path(settings.load().artifacts.dir) / "training" / "runs" / "abc" / "adapter"
    adapter.mkdir(parents=True, exist_ok=True)
    return MaterializeResult(
        metadata={
            "steps": 3,
            "val_loss_first": 2.5,
            "val_loss_final": 1.25,
            "tokens_per_s": 900.0,
            "wall_seconds": 12.0,
            "peak_rss_mb": 700.0,
            "corpus_version": "c0ffee" * 6,
            "path": MetadataValue.path(str(adapter)),
        }
    )


@asset(
    deps=[lora_adapter],
    check_specs=[AssetCheckSpec("tuned_not_worse_than_base", asset="eval_report", blocking=True)],
)
@reports_to_town("evaluation")
def eval_report(context: AssetExecutionContext, settings: GastownSettings) -> MaterializeResult:
    passed = BEHAVIOUR["eval_passes"]
    results = Path(settings.load().artifacts.dir) / "evaluation" / "results.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    summary = "suite 0.61 > base 0.54" if passed else "suite 0.50 is not above base 0.54"
    results.write_text(
        json.dumps(
            {
                "passed": passed,
                "decision": {"summary": summary},
                "metrics": {"suite_score": {"base": 0.54, "tuned": 0.61 if passed else 0.5}},
            }
        )
    )
    return MaterializeResult(
        check_results=[AssetCheckResult(check_name="tuned_not_worse_than_base", passed=passed)],
        metadata={"passed": passed, "decision": summary, "results_path": MetadataValue.path(str(results))},
    )


@asset(deps=[eval_report])
@reports_to_town("export")
def exported_model(context: AssetExecutionContext, settings: GastownSettings) -> MaterializeResult:
    return MaterializeResult(
        metadata={"version": "v1", "promoted": True, "merged_path": "/registry/v1/bundle/merged"}
    )


@dataclass
class _Trained:
    """The fields of training/lora.TrainResult that the pause loop reads."""

    status: str
    steps_done: int
    total_steps: int = 3
    wall_seconds: float = 1.0
    last_checkpoint: str | None = None


def _pause_once(context) -> None:
    from gastown_ft.config import YieldConfig
    from gastown_ft.town.yielding import BoxReading, YieldGuard, _town_note

    looks = iter([False, True, False, False])  # busy at the second look, then free
    guard = YieldGuard(
        YieldConfig(check_every_s=1e-9, resume_after_s=0),
        read=lambda _f: BoxReading(100 if next(looks, False) else 8000, 0.1, 2, False),
        sleep=lambda _s: None,
        log=context.log.info,
        notify=_town_note,
    )
    done = {"steps": 0}

    def trainer(should_stop):
        while done["steps"] < 3:
            if should_stop():
                return _Trained("cancelled", done["steps"], last_checkpoint="step-1")
            done["steps"] += 1
        return _Trained("completed", 3)

    guard.run(trainer)


ASSETS = [corpus_splits, base_model, lora_adapter, eval_report, exported_model]


def reporting_settings(work: Path, **reporting: Any) -> Settings:
    town = work / "town"
    town.mkdir(parents=True, exist_ok=True)
    cfg = Settings(
        town=TownConfig(root=town),
        artifacts=ArtifactsConfig(dir=work / "artifacts"),
        dagster=DagsterConfig(home=work / "dagster"),
        town_reporting=TownReportingConfig(enabled=True, **reporting),
    )
    path = work / "gastown-ft.toml"
    path.write_text(render_settings_toml(cfg))
    return load_settings(path)


def run(settings: Settings, instance: DagsterInstance, selection: list[str] | None = None):
    return materialize(
        ASSETS,
        selection=selection,
        instance=instance,
        resources={"settings": GastownSettings(config_file=str(settings.config_path)), "progress_sink": None},
        raise_on_error=False,
    )
