"""The corpus stages as plain functions over the artifact store: what each Dagster asset runs, and
what the benchmark times. Each returns a stats dict (plus check outcomes).

read  : town -> raw/<source>.parquet, quarantine/<source>.parquet
scrub : raw/*.parquet -> corpus/scrubbed_documents.parquet, quarantine/scrub.parquet
pairs : corpus/scrubbed_documents.parquet -> corpus/instruction_pairs.parquet
splits: corpus/instruction_pairs.parquet -> corpus/splits/ (Parquet + dataset card)

With reuse on (`[corpus] reuse`, the default) each stage keeps what it computed for unchanged
content under <artifacts>/cache and recomputes only what changed (see corpus/reuse.py): a reader
whose files are unchanged is not run, a raw row already scrubbed is not scrubbed again, a unit of
unchanged documents is not turned into examples again. The outputs are those of a clean build.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gastown_ft.artifacts import ArtifactStore
from gastown_ft.config import CorpusConfig, ScrubConfig, TownConfig
from gastown_ft.corpus import reuse as reuse_mod
from gastown_ft.corpus import scrub as scrub_module
from gastown_ft.corpus import scrubbing
from gastown_ft.corpus.documents import (
    DOCUMENT_SCHEMA,
    QUARANTINE_SCHEMA,
    SOURCES,
    Document,
    Quarantined,
    ReadLog,
    documents_to_table,
    quarantine_to_table,
)
from gastown_ft.corpus.expectations import (
    CheckOutcome,
    DocumentChecks,
    validate_examples,
    validate_new_examples,
    validate_splits,
)
from gastown_ft.corpus.machinery import summarize
from gastown_ft.corpus.pairs_reuse import (
    build_pairs,
    release_memory,
    save_verified,
    sorted_keys,
    verified_state,
)
from gastown_ft.corpus.scan import TownScan
from gastown_ft.corpus.scrub import Scrubber
from gastown_ft.corpus.scrubbing import RedactionReport, scrub_row
from gastown_ft.corpus.sources import READERS, claimed_by_any_reader
from gastown_ft.corpus.splits import SPLITS, assign_groups, coverage_summary, write_split_tables

BATCH_ROWS = 500
PREVIEW_ROWS = 10
VALIDATE_ROWS = 16_384  # examples checked per validation run (each run costs a fixed setup)
# Stages that write a quarantine table: each reader, and the scrub stage (secrets it could not remove).
QUARANTINE_TABLES = (*SOURCES, "scrub")
SCRUB_CACHE_SCHEMA = pa.schema(
    [("row_key", pa.string()), *DOCUMENT_SCHEMA, ("counts", pa.string()), ("unsafe", pa.string())]
)
PREVIOUS_IDS = "splits_example_ids"
SCRUBBED_KEYS = "scrubbed_keys"


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


def read_stage(town: TownConfig, store: ArtifactStore, source: str, *, reuse: bool = True) -> dict[str, Any]:
    """One reader over the town; documents and quarantine written as Parquet. With `reuse`, a source
    whose input files, settings and reader code are unchanged keeps its tables of the last read."""
    from gastown_ft.corpus.read_reuse import source_fingerprint

    started = time.perf_counter()
    enabled = source in town.sources
    scan = TownScan(town) if enabled else None
    state_name = f"read_{source}"
    outputs = [store.path("raw", source), store.path("quarantine", source)]
    fp = source_fingerprint(town, scan, source) if scan is not None else None
    if reuse and fp is not None:
        state = reuse_mod.load_state(store, state_name)
        if state and state.get("fingerprint") == fp and state.get("outputs") == reuse_mod.stamps(outputs):
            stats = state["stats"]
            stats.update(
                reused=True,
                reused_documents=stats["rows"],
                recomputed_documents=0,
                seconds=time.perf_counter() - started,
            )
            return stats
    log = ReadLog()
    stats: dict[str, Any] = {"rows": 0, "bytes": 0, "kinds": Counter(), "preview": [], "enabled": enabled}
    docs = READERS[source](scan, log) if scan is not None else iter(())
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
    )
    if reuse and fp is not None:
        reuse_mod.save_state(
            store, state_name, {"fingerprint": fp, "stats": stats, "outputs": reuse_mod.stamps(outputs)}
        )
    stats.update(
        reused=False,
        reused_documents=0,
        recomputed_documents=stats["rows"],
        seconds=time.perf_counter() - started,
    )
    return stats


def scrub_version(scrubber: Scrubber) -> str:
    """What a scrubbed row depends on besides the raw row: the scrubber's code and its settings."""
    settings = {
        k: sorted(map(str, v)) if isinstance(v, set | frozenset | tuple | list) else str(v)
        for k, v in sorted(vars(scrubber).items())
        if isinstance(v, bool | int | float | str | set | frozenset | tuple | list)
    }
    return reuse_mod.fingerprint(
        "scrub",
        reuse_mod.code_version(
            scrub_module,
            scrubbing,
            "gastown_ft.corpus.identities",
            "gastown_ft.corpus.documents",
            reuse_mod,
            __name__,
        ),
        settings,
    )


def _scrub_source(
    store: ArtifactStore,
    source: str,
    scrubber: Scrubber,
    version: str,
    reuse: bool,
    checks: DocumentChecks,
    stats: dict[str, Any],
) -> tuple[pa.Table, int]:
    """Cache entries (SCRUB_CACHE_SCHEMA) of every raw row of one source, in raw order, and how many
    came from the cache. Only rows not scrubbed before are scrubbed and checked for residue; a raw
    table that is the very file scrubbed last time is not even read."""
    name = f"scrub_{source}"
    raw_stamp = reuse_mod.stamps([store.path("raw", source)])
    cached = reuse_mod.load_cache(store, name, version) if reuse else None
    state = reuse_mod.load_state(store, name) if cached is not None else None
    if cached is not None and state and state.get("raw") == raw_stamp and state.get("version") == version:
        stats["bytes_in"] += state["bytes_in"]
        stats["bytes_scanned"] += state["bytes_scanned"]
        return cached, cached.num_rows
    raw = store.read_table("raw", source)
    bytes_in = pc.sum(raw.column("bytes")).as_py() or 0
    scanned = sum(
        pc.sum(pc.utf8_length(raw.column(f))).as_py() or 0 for f in ("text", "title", "path", "meta")
    )
    stats["bytes_in"] += bytes_in
    stats["bytes_scanned"] += scanned
    keys = reuse_mod.row_keys(raw, version)
    if cached is None:
        cached = SCRUB_CACHE_SCHEMA.empty_table()
    cached_keys = cached.column("row_key").to_pylist()
    where = {k: i for i, k in enumerate(cached_keys)}
    missing = [i for i, k in enumerate(keys) if k not in where]
    new_rows: list[dict[str, Any]] = []
    first_check = len(checks.residue)
    for start in range(0, len(missing), BATCH_ROWS):
        batch = missing[start : start + BATCH_ROWS]
        clean_batch = []
        for i, row in zip(batch, raw.take(batch).to_pylist(), strict=True):
            clean, counts, unsafe = scrub_row(row, scrubber)
            new_rows.append({**clean, "row_key": keys[i], "counts": json.dumps(counts), "unsafe": unsafe})
            if not unsafe:
                clean_batch.append(clean)
        checks.add(clean_batch, record_ids=False)
    residue_ok = all(o.passed for o in checks.residue[first_check:])
    combined = pa.concat_tables([cached, pa.Table.from_pylist(new_rows, schema=SCRUB_CACHE_SCHEMA)])
    new_pos = {keys[i]: len(cached_keys) + j for j, i in enumerate(missing)}
    order = [where[k] if k in where else new_pos[k] for k in keys]
    entries = combined.take(pa.array(order, pa.int64()))
    if reuse:
        if residue_ok:
            reuse_mod.save_cache(store, name, version, entries)
            reuse_mod.save_state(
                store,
                name,
                {"raw": raw_stamp, "version": version, "bytes_in": bytes_in, "bytes_scanned": scanned},
            )
        else:  # rows of a batch that failed the residue check are checked again next time
            hits = combined.take(pa.array([where[k] for k in keys if k in where], pa.int64()))
            reuse_mod.save_cache(store, name, version, hits)
            reuse_mod.save_state(store, name, {})
    return entries, len(keys) - len(missing)


def scrub_stage(
    store: ArtifactStore,
    scrubber: Scrubber | None = None,
    *,
    reuse: bool = True,
    identities: ScrubConfig | None = None,
) -> tuple[dict[str, Any], list[CheckOutcome]]:
    """Scrub every raw table; with `reuse`, rows scrubbed in an earlier build (same row, same scrubber
    code and settings) are taken from the cache, so only new or changed rows are scrubbed and checked.

    First the people of all raw tables are learned (`identities`, default: `[scrub]` defaults); the
    learned map is part of the scrubber's settings, so a new person means every row is scrubbed again."""
    started = time.perf_counter()
    cfg = identities or ScrubConfig()
    people, people_stats = scrubbing.learn_people(
        store,
        SOURCES,
        learn_names=cfg.learn_names,
        keep_names=cfg.keep_names,
        extra_names=cfg.extra_names,
        reuse=reuse,
    )
    scrubber = (scrubber or Scrubber()).with_identities(people)
    version = scrub_version(scrubber)
    report = RedactionReport()
    quarantined: list[Quarantined] = []
    checks = DocumentChecks(list(DOCUMENT_SCHEMA.names))
    # bytes_in: the document texts; bytes_scanned: everything scrubbed (text, title, path and meta JSON).
    stats: dict[str, Any] = {"rows": 0, "bytes": 0, "bytes_in": 0, "bytes_scanned": 0, "reused_documents": 0}
    outputs: list[pa.Table] = []
    row_keys: list[str] = []
    for source in SOURCES:
        if not store.exists("raw", source):
            continue
        entries, reused = _scrub_source(store, source, scrubber, version, reuse, checks, stats)
        stats["reused_documents"] += reused
        srcs, counts, unsafe = (entries.column(n).to_pylist() for n in ("source", "counts", "unsafe"))
        paths, rigs = entries.column("path").to_pylist(), entries.column("rig").to_pylist()
        keys = entries.column("row_key").to_pylist()
        for src, c, u, path, rig, key in zip(srcs, counts, unsafe, paths, rigs, keys, strict=True):
            if u:
                # The quarantine record names the (scrubbed) path, never the secret.
                quarantined.append(Quarantined(src, path, "unsafe_secret", u[:500], rig=rig))
            else:
                report.add(src, Counter(json.loads(c)) if c and c != "{}" else Counter())
                row_keys.append(key)
        docs = entries.filter(pc.is_null(entries.column("unsafe"))).select(DOCUMENT_SCHEMA.names)
        outputs.append(docs.cast(DOCUMENT_SCHEMA))
    table = pa.concat_tables(outputs) if outputs else DOCUMENT_SCHEMA.empty_table()
    checks.add_ids(table.column("doc_id").to_pylist())
    stats["rows"] = table.num_rows
    stats["bytes"] = pc.sum(table.column("bytes")).as_py() or 0
    stats["recomputed_documents"] = stats["rows"] + len(quarantined) - stats["reused_documents"]
    path = store.write_table("corpus", "scrubbed_documents", table)
    stats["path"] = str(path)
    if reuse:
        # The key of each scrubbed row (its raw row's key: scrubbing is a function of it), so the pairs
        # stage need not hash the table again while the file is this one.
        reuse_mod.save_cache(store, SCRUBBED_KEYS, _file_version(path), pa.table({"row_key": row_keys}))
    store.write_table("quarantine", "scrub", quarantine_to_table(quarantined))
    stats.update(
        report.as_dict(),
        quarantined=len(quarantined),
        identities=people_stats,
        seconds=time.perf_counter() - started,
    )
    return stats, checks.outcomes()


def _file_version(path) -> str:
    return reuse_mod.fingerprint(reuse_mod.file_stamp(path))


def _scrubbed_keys(store: ArtifactStore, path) -> list[str]:
    """The content key of each scrubbed document: as the scrub stage left them, else hashed here."""
    n_rows = pq.ParquetFile(path).metadata.num_rows
    cached = reuse_mod.load_cache(store, SCRUBBED_KEYS, _file_version(path))
    if cached is not None and cached.num_rows == n_rows:
        return cached.column("row_key").to_pylist()
    return _row_keys(path)


def _row_keys(path) -> list[str]:
    """reuse.row_keys of the scrubbed documents, a batch at a time (each key is of its row only)."""
    keys: list[str] = []
    for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS):
        keys += reuse_mod.row_keys(pa.Table.from_batches([batch]), "scrubbed")
    return keys


def _bead_metas(path) -> Iterator[dict[str, Any]]:
    """The meta of every bead document, read a batch at a time (as summarize_documents reads them)."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=["source", "meta"]):
        metas = batch.column("meta").filter(pc.equal(batch.column("source"), "beads"))
        yield from (json.loads(m) if m else {} for m in metas.to_pylist())


def _validate_new(build, fresh: np.ndarray, max_tokens: int) -> list[CheckOutcome]:
    """The per-example checks on the examples not verified before, a batch at a time (memory stays
    at one batch); the unique-id check once over every id. Outcomes merged across batches."""
    # The unique-id check sees only the ids that occur more than once (every occurrence, in order):
    # the same outcome as over every id, without a Python string per example.
    counts = pc.value_counts(build.example_ids)
    repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
    ids = build.example_ids.filter(pc.is_in(build.example_ids, value_set=repeated)).to_pylist()
    outcomes: list[CheckOutcome] | None = None
    release_memory()
    for batch in build.example_batches(fresh, VALIDATE_ROWS):
        if outcomes is None:
            outcomes = validate_new_examples(batch, ids, max_tokens)
        elif batch:
            by_name = {o.name: o for o in outcomes}
            for o in validate_examples(batch, max_tokens):
                into = by_name[o.name]
                into.passed = into.passed and o.passed
                if o.details.get("failed"):
                    into.details.setdefault("failed", []).extend(o.details["failed"])
        del batch
        release_memory()
    return outcomes if outcomes is not None else validate_new_examples([], ids, max_tokens)


def pairs_stage(
    store: ArtifactStore, cfg: CorpusConfig
) -> tuple[dict[str, Any], list[CheckOutcome], list[dict]]:
    """Examples from the scrubbed documents. Returns (stats, check outcomes, the first examples).
    Documents are read and examples written a batch at a time (see corpus/pairs_reuse.py)."""
    started = time.perf_counter()
    docs = store.path("corpus", "scrubbed_documents")
    n_docs = pq.ParquetFile(docs).metadata.num_rows
    keys = _scrubbed_keys(store, docs) if cfg.reuse else _row_keys(docs)
    build = build_pairs(docs, keys, cfg, store, reuse_cache=cfg.reuse)
    del keys
    version, verified = verified_state(store, cfg) if cfg.reuse else ("", pa.array([], pa.string()))
    fresh = ~pc.is_in(build.kept_keys, value_set=verified).to_numpy(zero_copy_only=False)
    outcomes = _validate_new(build, fresh, cfg.max_tokens)
    if cfg.reuse:
        kept = build.kept_keys
        now = sorted_keys(kept if all(o.passed for o in outcomes) else kept.filter(pa.array(~fresh)))
        if not now.equals(verified):
            save_verified(store, version, now)
    report = build.report
    stats = {
        "rows": build.num_rows,
        "documents": n_docs,
        "built": report.built,
        "by_task": dict(report.by_task),
        "by_role": dict(report.by_role),
        "dedup": report.dedup,
        "conflicts": report.conflicts,
        # beads the machinery wrote, by kind, and whether the bead tasks left them out
        "machinery": summarize(_bead_metas(docs), cfg.machinery),
        "invalid_commands": dict(report.invalid_commands),
        "invalid_examples": report.invalid_examples,
        "over_budget": dict(report.over_budget),
        "reuse": build.stats,
        "reused_documents": build.stats.get("documents_reused", 0),
        "recomputed_documents": build.stats.get("documents_recomputed", 0),
        "validated_examples": int(fresh.sum()),
        "path": str(build.path),
        "seconds": time.perf_counter() - started,
    }
    preview = next(build.example_batches(rows=PREVIEW_ROWS), [])[:PREVIEW_ROWS]
    return stats, outcomes, preview


def splits_stage(store: ArtifactStore, cfg: CorpusConfig) -> tuple[dict[str, Any], list[CheckOutcome]]:
    """train / validation / test by group (every task with a few groups measured: see corpus/splits.py),
    in Arrow; the coverage moves and warnings; also the change in example ids since the last build (for
    deciding whether a retrain is worth it)."""
    from gastown_ft.evaluation.tasks import FAMILY_TASKS

    started = time.perf_counter()
    table = store.read_table("corpus", "instruction_pairs")
    group_ids = table.column("group_id").to_pylist()
    group_tasks: dict[str, set[str]] = {}
    for g, task in zip(group_ids, table.column("task").to_pylist(), strict=True):
        group_tasks.setdefault(g, set()).add(task)
    assignment = assign_groups(
        group_tasks, seed=cfg.split_seed, ratios=cfg.split_ratios, min_groups=cfg.split_min_groups
    )
    split_col = pa.array([assignment.splits[g] for g in group_ids], pa.string())
    tables: dict[str, pa.Table] = {}
    for name in SPLITS:
        part = table.filter(pc.equal(split_col, name))
        order = pc.sort_indices(part, [("example_id", "ascending"), ("group_id", "ascending")])
        tables[name] = part.take(order)
    by_split_and_task = {k: dict(Counter(v.column("task").to_pylist())) for k, v in tables.items()}
    coverage = coverage_summary(assignment, by_split_and_task, FAMILY_TASKS)
    out_dir = store.root / "corpus" / "splits"
    summary = write_split_tables(
        tables,
        out_dir,
        dataset_name="gastown-ft-corpus",
        description="Instruction-tuning examples built from a Gas Town town by gastown-ft.",
        seed=cfg.split_seed,
        ratios=cfg.split_ratios,
        coverage=coverage,
    )
    outcomes = validate_splits(
        {name: [{"group_id": g} for g in t.column("group_id").to_pylist()] for name, t in tables.items()}
    )
    change = corpus_change(store, table.column("example_id").to_pylist())
    stats = {
        "rows": table.num_rows,
        "counts": {k: v.num_rows for k, v in tables.items()},
        "by_split_and_task": by_split_and_task,
        "coverage_moves": coverage["coverage_moves"],
        "split_warnings": coverage["warnings"],
        "corpus_version": summary["version"],
        **change,
        "path": str(out_dir),
        "card": str(out_dir / "README.md"),
        "seconds": time.perf_counter() - started,
    }
    return stats, outcomes


def corpus_change(store: ArtifactStore, example_ids: list[str]) -> dict[str, Any]:
    """Examples added and removed since the previous splits build, and their share of its size
    (1.0 for a first build); the ids are kept for the next build."""
    previous = reuse_mod.load_cache(store, PREVIOUS_IDS, "ids")
    now = set(example_ids)
    before = set(previous.column("example_id").to_pylist()) if previous is not None else set()
    added, removed = len(now - before), len(before - now)
    fraction = 1.0 if previous is None or not before else (added + removed) / len(before)
    reuse_mod.save_cache(
        store, PREVIOUS_IDS, "ids", pa.table({"example_id": pa.array(sorted(now), pa.string())})
    )
    return {
        "examples_added": added,
        "examples_removed": removed,
        "previous_examples": len(before),
        "corpus_change_fraction": fraction,
        "first_build": previous is None,
    }


QUARANTINE_FILES_SHOWN = 10  # files listed in the summary, most quarantined first
QUARANTINE_LINES_SHOWN = 12  # line numbers listed per file


def quarantined_files(
    table: pa.Table, top: int = QUARANTINE_FILES_SHOWN, max_lines: int = QUARANTINE_LINES_SHOWN
) -> list[dict[str, Any]]:
    """The files with the most quarantined inputs (QUARANTINE_SCHEMA rows): each with its count, its
    reasons and its first quarantined line numbers, so an operator can open the file at the spot."""
    files: dict[str, dict[str, Any]] = {}
    cols = (table[n].to_pylist() for n in ("path", "line", "reason"))
    for path, line, reason in zip(*cols, strict=True):
        f = files.setdefault(path, {"path": path, "count": 0, "reasons": Counter(), "lines": set()})
        f["count"] += 1
        f["reasons"][reason] += 1
        if line is not None:
            f["lines"].add(line)
    out = []
    for f in sorted(files.values(), key=lambda f: (-f["count"], f["path"]))[:top]:
        lines = sorted(f["lines"])
        out.append(
            {
                "path": f["path"],
                "count": f["count"],
                "reasons": dict(f["reasons"].most_common()),
                "lines": lines[:max_lines],
                "more_lines": max(0, len(lines) - max_lines),
            }
        )
    return out


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
        "files": len(set(table["path"].to_pylist())),
        "by_file": quarantined_files(table),
        "preview": [
            [r["source"], r["path"], r["reason"], r["detail"]]
            for r in table.slice(0, PREVIEW_ROWS).to_pylist()
        ],
        "path": str(path),
    }
