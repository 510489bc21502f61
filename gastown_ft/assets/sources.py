"""Source assets (group `sources`) and the `quarantine` asset.

(No `from __future__ import annotations` here: Dagster inspects the `context` type hint.)

Each `raw_<source>` asset runs one reader over the town and writes two Parquet tables: the
documents (artifacts/raw/<source>.parquet) and what was quarantined (artifacts/quarantine/<source>.parquet).
`quarantine` gathers every stage's quarantine table into one, with the reason for each input.
"""

import time
from collections import Counter
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc
from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from gastown_ft.corpus.documents import (
    DOCUMENT_SCHEMA,
    QUARANTINE_SCHEMA,
    SOURCES,
    Document,
    ReadLog,
    documents_to_table,
    quarantine_to_table,
)
from gastown_ft.corpus.scan import TownScan
from gastown_ft.corpus.sources import READERS, claimed_by_any_reader
from gastown_ft.resources import GastownSettings

BATCH = 500
# Stages that write a quarantine table: each reader, and the scrub stage (secrets it could not remove).
QUARANTINE_TABLES = (*SOURCES, "scrub")
PREVIEW_ROWS = 10


def md_table(header: list[str], rows: list[list[object]]) -> str:
    def cell(v: object) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")[:80]

    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(out)


def _batched(docs: Iterator[Document], stats: dict) -> Iterator[pa.Table]:
    batch: list[Document] = []
    for d in docs:
        stats["rows"] += 1
        stats["kinds"][d.kind] += 1
        if len(stats["preview"]) < PREVIEW_ROWS:
            stats["preview"].append([d.title, d.path, d.rig or "", d.role or "", len(d.text)])
        batch.append(d)
        if len(batch) >= BATCH:
            t = documents_to_table(batch)
            stats["bytes"] += pc.sum(t["bytes"]).as_py() or 0
            yield t
            batch = []
    if batch:
        t = documents_to_table(batch)
        stats["bytes"] += pc.sum(t["bytes"]).as_py() or 0
        yield t


def materialize_source(
    source: str, settings: GastownSettings, context: AssetExecutionContext
) -> MaterializeResult:
    cfg = settings.load()
    store = settings.store()
    started = time.perf_counter()
    log = ReadLog()
    stats = {"rows": 0, "bytes": 0, "kinds": Counter(), "preview": []}
    enabled = source in cfg.town.sources
    if enabled:
        scan = TownScan(cfg.town)
        docs = READERS[source](scan, log)
    else:
        context.log.info(f"{source} is not in town.sources; writing an empty table")
        docs = iter(())
    out = store.write_batches("raw", source, DOCUMENT_SCHEMA, _batched(docs, stats))
    qpath = store.write_table("quarantine", source, quarantine_to_table(log.quarantined))
    elapsed = time.perf_counter() - started
    reasons = Counter(q.reason for q in log.quarantined)
    context.log.info(
        f"{source}: {stats['rows']} documents, {len(log.quarantined)} quarantined "
        f"({dict(reasons)}), skipped {dict(log.skipped)} in {elapsed:.1f}s"
    )
    metadata = {
        "enabled": enabled,
        "row_count": MetadataValue.int(stats["rows"]),
        "bytes": MetadataValue.int(int(stats["bytes"])),
        "files_read": MetadataValue.int(log.files_read),
        "quarantine_count": MetadataValue.int(len(log.quarantined)),
        "quarantine_by_reason": MetadataValue.json(dict(reasons)),
        "skipped": MetadataValue.json(dict(log.skipped)),
        "kinds": MetadataValue.json(dict(stats["kinds"])),
        "seconds": MetadataValue.float(round(elapsed, 3)),
        "path": MetadataValue.path(str(out)),
        "quarantine_path": MetadataValue.path(str(qpath)),
        "preview": MetadataValue.md(md_table(["title", "path", "rig", "role", "chars"], stats["preview"])),
    }
    return MaterializeResult(metadata=metadata)


def _make_source_asset(source: str):
    @asset(
        name=f"raw_{source}",
        group_name="sources",
        kinds={"python", "parquet"},
        description=f"Every {source} document of the town, one row each, with provenance "
        f"(rig, path, git commit, mtime, role, content hash).",
    )
    def _source_asset(context: AssetExecutionContext, settings: GastownSettings) -> MaterializeResult:
        return materialize_source(source, settings, context)

    return _source_asset


source_assets = [_make_source_asset(s) for s in SOURCES]


@asset(
    group_name="corpus",
    kinds={"python", "parquet"},
    deps=[*(AssetKey(f"raw_{s}") for s in SOURCES), AssetKey("scrubbed_documents")],
    description="Every input that could not be read or cleaned, with its reason. Nothing is dropped silently.",
)
def quarantine(context: AssetExecutionContext, settings: GastownSettings) -> MaterializeResult:
    cfg = settings.load()
    store = settings.store()
    tables = [store.read_table("quarantine", s) for s in QUARANTINE_TABLES if store.exists("quarantine", s)]
    town_log = ReadLog()
    TownScan(cfg.town).town_level_issues(town_log, claimed_by_any_reader)
    tables.append(quarantine_to_table(town_log.quarantined))
    table = pa.concat_tables([t.cast(QUARANTINE_SCHEMA) for t in tables])
    out = store.write_table("corpus", "quarantine", table)
    by_reason = Counter(table["reason"].to_pylist())
    by_source = Counter(table["source"].to_pylist())
    preview = [
        [r["source"], r["path"], r["reason"], r["detail"]] for r in table.slice(0, PREVIEW_ROWS).to_pylist()
    ]
    context.log.info(f"quarantine: {table.num_rows} inputs; by reason {dict(by_reason)}")
    return MaterializeResult(
        metadata={
            "row_count": MetadataValue.int(table.num_rows),
            "by_reason": MetadataValue.json(dict(by_reason)),
            "by_source": MetadataValue.json(dict(by_source)),
            "path": MetadataValue.path(str(out)),
            "preview": MetadataValue.md(md_table(["source", "path", "reason", "detail"], preview)),
        }
    )
