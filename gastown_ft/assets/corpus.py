"""Corpus assets: `scrubbed_documents` -> `instruction_pairs` -> `corpus_splits` (group `corpus`).

Each runs its Great Expectations suite after writing and reports it as blocking asset checks, so a
failed check stops the stages below it.
"""

import time
from collections import Counter

import pyarrow as pa
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    MetadataValue,
    asset,
)

from gastown_ft.assets.sources import md_table
from gastown_ft.corpus.documents import DOCUMENT_SCHEMA, SOURCES, quarantine_to_table
from gastown_ft.corpus.expectations import (
    CheckOutcome,
    validate_documents,
    validate_examples,
    validate_splits,
)
from gastown_ft.corpus.pairs import build_instruction_pairs
from gastown_ft.corpus.scrub import Scrubber
from gastown_ft.corpus.scrubbing import RedactionReport, scrub_rows
from gastown_ft.corpus.splits import (
    ROW_SCHEMA,
    example_from_record,
    example_to_record,
    split_examples,
    write_splits,
)
from gastown_ft.resources import GastownSettings


def _checks(asset_name: str, *names: str) -> list[AssetCheckSpec]:
    return [AssetCheckSpec(n, asset=asset_name, blocking=True) for n in names]


def _results(outcomes: list[CheckOutcome]) -> list[AssetCheckResult]:
    return [
        AssetCheckResult(
            check_name=o.name,
            passed=o.passed,
            metadata={"description": o.description, "details": MetadataValue.json(o.details)},
        )
        for o in outcomes
    ]


@asset(
    group_name="corpus",
    kinds={"python", "parquet"},
    deps=[AssetKey(f"raw_{s}") for s in SOURCES],
    check_specs=_checks("scrubbed_documents", "schema", "no_secret_residue"),
    description="Every source document with secrets and personal data replaced by typed placeholders; "
    "a redaction report by kind and by source.",
)
def scrubbed_documents(context: AssetExecutionContext, settings: GastownSettings) -> MaterializeResult:
    store = settings.store()
    started = time.perf_counter()
    scrubber = Scrubber()
    report = RedactionReport()
    quarantined = []
    rows_out: list[dict] = []
    for source in SOURCES:
        if not store.exists("raw", source):
            continue
        rows = store.read_table("raw", source).to_pylist()
        rows_out += scrub_rows(rows, scrubber, report, quarantined)
    table = pa.Table.from_pylist(rows_out, schema=DOCUMENT_SCHEMA)
    out = store.write_table("corpus", "scrubbed_documents", table)
    store.write_table("quarantine", "scrub", quarantine_to_table(quarantined))
    outcomes = validate_documents(rows_out, list(DOCUMENT_SCHEMA.names))
    elapsed = time.perf_counter() - started
    mb = sum(r["bytes"] for r in rows_out) / 1e6
    context.log.info(
        f"scrubbed {len(rows_out)} documents ({mb:.2f} MB) in {elapsed:.1f}s; "
        f"redactions {dict(report.by_kind)}; unsafe {len(quarantined)}"
    )
    return MaterializeResult(
        metadata={
            "row_count": MetadataValue.int(len(rows_out)),
            "bytes": MetadataValue.int(int(mb * 1e6)),
            "redactions": MetadataValue.int(sum(report.by_kind.values())),
            "redactions_by_kind": MetadataValue.json(dict(report.by_kind)),
            "redactions_by_source": MetadataValue.json(report.as_dict()["by_source"]),
            "documents_changed": MetadataValue.int(report.documents_changed),
            "quarantine_count": MetadataValue.int(len(quarantined)),
            "mb_per_s": MetadataValue.float(round(mb / elapsed, 3) if elapsed else 0.0),
            "path": MetadataValue.path(str(out)),
        },
        check_results=_results(outcomes),
    )


@asset(
    group_name="corpus",
    kinds={"python", "parquet"},
    deps=[scrubbed_documents],
    check_specs=_checks(
        "instruction_pairs", "schema", "no_secret_residue", "token_lengths", "roles_in_order"
    ),
    description="Chat examples (messages, tool_calls, tools) with task, rig, role, source ids, quality, "
    "weight and group id; commands checked against the gt/bd grammar; deduplicated.",
)
def instruction_pairs(context: AssetExecutionContext, settings: GastownSettings) -> MaterializeResult:
    cfg = settings.load()
    store = settings.store()
    docs = store.read_table("corpus", "scrubbed_documents").to_pylist()
    by_source: dict[str, list[dict]] = {}
    for d in docs:
        by_source.setdefault(d["source"], []).append(d)
    examples, report = build_instruction_pairs(by_source, cfg.corpus)
    table = pa.Table.from_pylist([example_to_record(e) for e in examples], schema=ROW_SCHEMA)
    out = store.write_table("corpus", "instruction_pairs", table)
    outcomes = validate_examples(examples, cfg.corpus.max_tokens)
    context.log.info(
        f"pairs: {len(examples)} examples by task {dict(report.by_task)}; dedup {report.dedup}; "
        f"invalid commands {dict(report.invalid_commands)}; over budget {dict(report.over_budget)}"
    )
    return MaterializeResult(
        metadata={
            "row_count": MetadataValue.int(len(examples)),
            "built": MetadataValue.int(report.built),
            "by_task": MetadataValue.json(dict(report.by_task)),
            "by_role": MetadataValue.json(dict(report.by_role)),
            "dedup": MetadataValue.json(report.dedup),
            "conflicts": MetadataValue.int(len(report.conflicts)),
            "conflict_examples": MetadataValue.json(report.conflicts[:10]),
            "invalid_commands_dropped": MetadataValue.json(dict(report.invalid_commands)),
            "invalid_command_examples": MetadataValue.json(report.invalid_examples),
            "over_budget_dropped": MetadataValue.json(dict(report.over_budget)),
            "path": MetadataValue.path(str(out)),
            "preview": MetadataValue.md(
                md_table(
                    ["task", "role", "rig", "question"],
                    [
                        [
                            e["task"],
                            e["role"] or "",
                            e["rig"] or "",
                            next((m["content"] for m in e["messages"] if m["role"] == "user"), ""),
                        ]
                        for e in examples[:10]
                    ],
                )
            ),
        },
        check_results=_results(outcomes),
    )


@asset(
    group_name="corpus",
    kinds={"python", "parquet"},
    deps=[instruction_pairs],
    check_specs=_checks("corpus_splits", "schema", "no_group_in_two_splits"),
    description="train / validation / test by a hash of each example's group, as Parquet with a dataset card; "
    "stable across rebuilds.",
)
def corpus_splits(context: AssetExecutionContext, settings: GastownSettings) -> MaterializeResult:
    cfg = settings.load()
    store = settings.store()
    examples = [example_from_record(r) for r in store.read_table("corpus", "instruction_pairs").to_pylist()]
    splits = split_examples(examples, seed=cfg.corpus.split_seed, ratios=cfg.corpus.split_ratios)
    out_dir = store.root / "corpus" / "splits"
    summary = write_splits(
        splits,
        out_dir,
        dataset_name="gastown-ft-corpus",
        description="Instruction-tuning examples built from a Gas Town town by gastown-ft.",
        seed=cfg.corpus.split_seed,
        ratios=cfg.corpus.split_ratios,
    )
    outcomes = validate_splits(splits)
    by_split_task = {name: dict(Counter(e["task"] for e in rows)) for name, rows in splits.items()}
    context.log.info(f"splits: { {k: len(v) for k, v in splits.items()} }; version {summary['version']}")
    return MaterializeResult(
        metadata={
            "row_count": MetadataValue.int(len(examples)),
            **{f"{name}_count": MetadataValue.int(len(rows)) for name, rows in splits.items()},
            "by_split_and_task": MetadataValue.json(by_split_task),
            "corpus_version": MetadataValue.text(summary["version"]),
            "path": MetadataValue.path(str(out_dir)),
            "dataset_card_path": MetadataValue.path(str(out_dir / "README.md")),
        },
        check_results=_results(outcomes),
    )
