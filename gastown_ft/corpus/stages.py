"""The corpus stages as plain functions over the artifact store: what each Dagster asset runs, and
what the benchmark times. Each streams where it can and returns a stats dict (plus check outcomes).

read  : town -> raw/<source>.parquet, quarantine/<source>.parquet
scrub : raw/*.parquet -> corpus/scrubbed_documents.parquet, quarantine/scrub.parquet (batch by batch)
pairs : corpus/scrubbed_documents.parquet -> corpus/instruction_pairs.parquet
splits: corpus/instruction_pairs.parquet -> corpus/splits/ (Parquet + dataset card)
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from gastown_ft.artifacts import ArtifactStore
from gastown_ft.config import CorpusConfig, TownConfig
from gastown_ft.corpus.documents import (
    DOCUMENT_SCHEMA,
    QUARANTINE_SCHEMA,
    SOURCES,
    Document,
    ReadLog,
    documents_to_table,
    quarantine_to_table,
)
from gastown_ft.corpus.expectations import CheckOutcome, DocumentChecks, validate_examples, validate_splits
from gastown_ft.corpus.pairs import build_instruction_pairs
from gastown_ft.corpus.scan import TownScan
from gastown_ft.corpus.scrub import Scrubber
from gastown_ft.corpus.scrubbing import RedactionReport, scrub_rows
from gastown_ft.corpus.sources import READERS, claimed_by_any_reader
from gastown_ft.corpus.splits import (
    ROW_SCHEMA,
    example_from_record,
    example_to_record,
    split_examples,
    write_splits,
)

BATCH_ROWS = 500
PREVIEW_ROWS = 10
# Stages that write a quarantine table: each reader, and the scrub stage (secrets it could not remove).
QUARANTINE_TABLES = (*SOURCES, "scrub")


def _batches(docs: Iterator[Document], stats: dict[str, Any]) -> Iterator[pa.Table]:
    batch: list[Document] = []
    for d in docs:
        stats["rows"] += 1
        stats["kinds"][d.kind] += 1
        if len(stats["preview"]) < PREVIEW_ROWS:
            stats["preview"].append([d.title, d.path, d.rig or "", d.role or "", len(d.text)])
        batch.append(d)
        if len(batch) >= BATCH_ROWS:
            yield _counted(documents_to_table(batch), stats)
            batch = []
    if batch:
        yield _counted(documents_to_table(batch), stats)


def _counted(table: pa.Table, stats: dict[str, Any]) -> pa.Table:
    stats["bytes"] += sum(table["bytes"].to_pylist())
    return table


def read_stage(town: TownConfig, store: ArtifactStore, source: str) -> dict[str, Any]:
    """One reader over the town; documents and quarantine written as Parquet."""
    started = time.perf_counter()
    log = ReadLog()
    stats: dict[str, Any] = {
        "rows": 0,
        "bytes": 0,
        "kinds": Counter(),
        "preview": [],
        "enabled": source in town.sources,
    }
    docs = READERS[source](TownScan(town), log) if stats["enabled"] else iter(())
    stats["path"] = str(store.write_batches("raw", source, DOCUMENT_SCHEMA, _batches(docs, stats)))
    stats["quarantine_path"] = str(
        store.write_table("quarantine", source, quarantine_to_table(log.quarantined))
    )
    stats.update(
        files_read=log.files_read,
        quarantined=len(log.quarantined),
        quarantine_by_reason=dict(Counter(q.reason for q in log.quarantined)),
        skipped=dict(log.skipped),
        kinds=dict(stats["kinds"]),
        seconds=time.perf_counter() - started,
    )
    return stats


def scrub_stage(
    store: ArtifactStore, scrubber: Scrubber | None = None
) -> tuple[dict[str, Any], list[CheckOutcome]]:
    """Scrub every raw table batch by batch: memory holds one batch, whatever the corpus size."""
    started = time.perf_counter()
    scrubber = scrubber or Scrubber()
    report = RedactionReport()
    quarantined: list = []
    checks = DocumentChecks(list(DOCUMENT_SCHEMA.names))
    # bytes_in: the document texts; bytes_scanned: everything scrubbed (text, title, path and meta JSON).
    stats: dict[str, Any] = {"rows": 0, "bytes": 0, "bytes_in": 0, "bytes_scanned": 0}

    def batches() -> Iterator[pa.Table]:
        for source in SOURCES:
            if not store.exists("raw", source):
                continue
            for batch in pq.ParquetFile(store.path("raw", source)).iter_batches(batch_size=BATCH_ROWS):
                rows = batch.to_pylist()
                stats["bytes_in"] += sum(r["bytes"] for r in rows)
                stats["bytes_scanned"] += sum(
                    len(r[f] or "") for r in rows for f in ("text", "title", "path", "meta")
                )
                clean = list(scrub_rows(rows, scrubber, report, quarantined))
                checks.add(clean)
                stats["rows"] += len(clean)
                stats["bytes"] += sum(r["bytes"] for r in clean)
                yield pa.Table.from_pylist(clean, schema=DOCUMENT_SCHEMA)

    stats["path"] = str(store.write_batches("corpus", "scrubbed_documents", DOCUMENT_SCHEMA, batches()))
    store.write_table("quarantine", "scrub", quarantine_to_table(quarantined))
    stats.update(report.as_dict(), quarantined=len(quarantined), seconds=time.perf_counter() - started)
    return stats, checks.outcomes()


def pairs_stage(
    store: ArtifactStore, cfg: CorpusConfig
) -> tuple[dict[str, Any], list[CheckOutcome], list[dict]]:
    started = time.perf_counter()
    by_source: dict[str, list[dict]] = {}
    for row in store.read_table("corpus", "scrubbed_documents").to_pylist():
        by_source.setdefault(row["source"], []).append(row)
    docs = sum(len(v) for v in by_source.values())
    examples, report = build_instruction_pairs(by_source, cfg)
    del by_source
    table = pa.Table.from_pylist([example_to_record(e) for e in examples], schema=ROW_SCHEMA)
    path = store.write_table("corpus", "instruction_pairs", table)
    outcomes = validate_examples(examples, cfg.max_tokens)
    stats = {
        "rows": len(examples),
        "documents": docs,
        "built": report.built,
        "by_task": dict(report.by_task),
        "by_role": dict(report.by_role),
        "dedup": report.dedup,
        "conflicts": report.conflicts,
        "invalid_commands": dict(report.invalid_commands),
        "invalid_examples": report.invalid_examples,
        "over_budget": dict(report.over_budget),
        "path": str(path),
        "seconds": time.perf_counter() - started,
    }
    return stats, outcomes, examples


def splits_stage(store: ArtifactStore, cfg: CorpusConfig) -> tuple[dict[str, Any], list[CheckOutcome]]:
    started = time.perf_counter()
    examples = [example_from_record(r) for r in store.read_table("corpus", "instruction_pairs").to_pylist()]
    splits = split_examples(examples, seed=cfg.split_seed, ratios=cfg.split_ratios)
    out_dir = store.root / "corpus" / "splits"
    summary = write_splits(
        splits,
        out_dir,
        dataset_name="gastown-ft-corpus",
        description="Instruction-tuning examples built from a Gas Town town by gastown-ft.",
        seed=cfg.split_seed,
        ratios=cfg.split_ratios,
    )
    outcomes = validate_splits(splits)
    stats = {
        "rows": len(examples),
        "counts": {k: len(v) for k, v in splits.items()},
        "by_split_and_task": {k: dict(Counter(e["task"] for e in v)) for k, v in splits.items()},
        "corpus_version": summary["version"],
        "path": str(out_dir),
        "card": str(out_dir / "README.md"),
        "seconds": time.perf_counter() - started,
    }
    return stats, outcomes


def quarantine_stage(town: TownConfig, store: ArtifactStore) -> dict[str, Any]:
    """Every stage's quarantine table, plus walk problems no reader claims, in one table."""
    tables = [store.read_table("quarantine", s) for s in QUARANTINE_TABLES if store.exists("quarantine", s)]
    town_log = ReadLog()
    TownScan(town).town_level_issues(town_log, claimed_by_any_reader)
    tables.append(quarantine_to_table(town_log.quarantined))
    table = pa.concat_tables([t.cast(QUARANTINE_SCHEMA) for t in tables])
    path = store.write_table("corpus", "quarantine", table)
    return {
        "rows": table.num_rows,
        "by_reason": dict(Counter(table["reason"].to_pylist())),
        "by_source": dict(Counter(table["source"].to_pylist())),
        "preview": [
            [r["source"], r["path"], r["reason"], r["detail"]]
            for r in table.slice(0, PREVIEW_ROWS).to_pylist()
        ],
        "path": str(path),
    }
