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
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
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
from gastown_ft.corpus.scrub import Scrubber, town_root_spellings
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


class _CachedEntries:
    """Rows of the scrub cache of the last build, by position, read a row group at a time (the cache
    is written in small row groups, so a batch of positions reads only the groups that hold them)."""

    def __init__(self, pf: pq.ParquetFile | None) -> None:
        self.pf = pf
        meta = pf.metadata if pf is not None else None
        sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] if meta else []
        self.starts = np.cumsum([0, *sizes])
        self._group: tuple[int, pa.Table | None] = (-1, None)

    def keys(self) -> pa.Array:
        if self.pf is None:
            return pa.array([], pa.string())
        return self.pf.read(columns=["row_key"]).column("row_key").combine_chunks()

    def _row_group(self, g: int) -> pa.Table:
        if self._group[0] != g:
            assert self.pf is not None
            self._group = (g, self.pf.read_row_group(g).replace_schema_metadata(None))
        return self._group[1]  # type: ignore[return-value]

    def take(self, positions: np.ndarray) -> pa.Table:
        """The rows at `positions` (cache row numbers), in that order."""
        if not len(positions):
            return SCRUB_CACHE_SCHEMA.empty_table()
        groups = np.searchsorted(self.starts, positions, side="right") - 1
        parts, order, done = [], np.empty(len(positions), np.int64), 0
        for g in np.unique(groups):
            sel = np.flatnonzero(groups == g)
            parts.append(self._row_group(int(g)).take(pa.array(positions[sel] - self.starts[g])))
            order[sel] = np.arange(done, done + len(sel))
            done += len(sel)
        return pa.concat_tables(parts).take(pa.array(order))


def _raw_keys(path, version: str) -> tuple[pa.Array, int, int]:
    """The cache key of every raw row, and the bytes of its texts and of everything scrubbed."""
    keys: list[str] = []
    bytes_in = scanned = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS):
        raw = pa.Table.from_batches([batch])
        bytes_in += pc.sum(raw.column("bytes")).as_py() or 0
        scanned += sum(
            pc.sum(pc.utf8_length(raw.column(f))).as_py() or 0 for f in ("text", "title", "path", "meta")
        )
        keys += reuse_mod.row_keys(raw, version)
    return pa.array(keys, pa.string()), bytes_in, scanned


def _scrub_source(
    store: ArtifactStore,
    source: str,
    scrubber: Scrubber,
    version: str,
    reuse: bool,
    checks: DocumentChecks,
    stats: dict[str, Any],
) -> Iterator[pa.Table]:
    """Cache entries (SCRUB_CACHE_SCHEMA) of every raw row of one source, in raw order, a batch at a
    time; stats["reused_documents"] counts those from the cache. Only rows not scrubbed before are
    scrubbed and checked for residue; a raw table that is the very file scrubbed last time is not even
    read. Memory stays at a batch: the raw table, the old cache and the new one are streamed."""
    name = f"scrub_{source}"
    raw_path = store.path("raw", source)
    raw_stamp = reuse_mod.stamps([raw_path])
    cached = reuse_mod.open_cache(store, name, version) if reuse else None
    state = reuse_mod.load_state(store, name) if cached is not None else None
    if cached is not None and state and state.get("raw") == raw_stamp and state.get("version") == version:
        stats["bytes_in"] += state["bytes_in"]
        stats["bytes_scanned"] += state["bytes_scanned"]
        for batch in cached.iter_batches(batch_size=BATCH_ROWS):
            stats["reused_documents"] += batch.num_rows
            yield pa.Table.from_batches([batch]).replace_schema_metadata(None)
        return
    keys, bytes_in, scanned = _raw_keys(raw_path, version)
    stats["bytes_in"] += bytes_in
    stats["bytes_scanned"] += scanned
    old = _CachedEntries(cached)
    # Each raw row's position in the old cache (-1: not there, to be scrubbed).
    where = pc.fill_null(pc.index_in(keys, value_set=old.keys()), -1).to_numpy(zero_copy_only=False)
    writer = reuse_mod.CacheWriter(store, name, version, SCRUB_CACHE_SCHEMA) if reuse else None
    first_check = len(checks.residue)
    pending: list[dict[str, Any]] = []  # clean new rows not yet checked for residue
    start = 0
    try:
        for batch in pq.ParquetFile(raw_path).iter_batches(batch_size=BATCH_ROWS):
            at = where[start : start + batch.num_rows]
            missing = np.flatnonzero(at < 0)
            new_rows: list[dict[str, Any]] = []
            for i, row in zip(missing, batch.take(pa.array(missing, pa.int64())).to_pylist(), strict=True):
                clean, counts, unsafe = scrub_row(row, scrubber)
                key = keys[start + int(i)].as_py()
                new_rows.append({**clean, "row_key": key, "counts": json.dumps(counts), "unsafe": unsafe})
                if not unsafe:
                    pending.append(clean)
            if len(pending) >= BATCH_ROWS:
                checks.add(pending, record_ids=False)
                pending = []
            hits = at >= 0
            combined = pa.concat_tables(
                [old.take(at[hits]), pa.Table.from_pylist(new_rows, schema=SCRUB_CACHE_SCHEMA)]
            )
            # cached rows first in `combined`, then the new ones: back into raw order
            order = np.empty(len(at), np.int64)
            order[hits] = np.arange(int(hits.sum()))
            order[~hits] = int(hits.sum()) + np.arange(len(missing))
            entries = combined.take(pa.array(order))
            stats["reused_documents"] += int(hits.sum())
            if writer is not None:
                writer.write(entries)
            start += batch.num_rows
            yield entries
        checks.add(pending, record_ids=False)
        if writer is not None:
            if all(o.passed for o in checks.residue[first_check:]):
                writer.commit()
                state = {"raw": raw_stamp, "version": version, "bytes_in": bytes_in, "bytes_scanned": scanned}
                reuse_mod.save_state(store, name, state)
            else:  # rows of a batch that failed the residue check are checked again next time
                _keep_hits(store, name, version, writer.close(), where >= 0)
                reuse_mod.save_state(store, name, {})
    finally:
        if writer is not None:
            writer.discard()


def _keep_hits(store: ArtifactStore, name: str, version: str, written, hits: np.ndarray) -> None:
    """The cache `name` from the entries just written, keeping only those that came from the cache."""
    keep = reuse_mod.CacheWriter(store, name, version, SCRUB_CACHE_SCHEMA)
    start = 0
    for batch in pq.ParquetFile(written).iter_batches(batch_size=BATCH_ROWS):
        mask = pa.array(hits[start : start + batch.num_rows])
        keep.write(pa.Table.from_batches([batch]).filter(mask))
        start += batch.num_rows
    keep.commit()


def scrub_stage(
    store: ArtifactStore,
    scrubber: Scrubber | None = None,
    *,
    reuse: bool = True,
    identities: ScrubConfig | None = None,
    town_root: Path | None = None,
) -> tuple[dict[str, Any], list[CheckOutcome]]:
    """Scrub every raw table; with `reuse`, rows scrubbed in an earlier build (same row, same scrubber
    code and settings) are taken from the cache, so only new or changed rows are scrubbed and checked.

    First the people of all raw tables are learned (`identities`, default: `[scrub]` defaults); the
    learned map is part of the scrubber's settings, so a new person means every row is scrubbed again.
    Paths under `town_root` are written under `~/gt` (see Scrubber's town_roots).
    Rows are read, scrubbed and written a batch at a time."""
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
    if scrubber is None:
        scrubber = Scrubber(town_roots=town_root_spellings(town_root) if town_root else ())
    scrubber = scrubber.with_identities(people)
    version = scrub_version(scrubber)
    report = RedactionReport()
    quarantined: list[Quarantined] = []
    checks = DocumentChecks(list(DOCUMENT_SCHEMA.names))
    # bytes_in: the document texts; bytes_scanned: everything scrubbed (text, title, path and meta JSON).
    stats: dict[str, Any] = {"rows": 0, "bytes": 0, "bytes_in": 0, "bytes_scanned": 0, "reused_documents": 0}
    row_keys: list[pa.Array] = []
    doc_ids: list[pa.Array] = []

    def documents() -> Iterator[pa.Table]:
        for source in SOURCES:
            if not store.exists("raw", source):
                continue
            for entries in _scrub_source(store, source, scrubber, version, reuse, checks, stats):
                cols = (entries.column(n).to_pylist() for n in ("source", "counts", "unsafe", "path", "rig"))
                for src, c, u, path, rig in zip(*cols, strict=True):
                    if u:
                        # The quarantine record names the (scrubbed) path, never the secret.
                        quarantined.append(Quarantined(src, path, "unsafe_secret", u[:500], rig=rig))
                    else:
                        report.add(src, Counter(json.loads(c)) if c and c != "{}" else Counter())
                safe = entries.filter(pc.is_null(entries.column("unsafe")))
                row_keys.append(safe.column("row_key").combine_chunks())
                docs = safe.select(DOCUMENT_SCHEMA.names).cast(DOCUMENT_SCHEMA)
                doc_ids.append(docs.column("doc_id").combine_chunks())
                stats["rows"] += docs.num_rows
                stats["bytes"] += pc.sum(docs.column("bytes")).as_py() or 0
                yield docs

    path = store.write_batches("corpus", "scrubbed_documents", DOCUMENT_SCHEMA, documents())
    checks.add_ids(pa.chunked_array(doc_ids, pa.string()).to_pylist())
    doc_ids.clear()
    stats["recomputed_documents"] = stats["rows"] + len(quarantined) - stats["reused_documents"]
    stats["path"] = str(path)
    if reuse:
        # The key of each scrubbed row (its raw row's key: scrubbing is a function of it), so the pairs
        # stage need not hash the table again while the file is this one.
        keys = pa.chunked_array(row_keys, pa.string())
        reuse_mod.save_cache(store, SCRUBBED_KEYS, _file_version(path), pa.table({"row_key": keys}))
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


SORT_BUCKET_ROWS = 10 * 1000  # rows per sort bucket of the splits stage (whole row groups of a split file)
SPLIT_CODES = {name: i for i, name in enumerate(SPLITS)}


def _split_codes(pf: pq.ParquetFile, splits: dict[str, str]) -> np.ndarray:
    """The split of every example (its index in SPLITS), in file order."""
    codes = np.empty(pf.metadata.num_rows, np.int8)
    start = 0
    for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=["group_id"]):
        groups = batch.column("group_id").to_pylist()
        codes[start : start + len(groups)] = [SPLIT_CODES[splits[g]] for g in groups]
        start += len(groups)
    return codes


def _sorted_splits(path, codes: np.ndarray, rank: np.ndarray, tmp: Path) -> dict[str, Iterator[pa.Table]]:
    """The rows of each split in `rank` order (each row's place in its split), a bucket of
    SORT_BUCKET_ROWS at a time: an external sort. One pass over the file writes each row to the
    bucket of its rank (Arrow IPC files under `tmp`); each bucket is then read back in rank order."""
    buckets = {code: -(-int((codes == code).sum()) // SORT_BUCKET_ROWS) for code in SPLIT_CODES.values()}
    writers: dict[tuple[int, int], pa.ipc.RecordBatchStreamWriter] = {}
    start = 0
    try:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS):
            n = batch.num_rows
            c, r = codes[start : start + n], rank[start : start + n]
            batch = batch.append_column("_rank", pa.array(r))
            where = c.astype(np.int64) * (1 << 40) + r // SORT_BUCKET_ROWS
            for w in np.unique(where):
                key = (int(w >> 40), int(w & ((1 << 40) - 1)))
                if key not in writers:
                    writers[key] = pa.ipc.new_stream(str(tmp / f"{key[0]}-{key[1]}.arrow"), batch.schema)
                writers[key].write_batch(batch.filter(pa.array(where == w)))
            start += n
    finally:
        for writer in writers.values():
            writer.close()

    def read(code: int) -> Iterator[pa.Table]:
        for b in range(buckets[code]):
            file = tmp / f"{code}-{b}.arrow"
            with pa.OSFile(str(file)) as source:
                table = pa.ipc.open_stream(source).read_all()
            table = table.take(pc.sort_indices(table, [("_rank", "ascending")])).drop_columns(["_rank"])
            file.unlink()
            yield table

    return {name: read(code) for name, code in SPLIT_CODES.items()}


def splits_stage(store: ArtifactStore, cfg: CorpusConfig) -> tuple[dict[str, Any], list[CheckOutcome]]:
    """train / validation / test by group (every task with a few groups measured: see corpus/splits.py),
    in Arrow; the coverage moves and warnings; also the change in example ids since the last build (for
    deciding whether a retrain is worth it). The examples are streamed: in memory are the groups, the
    key columns and a bucket of rows (see `_sorted_splits`)."""
    from gastown_ft.evaluation.tasks import FAMILY_TASKS

    started = time.perf_counter()
    path = store.path("corpus", "instruction_pairs")
    pf = pq.ParquetFile(path)
    group_tasks: dict[str, set[str]] = {}
    for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=["group_id", "task"]):
        groups, tasks = batch.column("group_id").to_pylist(), batch.column("task").to_pylist()
        for g, task in zip(groups, tasks, strict=True):
            group_tasks.setdefault(g, set()).add(task)
    assignment = assign_groups(
        group_tasks, seed=cfg.split_seed, ratios=cfg.split_ratios, min_groups=cfg.split_min_groups
    )
    del group_tasks
    codes = _split_codes(pf, assignment.splits)
    keys = pf.read(columns=["example_id", "group_id", "task"])
    rank = np.empty(keys.num_rows, np.int64)  # each example's place in its split, sorted as written
    by_split_and_task: dict[str, dict[str, int]] = {}
    split_groups: dict[str, list[dict[str, str]]] = {}
    for name, code in SPLIT_CODES.items():
        rows = np.flatnonzero(codes == code)
        part = keys.take(pa.array(rows, pa.int64()))
        # stable, as the sort of the whole table was: ties keep the file order
        order = pc.sort_indices(part, [("example_id", "ascending"), ("group_id", "ascending")])
        rank[rows[order.to_numpy()]] = np.arange(len(rows))
        # value_counts keeps the order of first appearance: that of the split's sorted rows
        counts = pc.value_counts(part.column("task").take(order))
        by_split_and_task[name] = dict(
            zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True)
        )
        split_groups[name] = [{"group_id": g} for g in pc.unique(part.column("group_id")).to_pylist()]
    coverage = coverage_summary(assignment, by_split_and_task, FAMILY_TASKS)
    outcomes = validate_splits(split_groups)
    del split_groups
    out_dir = store.splits_dir()
    with tempfile.TemporaryDirectory(prefix=".splits-sort-", dir=out_dir.parent) as tmp:
        summary = write_split_tables(
            _sorted_splits(path, codes, rank, Path(tmp)),
            out_dir,
            dataset_name="gastown-ft-corpus",
            description="Instruction-tuning examples built from a Gas Town town by gastown-ft.",
            seed=cfg.split_seed,
            ratios=cfg.split_ratios,
            coverage=coverage,
        )
    change = corpus_change(store, keys.column("example_id"))
    stats = {
        "rows": keys.num_rows,
        "counts": dict(summary["num_examples"]),
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


def corpus_change(
    store: ArtifactStore, example_ids: pa.Array | pa.ChunkedArray | list[str]
) -> dict[str, Any]:
    """Examples added and removed since the previous splits build, and their share of its size
    (1.0 for a first build); the ids are kept for the next build."""
    previous = reuse_mod.load_cache(store, PREVIOUS_IDS, "ids")
    ids = example_ids if isinstance(example_ids, pa.Array | pa.ChunkedArray) else pa.array(example_ids)
    now = pc.unique(ids.cast(pa.string()))
    now = now.take(pc.sort_indices(now))  # byte order of UTF-8: the order of Python's sorted()
    before = pc.unique(previous.column("example_id")) if previous is not None else pa.array([], pa.string())
    added = len(now) - (pc.sum(pc.is_in(now, value_set=before)).as_py() or 0)
    removed = len(before) - (pc.sum(pc.is_in(before, value_set=now)).as_py() or 0)
    fraction = 1.0 if previous is None or not len(before) else (added + removed) / len(before)
    reuse_mod.save_cache(store, PREVIOUS_IDS, "ids", pa.table({"example_id": now}))
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
