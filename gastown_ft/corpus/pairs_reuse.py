"""The instruction pairs, built unit by unit with reuse of unchanged units, in Arrow.

A unit is what one builder call turns into examples independently of everything else: one formula,
convention or transcript document, or all the beads together (bead examples look up other beads and
triage sets are drawn from a whole file). A unit's key is a hash of its scrubbed rows, the settings
the builders read and the code of the builders. For each unit the cache keeps its examples as Arrow
rows plus what the later passes need of each: token estimate, invalid commands, the dedup hashes and
the MinHash signature. Task weights, the budget and command filters, and deduplication then run over
all examples as in `build_instruction_pairs`, from the cached columns; the near-duplicate decisions
of an unchanged LSH component are reused too (see dedup.dedup_columns). A clean build is the same code
with an empty cache, so the two give the same table.

Memory stays flat in the corpus size: documents are read and examples written in batches (the cache
tables, or spill files when reuse is off), the dedup passes hold a few hundred bytes per example
(dedup.DedupColumns), the examples that share an LSH bucket have their signatures and shingles
spilled to a file, and the output is sorted by example id through bounded buckets on disk.
"""

from __future__ import annotations

import heapq
import itertools
import json
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gastown_ft import atomic
from gastown_ft.artifacts import ArtifactStore
from gastown_ft.config import CorpusConfig
from gastown_ft.corpus import (
    dedup,
    examples,
    grammar,
    machinery,
    pairs,
    pairs_beads,
    pairs_conventions,
    pairs_formulas,
    pairs_transcripts,
    reuse,
    splits,
)
from gastown_ft.corpus.dedup import (
    ComponentDecisions,
    DedupColumns,
    MemberData,
    _row_hash,
    band_hashes,
    conversation_text,
    dedup_columns,
    example_item,
    lsh_params,
    shingle_hashes,
    sketch_texts,
)
from gastown_ft.corpus.examples import example_tokens
from gastown_ft.corpus.pairs import PairsReport, invalid_answer_commands
from gastown_ft.corpus.splits import ROW_FIELDS, ROW_SCHEMA, example_from_record, example_to_record

UNIT_SOURCES = ("formulas", "beads", "conventions", "transcripts")  # the order examples are produced in
NUM_PERM = 128
COMPONENTS = "pairs_components"
VERIFIED = "pairs_verified"
UNITS_KEY = b"gastown_ft_units"
BATCH_ROWS = 2048  # documents read, examples built and written, per batch
OUT_BUCKET_ROWS = 16384  # output rows sorted in memory at a time
DOC_COLUMNS_READ = 1024

CACHE_SCHEMA = pa.schema(
    [
        ("unit_key", pa.string()),
        ("item_key", pa.string()),
        *ROW_SCHEMA,
        ("tokens", pa.int64()),
        ("bad_commands", pa.list_(pa.string())),
        ("full", pa.binary()),
        ("prompt", pa.binary()),
        ("answer", pa.binary()),
        ("signature", pa.binary()),
    ]
)
COMPONENT_SCHEMA = pa.schema(
    [
        ("memo_key", pa.string()),
        ("removed", pa.list_(pa.string())),
        ("kept_by", pa.list_(pa.string())),
        ("stats", pa.list_(pa.int64())),
    ]
)


def builder_version(cfg: CorpusConfig) -> str:
    """What a unit's examples depend on besides its rows: the builders' code and settings."""
    return reuse.fingerprint(
        "pairs",
        reuse.code_version(
            pairs,
            pairs_formulas,
            pairs_beads,
            machinery,
            pairs_conventions,
            pairs_transcripts,
            examples,
            grammar,
        ),
        reuse.code_version(dedup, splits, reuse, sys.modules[__name__]),
        cfg.critical_boost,
        cfg.max_tokens,
        cfg.include_low_quality,
        cfg.machinery,
        NUM_PERM,
    )


@dataclass
class PairsBuild:
    path: Path  # instruction_pairs, ROW_SCHEMA, sorted by example_id
    num_rows: int
    report: PairsReport
    kept_keys: pa.Array  # item key of each row of the table
    example_ids: pa.Array  # example_id of each row of the table
    stats: dict[str, int] = field(default_factory=dict)

    def example_batches(
        self, mask: np.ndarray | None = None, rows: int = BATCH_ROWS
    ) -> Iterator[list[dict[str, Any]]]:
        """The example dicts of the table, `rows` at a time (only the rows where `mask` is set)."""
        start = 0
        for batch in pq.ParquetFile(self.path).iter_batches(batch_size=rows):
            records = batch.to_pylist()
            if mask is not None:
                records = [r for r, m in zip(records, mask[start : start + len(records)], strict=True) if m]
            start += batch.num_rows
            yield [example_from_record(r) for r in records]


def _build_unit(source: str, rows: Iterable[dict[str, Any]], cfg: CorpusConfig) -> Iterator[dict[str, Any]]:
    if source == "formulas":
        return iter(pairs_formulas.build_formula_examples(rows, critical_boost=cfg.critical_boost))
    if source == "beads":
        return iter(pairs_beads.build_bead_examples(rows, machinery=cfg.machinery))
    if source == "conventions":
        return iter(pairs_conventions.build_convention_examples(rows))
    return iter(
        pairs_transcripts.build_transcript_examples(
            rows, max_tokens=cfg.max_tokens, include_low_quality=cfg.include_low_quality
        )
    )


def _cache_rows(unit_key: str, built: list[dict[str, Any]], first: int) -> list[dict[str, Any]]:
    """Cache rows of examples first, first + 1, ... of a unit."""
    signatures = sketch_texts([conversation_text(ex) for ex in built], NUM_PERM)
    out = []
    for j, ex in enumerate(built):
        item = example_item(0, ex)
        rec = example_to_record(ex)
        rec.update(
            unit_key=unit_key,
            item_key=reuse.derived_key(unit_key, str(first + j)),
            tokens=example_tokens(ex),
            bad_commands=invalid_answer_commands(ex),
            full=item.full,
            prompt=item.prompt,
            answer=item.answer,
            signature=signatures[j].tobytes(),
        )
        out.append(rec)
    return out


def doc_batches(docs: pa.Table | Path, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """The scrubbed documents (a table, or its Parquet file read a batch at a time)."""
    if isinstance(docs, pa.Table):
        yield from (docs if columns is None else docs.select(columns)).to_batches(DOC_COLUMNS_READ)
    else:
        yield from pq.ParquetFile(docs).iter_batches(batch_size=DOC_COLUMNS_READ, columns=columns)


def build_pairs(
    docs: pa.Table | Path,
    doc_keys: list[str],
    cfg: CorpusConfig,
    store: ArtifactStore,
    *,
    reuse_cache: bool,
) -> PairsBuild:
    """The instruction pairs of scrubbed `docs`, whose content keys are `doc_keys`, written to the
    store's corpus/instruction_pairs."""
    version = builder_version(cfg)
    rows_of_source: dict[str, list[int]] = {s: [] for s in UNIT_SOURCES}
    i = 0
    for batch in doc_batches(docs, ["source"]):
        for s in batch.column(0).to_pylist():
            if s in rows_of_source:
                rows_of_source[s].append(i)
            i += 1

    stats = Counter()
    store.root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".pairs-", dir=store.root) as tmp:
        parts: list[Path] = []
        unit_order: list[str] = []
        for source in UNIT_SOURCES:
            idx = rows_of_source[source]
            if source == "beads":
                units = (
                    [(reuse.derived_key(version, source, *(doc_keys[i] for i in idx)), idx)] if idx else []
                )
            else:
                units = [(reuse.derived_key(version, source, doc_keys[i]), [i]) for i in idx]
            unit_order += [k for k, _ in units]
            part = _source_part(store, source, version, docs, units, cfg, reuse_cache, stats, Path(tmp))
            if part is not None:
                parts.append(part)
            release_memory()
        return _finish(parts, unit_order, cfg, store, reuse_cache, stats, Path(tmp))


def _unit_rows(docs: pa.Table | Path, wanted: list[int]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(document index, row) of the documents at `wanted` (ascending), in order."""
    want = np.asarray(wanted, dtype=np.int64)
    start = 0
    for batch in doc_batches(docs):
        lo, hi = np.searchsorted(want, [start, start + batch.num_rows])
        if hi > lo:
            rows = batch.take(pa.array(want[lo:hi] - start)).to_pylist()
            yield from zip(want[lo:hi].tolist(), rows, strict=True)
        start += batch.num_rows
        if hi == len(want):
            break


def release_memory() -> None:
    """Hand freed memory back to the OS between phases (Arrow's pool and glibc's heap keep it
    otherwise), so that each phase's peak does not stack on what earlier phases left behind."""
    import ctypes
    import ctypes.util

    pa.default_memory_pool().release_unused()
    libc_name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(libc_name) if libc_name else None
        if libc is not None and hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)
    except OSError:  # not glibc: nothing to trim
        pass


class _Rows:
    """The document rows at `wanted`, re-read from the documents each time they are iterated."""

    def __init__(self, docs: pa.Table | Path, wanted: list[int]) -> None:
        self.docs, self.wanted = docs, wanted

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (row for _, row in _unit_rows(self.docs, self.wanted))


class _CacheWriter:
    """Cache rows of units, written a batch at a time: small units share a row group (a row group
    per unit would grow the file's metadata, held by the writer, with the number of documents)."""

    def __init__(self, writer: pq.ParquetWriter) -> None:
        self.writer, self.rows = writer, []

    def add(self, unit_key: str, examples: Iterator[dict[str, Any]]) -> int:
        n = 0
        while chunk := list(itertools.islice(examples, BATCH_ROWS)):
            self.rows += _cache_rows(unit_key, chunk, n)
            n += len(chunk)
            if len(self.rows) >= BATCH_ROWS:
                self.flush()
        return n

    def flush(self) -> None:
        if self.rows:
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=CACHE_SCHEMA))
            self.rows = []
            release_memory()


def _source_part(
    store: ArtifactStore,
    source: str,
    version: str,
    docs: pa.Table | Path,
    units: list[tuple[str, list[int]]],
    cfg: CorpusConfig,
    reuse_cache: bool,
    stats: Counter,
    tmp: Path,
) -> Path | None:
    """The cache rows of every current unit of one source, as a Parquet file: cached ones kept, missing
    ones built, written a batch at a time. None: the source has no units and nothing cached."""
    name = f"pairs_{source}"
    cache_path = store.path(reuse.CACHE_STAGE, name)
    known: set[str] = set()
    if reuse_cache and cache_path.exists():
        try:
            meta = pq.read_schema(cache_path).metadata or {}
            if meta.get(reuse.VERSION_KEY) == version.encode():
                # The units a table holds (some have no examples) travel in its own metadata.
                known = set(json.loads(meta.get(UNITS_KEY, b"[]")))
        except (OSError, pa.ArrowException):
            known = set()  # a damaged cache is only a slower build
    current = [k for k, _ in units]
    missing = [(k, idx) for k, idx in units if k not in known]
    stats["units_reused"] += len(units) - len(missing)
    stats["units_built"] += len(missing)
    stats["documents_reused"] += sum(len(idx) for k, idx in units if k in known)
    stats["documents_recomputed"] += sum(len(idx) for _, idx in missing)
    if not missing and known == set(current):
        if not known:
            return None
        stats["examples_reused"] += pq.ParquetFile(cache_path).metadata.num_rows  # nothing new or evicted
        return cache_path
    stats["examples_reused"] += 0  # (the key is reported even when nothing was cached)
    dest = tmp / f"{name}.parquet"
    schema = CACHE_SCHEMA
    if reuse_cache:
        units_meta = json.dumps(sorted(set(current))).encode()
        schema = schema.with_metadata({UNITS_KEY: units_meta, reuse.VERSION_KEY: version.encode()})
    with pq.ParquetWriter(dest, schema, compression="zstd") as writer:
        if known:
            keep = pa.array(sorted(set(current)), pa.string())
            for batch in pq.ParquetFile(cache_path).iter_batches(batch_size=BATCH_ROWS):
                kept = batch.filter(pc.is_in(batch.column("unit_key"), value_set=keep))
                stats["examples_reused"] += kept.num_rows
                if kept.num_rows:
                    writer.write_table(pa.Table.from_batches([kept]).cast(schema))
        out = _CacheWriter(writer)
        if source == "beads":  # one unit: every bead row, read (twice) as the builder asks for them
            for key, idx in missing:
                stats["examples_built"] += out.add(key, _build_unit(source, _Rows(docs, idx), cfg))
        else:
            unit_of = {idx[0]: key for key, idx in missing}
            for i, row in _unit_rows(docs, sorted(unit_of)):
                stats["examples_built"] += out.add(unit_of[i], _build_unit(source, [row], cfg))
        out.flush()
    if reuse_cache:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        atomic.replace_file(dest, cache_path)
        return cache_path
    return dest


def _parts_batches(parts: list[Path], columns: list[str]) -> Iterator[tuple[int, pa.RecordBatch]]:
    """(global row of the first row, batch) over the parts in order."""
    start = 0
    for path in parts:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=columns):
            yield start, batch
            start += batch.num_rows


class _SpilledMembers(MemberData):
    """Signatures and shingles of the examples the near-duplicate pass compares, spilled to a file
    (read back with pread) so that memory does not grow with them."""

    def __init__(self, parts: list[Path], globals_of: np.ndarray, tmp: Path) -> None:
        self.parts, self.globals_of = parts, globals_of
        self.path = tmp / "members.bin"
        self.positions = np.empty(0, dtype=np.int64)

    def load(self, positions: np.ndarray) -> None:
        self.positions = positions
        wanted = self.globals_of[positions]  # ascending, as positions are
        self.offsets = np.zeros(len(positions), dtype=np.int64)
        self.lengths = np.zeros(len(positions), dtype=np.int64)
        self.keys = np.zeros(len(positions), dtype="S32")
        offset, slot = 0, 0
        with open(self.path, "wb") as fh:
            for start, batch in _parts_batches(self.parts, ["item_key", "signature", "messages"]):
                lo, hi = np.searchsorted(wanted, [start, start + batch.num_rows])
                if hi == lo:
                    continue
                rows = batch.take(pa.array(wanted[lo:hi] - start)).to_pylist()
                for row in rows:
                    text = conversation_text(example_from_record({"messages": row["messages"]}))
                    shingles = shingle_hashes(text[: dedup.MAX_SHINGLE_CHARS])
                    fh.write(row["signature"])
                    fh.write(shingles.tobytes())
                    self.offsets[slot], self.lengths[slot] = offset, len(shingles)
                    self.keys[slot] = row["item_key"].encode()
                    offset += len(row["signature"]) + shingles.nbytes
                    slot += 1
        self.fd = os.open(self.path, os.O_RDONLY)

    def _slot(self, pos: int) -> int:
        return int(np.searchsorted(self.positions, pos))

    def key(self, pos: int) -> str:
        return self.keys[self._slot(pos)].decode()

    def signatures(self, positions: list[int]) -> np.ndarray:
        out = np.empty((len(positions), NUM_PERM), dtype=np.uint32)
        for j, pos in enumerate(positions):
            blob = os.pread(self.fd, NUM_PERM * 4, int(self.offsets[self._slot(pos)]))
            out[j] = np.frombuffer(blob, dtype=np.uint32)
        return out

    def shingles(self, pos: int) -> np.ndarray:
        slot = self._slot(pos)
        n = int(self.lengths[slot])
        blob = os.pread(self.fd, n * 4, int(self.offsets[slot]) + NUM_PERM * 4)
        return np.frombuffer(blob, dtype=np.uint32)

    def close(self) -> None:
        if hasattr(self, "fd"):
            os.close(self.fd)


def _example(row: dict[str, Any], factor: float) -> dict[str, Any]:
    """The example dict of a cache row, with its task weight applied."""
    ex = example_from_record({k: row[k] for k in ROW_FIELDS})
    ex["weight"] = float(ex["weight"]) * factor
    return ex


def _finish(
    parts: list[Path],
    unit_order: list[str],
    cfg: CorpusConfig,
    store: ArtifactStore,
    reuse_cache: bool,
    stats: Counter,
    tmp: Path,
) -> PairsBuild:
    report = PairsReport()
    weights = dict(cfg.task_weights)
    unit_rank = {k: r for r, k in enumerate(unit_order)}
    bands, band_rows = lsh_params(cfg.dedup_threshold, NUM_PERM)
    # One pass over the cache rows: the budget and command filters, and the dedup columns of the rest.
    invalid: list[tuple[int, int, dict[str, Any]]] = []  # the first in build order are reported
    ids, times, fulls, prompts, has_prompt, hashes, live, globals_of, task_of = ([] for _ in range(9))
    tasks: dict[str, int] = {}
    columns = ["unit_key", "example_id", "task", "tokens", "bad_commands", "group_id"]
    columns += ["source_time", "full", "prompt", "signature"]
    total = 0
    for start, batch in _parts_batches(parts, columns):
        col = {n: batch.column(n) for n in columns}
        task, tokens, bad = (col[n].to_pylist() for n in ("task", "tokens", "bad_commands"))
        units = col["unit_key"].to_pylist()
        checked = np.zeros(batch.num_rows, dtype=bool)
        for j in range(batch.num_rows):
            if tokens[j] > cfg.max_tokens:
                report.over_budget[task[j]] += 1
            elif bad[j] and cfg.drop_invalid_commands:
                report.invalid_commands[task[j]] += 1
                group = col["group_id"][j].as_py()
                entry = {"task": task[j], "group_id": group, "commands": bad[j][:3]}
                invalid.append((unit_rank[units[j]], start + j, entry))
                if len(invalid) > 1000:
                    invalid = heapq.nsmallest(20, invalid, key=lambda e: e[:2])
            else:
                checked[j] = True
        total += batch.num_rows
        keep = pa.array(checked)
        idx = np.flatnonzero(checked)
        globals_of.append(start + idx)
        task_of.append(np.array([tasks.setdefault(task[j], len(tasks)) for j in idx], dtype=np.int32))
        ids.append(pc.fill_null(col["example_id"].filter(keep), ""))
        t = col["source_time"].filter(keep).to_numpy(zero_copy_only=False).astype(np.float64)
        times.append(np.where(np.isnan(t), -np.inf, t))  # as dedup._source_time reads it
        fulls.append(np.array(col["full"].filter(keep).to_pylist(), dtype="S32").reshape(-1))
        p = col["prompt"].filter(keep)
        prompts.append(np.array([x or b"" for x in p.to_pylist()], dtype="S32").reshape(-1))
        has_prompt.append(p.is_valid().to_numpy(zero_copy_only=False))
        sigs = np.frombuffer(b"".join(col["signature"].filter(keep).to_pylist()), dtype=np.uint32)
        sigs = sigs.reshape(len(idx), NUM_PERM)
        hashes.append(band_hashes(sigs, bands, band_rows))
        live.append(sigs.any(axis=1))
    report.built = total
    report.invalid_examples = [e for *_, e in heapq.nsmallest(20, invalid, key=lambda e: e[:2])]
    cols = DedupColumns(
        example_id=pa.concat_arrays(ids) if ids else pa.array([], pa.string()),
        source_time=np.concatenate(times) if times else np.empty(0),
        full=np.concatenate(fulls) if fulls else np.empty(0, "S32"),
        prompt=np.concatenate(prompts) if prompts else np.empty(0, "S32"),
        has_prompt=np.concatenate(has_prompt) if has_prompt else np.empty(0, bool),
        bands=np.concatenate(hashes) if hashes else np.empty((0, bands), np.uint64),
        live=np.concatenate(live) if live else np.empty(0, bool),
    )
    del ids, times, fulls, prompts, has_prompt, hashes, live
    g_of = np.concatenate(globals_of) if globals_of else np.empty(0, np.int64)
    task_code = np.concatenate(task_of) if task_of else np.empty(0, np.int32)
    task_names = list(tasks)
    factors = np.array([float(weights.get(name, 1.0)) for name in task_names], dtype=np.float64)

    def row_hashes(positions: list[int]) -> dict[int, bytes]:
        order = np.argsort(g_of[positions])
        wanted = g_of[positions][order]
        out: dict[int, bytes] = {}
        for start, batch in _parts_batches(parts, list(ROW_FIELDS)):
            lo, hi = np.searchsorted(wanted, [start, start + batch.num_rows])
            rows = batch.take(pa.array(wanted[lo:hi] - start)).to_pylist()
            for k, row in zip(range(lo, hi), rows, strict=True):
                pos = positions[int(order[k])]
                out[pos] = _row_hash(_example(row, float(factors[task_code[pos]])))
        return out

    memo_table = reuse.load_cache(store, COMPONENTS, "components") if reuse_cache else None
    memo: dict[str, ComponentDecisions] = {}
    if memo_table is not None:
        for r in memo_table.to_pylist():
            memo[r["memo_key"]] = (tuple(zip(r["removed"], r["kept_by"], strict=True)), tuple(r["stats"]))
    memo_out: dict[str, ComponentDecisions] = {}
    members = _SpilledMembers(parts, g_of, tmp)
    try:
        kept, removed, conflicts, dstats = dedup_columns(
            cols,
            row_hashes=row_hashes,
            members=members,
            threshold=cfg.dedup_threshold,
            num_perm=NUM_PERM,
            memo=memo,
            memo_out=memo_out,
        )
    finally:
        members.close()
    release_memory()
    stats["components_reused"] = sum(1 for k in memo_out if k in memo)
    stats["components_decided"] = len(memo_out) - stats["components_reused"]
    if reuse_cache and (set(memo_out) != set(memo)):
        rows = [
            {"memo_key": k, "removed": [a for a, _ in p], "kept_by": [b for _, b in p], "stats": list(s)}
            for k, (p, s) in memo_out.items()
        ]
        reuse.save_cache(store, COMPONENTS, "components", pa.Table.from_pylist(rows, schema=COMPONENT_SCHEMA))
    del memo, memo_out

    counts = {"kept": len(kept), "exact_duplicate": 0, "near_duplicate": 0, "conflict_older": 0}
    for _eid, reason, _kid in removed:
        counts[reason] += 1
    report.dedup = counts
    report.conflicts = conflicts
    # Sorted by example_id; ties keep their rank order, as in build_instruction_pairs.
    by_id = pa.table({"id": cols.example_id.take(pa.array(kept)), "rank": pa.array(np.arange(len(kept)))})
    final = pc.sort_indices(by_id, [("id", "ascending"), ("rank", "ascending")]).to_numpy()
    del by_id
    out_pos = np.full(total, -1, dtype=np.int64)
    out_pos[g_of[kept[final]]] = np.arange(len(kept))
    path, kept_keys, example_ids = _write_sorted(parts, out_pos, len(kept), weights, report, store, tmp)
    return PairsBuild(
        path=path,
        num_rows=len(kept),
        report=report,
        kept_keys=kept_keys,
        example_ids=example_ids,
        stats={**dict(stats), **{f"dedup_{k}": v for k, v in dstats.items()}},
    )


def _write_sorted(
    parts: list[Path],
    out_pos: np.ndarray,
    n_out: int,
    weights: dict[str, float],
    report: PairsReport,
    store: ArtifactStore,
    tmp: Path,
) -> tuple[Path, pa.Array, pa.Array]:
    """corpus/instruction_pairs: the rows with an output position, in that order, task weights applied.
    Rows are first spread over bucket files by position (a bounded range each), then each bucket is
    sorted in memory and appended. Also returns the item keys and example ids of the written rows."""
    n_buckets = max(1, -(-n_out // OUT_BUCKET_ROWS))
    fields = [*ROW_FIELDS, "item_key"]
    schema = pa.schema([CACHE_SCHEMA.field(n) for n in fields]).append(pa.field("out_pos", pa.int64()))
    paths = [tmp / f"out-{b}.parquet" for b in range(n_buckets)]
    writers = [pq.ParquetWriter(p, schema) for p in paths]
    try:
        for start, batch in _parts_batches(parts, fields):
            pos = out_pos[start : start + batch.num_rows]
            rows = np.flatnonzero(pos >= 0)
            if not len(rows):
                continue
            picked = pa.Table.from_batches([batch]).take(pa.array(rows))
            picked = picked.append_column("out_pos", pa.array(pos[rows]))
            bucket = pos[rows] // OUT_BUCKET_ROWS
            for b in np.unique(bucket).tolist():
                writers[b].write_table(picked.filter(pa.array(bucket == b)))
    finally:
        for w in writers:
            w.close()
    keys: list[pa.Array] = []
    ids: list[pa.Array] = []

    def sorted_buckets() -> Iterator[pa.Table]:
        for p in paths:
            t = pq.read_table(p)
            p.unlink()
            t = t.take(pc.sort_indices(t, [("out_pos", "ascending")]))
            task = t.column("task").to_pylist()
            for name, role in zip(task, t.column("role").to_pylist(), strict=True):
                report.by_task[name] += 1
                report.by_role[role or "(none)"] += 1
            factor = pa.array([float(weights.get(name, 1.0)) for name in task], pa.float64())
            weight = pc.multiply(t.column("weight").cast(pa.float64()), factor)
            keys.append(t.column("item_key").combine_chunks())
            ids.append(t.column("example_id").combine_chunks())
            t = t.select(list(ROW_FIELDS))
            yield t.set_column(ROW_FIELDS.index("weight"), "weight", weight).cast(ROW_SCHEMA)

    path = store.write_batches("corpus", "instruction_pairs", ROW_SCHEMA, sorted_buckets())
    string = pa.string()
    return (
        path,
        pa.concat_arrays(keys) if keys else pa.array([], string),
        pa.concat_arrays(ids) if ids else pa.array([], string),
    )


def verified_state(store: ArtifactStore, cfg: CorpusConfig) -> tuple[str, pa.Array]:
    """Item keys of examples that passed the per-example checks under this token budget (sorted)."""
    version = reuse.fingerprint("verified", builder_version(cfg), cfg.max_tokens)
    table = reuse.load_cache(store, VERIFIED, version)
    if table is None:
        return version, pa.array([], pa.string())
    return version, sorted_keys(table.column("item_key").combine_chunks())


def sorted_keys(keys: pa.Array) -> pa.Array:
    """The distinct keys, sorted (a set, kept as compact Arrow strings)."""
    unique = pc.unique(keys)
    return unique.take(pc.sort_indices(unique))


def save_verified(store: ArtifactStore, version: str, keys: pa.Array) -> None:
    table = pa.table({"item_key": sorted_keys(keys.cast(pa.string()))})
    reuse.save_cache(store, VERIFIED, version, table)
