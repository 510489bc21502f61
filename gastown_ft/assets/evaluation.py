"""Evaluation asset (group `evaluation`): `eval_report`, base against tuned, and its blocking check.

A thin adapter over gastown_ft/evaluation/: it finds the adapter the last `lora_adapter` run wrote and
the base model it was trained on, runs `evaluate_adapter`, writes
`<artifacts>/evaluation/<adapter run>/{report.md, results.json}` and records every metric as a float
(base and tuned) so the UI plots them across materializations.

The check `tuned_not_worse_than_base` is declared on the asset and blocking: when it fails, assets
downstream of eval_report in the same run (the export) do not run. Its verdict is the one in
results.json (`passed`), decided by evaluation/compare.py with the [evaluation] tolerances.
"""

import json
import math
import time
from pathlib import Path

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from gastown_ft.artifacts import ArtifactStore
from gastown_ft.config import Settings
from gastown_ft.errors import GastownFTError
from gastown_ft.instance import latest_metadata
from gastown_ft.resources import GastownSettings
from gastown_ft.training.inputs import embedded_model_dir, load_split_examples

EVALUATION_DIR = "evaluation"
CHECK_NAME = "tuned_not_worse_than_base"


def _adapter_dir(context: AssetExecutionContext) -> Path:
    path = (latest_metadata(context.instance, "lora_adapter") or {}).get("path")
    if path is None:
        raise Failure(
            description="there is no trained adapter to evaluate: lora_adapter has not been materialized",
            metadata={"hint": "train first: gastown-ft train (or materialize lora_adapter)"},
        )
    adapter = Path(str(path))
    if not (adapter / "adapter_config.json").is_file():
        raise Failure(
            description=f"the adapter of the last training run is missing: {adapter}",
            metadata={"hint": "rematerialize lora_adapter"},
        )
    return adapter


def _base_dir(adapter: Path, cfg: Settings, store: ArtifactStore) -> Path:
    """The base model the adapter was trained on (its provenance), else the configured one."""
    provenance = adapter.parent / "provenance.json"
    if provenance.is_file():
        try:
            path = Path(json.loads(provenance.read_text())["base_model"]["path"])
            if (path / "config.json").is_file():
                return path
        except (OSError, ValueError, KeyError, TypeError):
            pass
    from gastown_ft.training.base_model import resolve_base_model

    return resolve_base_model(
        cfg.training.base_model,
        allow_network=cfg.training.allow_network,
        embedded_dir=embedded_model_dir(store),
    ).path


def _float_metadata(metrics: dict) -> dict:
    out = {}
    for name, values in metrics.items():
        key = name.replace("/", "_")
        for variant in ("base", "tuned"):
            v = values.get(variant)
            if isinstance(v, (int, float)) and math.isfinite(v):
                out[f"{key}_{variant}"] = MetadataValue.float(round(float(v), 6))
    return out


@asset(
    group_name="evaluation",
    kinds={"python", "pytorch"},
    deps=[AssetKey("lora_adapter"), AssetKey("base_model"), AssetKey("corpus_splits")],
    description="Base against tuned on the same prompts with greedy decoding: held-out loss and perplexity "
    "per task on the test split, the Gas Town task suite (command validity, exact answers, formula "
    "authoring), promptfoo patrol suites, and the general-text guard; report.md and results.json.",
    check_specs=[
        AssetCheckSpec(
            CHECK_NAME,
            asset="eval_report",
            blocking=True,
            description="The tuned model is not worse than the base on the task and patrol suites (within "
            "[evaluation] suite_tolerance) and keeps general-text perplexity within guard_max_ppl_ratio. "
            "Blocking: when it fails, the export does not run.",
        )
    ],
)
def eval_report(context: AssetExecutionContext, settings: GastownSettings) -> MaterializeResult:
    from gastown_ft.evaluation.report import write_results
    from gastown_ft.evaluation.run import evaluate_adapter

    cfg = settings.load()
    store = settings.store()
    adapter = _adapter_dir(context)
    test = load_split_examples(store, "test")
    if not test:
        raise Failure(description="the test split is empty: there is nothing to evaluate on")
    started = time.perf_counter()
    try:
        base = _base_dir(adapter, cfg, store)
        results = evaluate_adapter(
            base,
            adapter,
            test,
            cfg.evaluation,
            max_seq_len=cfg.training.max_seq_len,
            config_dir=cfg.config_path.parent if cfg.config_path else None,
            log=context.log.info,
        )
    except GastownFTError as e:
        raise Failure(description=str(e)) from None
    out_dir = store.root / EVALUATION_DIR / adapter.parent.name
    report_path, results_path = write_results(out_dir, results)
    decision = results["decision"]
    context.log.info(f"evaluation {'passed' if results['passed'] else 'FAILED'}: {decision['summary']}")
    check = AssetCheckResult(
        check_name=CHECK_NAME,
        passed=bool(results["passed"]),
        severity=AssetCheckSeverity.ERROR,
        description=decision["summary"],
        metadata={
            "suite_tolerance": MetadataValue.float(cfg.evaluation.suite_tolerance),
            "guard_max_ppl_ratio": MetadataValue.float(cfg.evaluation.guard_max_ppl_ratio),
            "failed_checks": MetadataValue.json([c["name"] for c in decision["checks"] if not c["passed"]]),
            "checks": MetadataValue.json(decision["checks"]),
            "results_path": MetadataValue.path(str(results_path)),
        },
    )
    return MaterializeResult(
        check_results=[check],
        metadata={
            **_float_metadata(results["metrics"]),
            "guard_ppl_ratio": MetadataValue.float(
                round(results["guard"]["ratio"], 6) if math.isfinite(results["guard"]["ratio"]) else 0.0
            ),
            "passed": MetadataValue.bool(bool(results["passed"])),
            "decision": MetadataValue.text(decision["summary"]),
            "task_cases": MetadataValue.int(results["task_suite"]["tuned"]["cases"]),
            "eval_seconds": MetadataValue.float(round(time.perf_counter() - started, 1)),
            "adapter_path": MetadataValue.path(str(adapter)),
            "base_model_path": MetadataValue.path(str(base)),
            "results_path": MetadataValue.path(str(results_path)),
            "report_path": MetadataValue.path(str(report_path)),
            "report": MetadataValue.md(report_path.read_text(encoding="utf-8")),
        },
    )


evaluation_assets: list = [eval_report]
# The check is declared on the asset (check_specs), so it runs in every run that materializes it.
evaluation_checks: list = []
