"""Corpus assets: `scrubbed_documents` -> `instruction_pairs` -> `corpus_splits` (group `corpus`).

Thin adapters over corpus.stages. Each reports its Great Expectations suite as blocking asset
checks, so a failed check stops the stages below it.
"""

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
from gastown_ft.corpus.documents import SOURCES
from gastown_ft.corpus.expectations import CheckOutcome
from gastown_ft.corpus.stages import pairs_stage, scrub_stage, splits_stage
from gastown_ft.resources import GastownSettings
from gastown_ft.town.hooks import reports_to_town


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
@reports_to_town("corpus", announce_success=False)
def scrubbed_documents(context: AssetExecutionContext, settings: GastownSettings) -> MaterializeResult:
    cfg = settings.load()
    s, outcomes = scrub_stage(
        settings.store(), reuse=cfg.corpus.reuse, identities=cfg.scrub, town_root=cfg.town.root
    )
    mb_s = s["bytes_in"] / 1e6 / s["seconds"] if s["seconds"] else 0.0
    context.log.info(
        f"scrubbed {s['rows']} documents ({s['bytes_in'] / 1e6:.2f} MB, {mb_s:.1f} MB/s); "
        f"redactions {s['by_kind']}; people learned {s['identities']['people']}; unsafe {s['quarantined']}; "
        f"{s['recomputed_documents']} scrubbed now, {s['reused_documents']} unchanged since the last build"
    )
    return MaterializeResult(
        metadata={
            "row_count": MetadataValue.int(s["rows"]),
            "bytes": MetadataValue.int(int(s["bytes"])),
            "redactions": MetadataValue.int(sum(s["by_kind"].values())),
            "redactions_by_kind": MetadataValue.json(s["by_kind"]),
            "redactions_by_source": MetadataValue.json(s["by_source"]),
            # people learned across the corpus (counts only: the names never leave the scrub stage)
            "identities": MetadataValue.json(s["identities"]),
            "documents_changed": MetadataValue.int(s["documents_changed"]),
            "quarantine_count": MetadataValue.int(s["quarantined"]),
            "mb_per_s": MetadataValue.float(round(mb_s, 3)),
            "reused_documents": MetadataValue.int(s["reused_documents"]),
            "recomputed_documents": MetadataValue.int(s["recomputed_documents"]),
            "path": MetadataValue.path(s["path"]),
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
@reports_to_town("corpus", announce_start=False, announce_success=False)
def instruction_pairs(context: AssetExecutionContext, settings: GastownSettings) -> MaterializeResult:
    s, outcomes, examples = pairs_stage(settings.store(), settings.load().corpus)
    context.log.info(
        f"pairs: {s['rows']} examples by task {s['by_task']}; dedup {s['dedup']}; "
        f"invalid commands {s['invalid_commands']}; over budget {s['over_budget']}; "
        f"machinery beads {s['machinery']['machinery']} ({s['machinery']['mode']}d); "
        f"documents turned into examples now {s['recomputed_documents']}, reused {s['reused_documents']}"
    )
    preview = [
        [
            e["task"],
            e["role"] or "",
            e["rig"] or "",
            next((m["content"] for m in e["messages"] if m["role"] == "user"), ""),
        ]
        for e in examples[:10]
    ]
    return MaterializeResult(
        metadata={
            "row_count": MetadataValue.int(s["rows"]),
            "built": MetadataValue.int(s["built"]),
            "by_task": MetadataValue.json(s["by_task"]),
            "by_role": MetadataValue.json(s["by_role"]),
            "dedup": MetadataValue.json(s["dedup"]),
            "conflicts": MetadataValue.int(len(s["conflicts"])),
            # beads Gas Town's machinery wrote (digests, wisps, agent/MR/mail beads ...), by kind
            "machinery": MetadataValue.json(s["machinery"]),
            "conflict_examples": MetadataValue.json(s["conflicts"][:10]),
            "invalid_commands_dropped": MetadataValue.json(s["invalid_commands"]),
            "invalid_command_examples": MetadataValue.json(s["invalid_examples"]),
            "over_budget_dropped": MetadataValue.json(s["over_budget"]),
            "reused_documents": MetadataValue.int(s["reused_documents"]),
            "recomputed_documents": MetadataValue.int(s["recomputed_documents"]),
            "validated_examples": MetadataValue.int(s["validated_examples"]),
            "reuse": MetadataValue.json(s["reuse"]),
            "path": MetadataValue.path(s["path"]),
            "preview": MetadataValue.md(md_table(["task", "role", "rig", "question"], preview)),
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
@reports_to_town("corpus", announce_start=False)
def corpus_splits(context: AssetExecutionContext, settings: GastownSettings) -> MaterializeResult:
    s, outcomes = splits_stage(settings.store(), settings.load().corpus)
    context.log.info(
        f"splits: {s['counts']}; corpus version {s['corpus_version'][:16]}; since the last build "
        f"+{s['examples_added']} -{s['examples_removed']} examples ({s['corpus_change_fraction']:.2%}); "
        f"{len(s['coverage_moves'])} group(s) moved so that every task with a few groups is tested"
    )
    for w in s["split_warnings"]:
        context.log.warning(f"splits: {w}")
    return MaterializeResult(
        metadata={
            "row_count": MetadataValue.int(s["rows"]),
            **{f"{name}_count": MetadataValue.int(n) for name, n in s["counts"].items()},
            "by_split_and_task": MetadataValue.json(s["by_split_and_task"]),
            # groups moved out of their hash split for coverage, and tasks / families with no test example
            "coverage_moves": MetadataValue.json(s["coverage_moves"]),
            "warnings": MetadataValue.json(s["split_warnings"]),
            "warning_count": MetadataValue.int(len(s["split_warnings"])),
            "corpus_version": MetadataValue.text(s["corpus_version"]),
            "examples_added": MetadataValue.int(s["examples_added"]),
            "examples_removed": MetadataValue.int(s["examples_removed"]),
            "previous_examples": MetadataValue.int(s["previous_examples"]),
            # (added + removed) / previous size; 1.0 for a first build. Sensors read it to decide a retrain.
            "corpus_change_fraction": MetadataValue.float(float(s["corpus_change_fraction"])),
            "path": MetadataValue.path(s["path"]),
            "dataset_card_path": MetadataValue.path(s["card"]),
        },
        check_results=_results(outcomes),
    )
