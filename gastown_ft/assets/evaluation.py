"""Evaluation asset (group `evaluation`): `eval_report`, base against tuned, and its blocking check.

A thin adapter over gastown_ft/evaluation/: it finds the adapter the last `lora_adapter` run wrote and
the base model it was trained on, runs `evaluate_adapter`, writes
`<artifacts>/evaluation/<adapter run>/{report.md, results.json}`. Its metadata leads with the verdict
and one Markdown table (a row per metric, a column per arm: base, tuned, base + retrieval, tuned +
retrieval), then the few headline numbers as floats (base and tuned) so the UI plots them across
materializations; the rest is in the report and results.json.

The check `tuned_not_worse_than_base` (the name is kept for the run history; the rule is stricter:
the tuned model must beat the base) is declared on the asset and blocking: when it fails, assets
downstream of eval_report in the same run (the export) do not run. Its verdict is the one in
results.json (`passed`), decided by evaluation/compare.py with the [evaluation] settings
(suite_min_gain, suite_floor, suite_tolerance, guard_max_ppl_ratio, max_unsafe_increase; and no
planted canary in any generation). What the evaluation could not
measure (a task family or suite task with no case in the test split) is a warning: in the report,
results.json, the asset's `warnings`/`families_missing` metadata and the check's description.
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
from gastown_ft.town.hooks import reports_to_town
from gastown_ft.training.inputs import load_split_examples, resolve_configured_base

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
    return resolve_configured_base(cfg, store).path


# The numbers the UI plots across materializations (Assets -> eval_report -> Plots); everything else
# is in the table, the report and results.json.
PLOTTED = (
    "suite_score",
    "command_validity",
    "heldout_loss",
    "general_text_perplexity",
    "retrieval_suite_score",
    "episode_success",
    "unsafe_rate",
    "latency_p50_ms",
    "tokens_per_s",
)


def _float_metadata(metrics: dict) -> dict:
    out = {}
    for name, values in metrics.items():
        if name not in PLOTTED:
            continue
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
    "authoring), retrieval arms (base and tuned prompted with the town's docs), episodes in a simulated "
    "town, the safety suite and canary check, promptfoo patrol suites, the general-text guard, and the "
    "cost of use per arm; report.md and results.json.",
    check_specs=[
        AssetCheckSpec(
            CHECK_NAME,
            asset="eval_report",
            blocking=True,
            description="The tuned model beats the base on the Gas Town task suite (suite_score > base + "
            "[evaluation] suite_min_gain) and reaches suite_floor; is not worse than the base on any patrol "
            "suite (within suite_tolerance); keeps general-text perplexity within guard_max_ppl_ratio; is not "
            "more dangerous than the base on the safety suite (max_unsafe_increase); and never writes a "
            "planted canary secret. "
            "A suite with no case fails (nothing measured cannot pass). Task families or suite tasks with "
            "no case in the test split are named as warnings. Blocking: when it fails, the export does not "
            "run.",
        )
    ],
)
@reports_to_town("evaluation")
def eval_report(context: AssetExecutionContext, settings: GastownSettings) -> MaterializeResult:
    from gastown_ft.evaluation import arms
    from gastown_ft.evaluation.report import write_results
    from gastown_ft.evaluation.retrieval import load_documents, source_ids_of
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
        # the retrieval arms' town docs: the scrubbed corpus (no secrets), less what the test came from
        documents = (
            load_documents(store.path("corpus", "scrubbed_documents"), source_ids_of(test))
            if cfg.evaluation.retrieval
            else []
        )
        results = evaluate_adapter(
            base,
            adapter,
            test,
            cfg.evaluation,
            max_seq_len=cfg.training.max_seq_len,
            config_dir=cfg.config_path.parent if cfg.config_path else None,
            gguf_cache=store.gguf_cache_dir(),
            retrieval_documents=documents,
            log=context.log.info,
        )
    except GastownFTError as e:
        raise Failure(description=str(e)) from None
    out_dir = store.evaluation_dir(adapter.parent.name)
    report_path, results_path = write_results(out_dir, results)
    decision = results["decision"]
    warnings = list(results.get("warnings") or [])
    suite = results["task_suite"]
    context.log.info(f"evaluation {'passed' if results['passed'] else 'FAILED'}: {decision['summary']}")
    for w in warnings:
        context.log.warning(f"evaluation: {w}")
    description = decision["summary"]
    if warnings:
        description += f". WARNING ({len(warnings)}): " + "; ".join(warnings)
    check = AssetCheckResult(
        check_name=CHECK_NAME,
        passed=bool(results["passed"]),
        severity=AssetCheckSeverity.ERROR,
        description=description,
        metadata={
            "suite_min_gain": MetadataValue.float(cfg.evaluation.suite_min_gain),
            "suite_floor": MetadataValue.float(cfg.evaluation.suite_floor),
            "suite_tolerance": MetadataValue.float(cfg.evaluation.suite_tolerance),
            "guard_max_ppl_ratio": MetadataValue.float(cfg.evaluation.guard_max_ppl_ratio),
            "max_unsafe_increase": MetadataValue.float(cfg.evaluation.max_unsafe_increase),
            "failed_checks": MetadataValue.json([c["name"] for c in decision["checks"] if not c["passed"]]),
            "checks": MetadataValue.json(decision["checks"]),
            "warnings": MetadataValue.json(warnings),
            "results_path": MetadataValue.path(str(results_path)),
        },
    )
    verdict = f"{'PASSED' if results['passed'] else 'FAILED'}: {decision['summary']}"
    answer = arms.tuning_vs_prompting(results)
    table = arms.markdown(results) + (f"\n\n{answer}" if answer else "")
    return MaterializeResult(
        check_results=[check],
        # The verdict and one table first (the UI lists entries in this order); then the few numbers
        # it plots, then paths and counts.
        metadata={
            "verdict": MetadataValue.text(verdict),
            "base_vs_tuned": MetadataValue.md(table),
            **_float_metadata(results["metrics"]),
            "guard_ppl_ratio": MetadataValue.float(
                round(results["guard"]["ratio"], 6) if math.isfinite(results["guard"]["ratio"]) else 0.0
            ),
            "passed": MetadataValue.bool(bool(results["passed"])),
            "decision": MetadataValue.text(decision["summary"]),
            "task_cases": MetadataValue.int(suite["tuned"]["cases"]),
            "warnings": MetadataValue.json(warnings),
            "warning_count": MetadataValue.int(len(warnings)),
            "families_missing": MetadataValue.int(len(suite.get("families_missing") or [])),
            "tasks_missing": MetadataValue.int(len(suite.get("tasks_missing") or [])),
            "eval_seconds": MetadataValue.float(round(time.perf_counter() - started, 1)),
            "engine": MetadataValue.text(results["decoding"]["engine"]),  # what wrote the answers
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
