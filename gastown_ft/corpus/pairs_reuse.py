"""The instruction pairs, built unit by unit with reuse of unchanged units, in Arrow.

A unit is what one builder call turns into examples independently of everything else: one formula,
convention or transcript document, or all the beads together (bead examples look up other beads and
triage sets are drawn from a whole file). A unit's key is a hash of its scrubbed rows, the settings
the builders read and the code of the builders. For each unit the cache keeps its examples as Arrow
rows plus what the later passes need of each: token estimate, invalid commands, the dedup hashes and
the MinHash signature. Task weights, the budget and command filters, and deduplication then run over
all examples as in `build_instruction_pairs`, from the cached columns; the near-duplicate decisions
of an unchanged LSH component are reused too (see dedup.dedup_items). A clean build is the same code
with an empty cache, so the two give the same table.
"""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

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
    _Item,
    _row_hash,
    conversation_text,
    dedup_items,
    example_item,
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
    table: pa.Table  # instruction_pairs, ROW_SCHEMA, sorted by example_id
    report: PairsReport
    kept_keys: list[str]  # item key of each row of `table`
    example_of: Callable[[int], dict[str, Any]]  # the example dict of a row of `table`
    stats: dict[str, int] = field(default_factory=dict)


def _build_unit(source: str, rows: list[dict[str, Any]], cfg: CorpusConfig) -> list[dict[str, Any]]:
    if source == "formulas":
        return list(pairs_formulas.build_formula_examples(rows, critical_boost=cfg.critical_boost))
    if source == "beads":
        return list(pairs_beads.build_bead_examples(rows, machinery=cfg.machinery))
    if source == "conventions":
        return list(pairs_conventions.build_convention_examples(rows))
    return list(
        pairs_transcripts.build_transcript_examples(
            rows, max_tokens=cfg.max_tokens, include_low_quality=cfg.include_low_quality
        )
    )


def _cache_rows(unit_key: str, built: list[dict[str, Any]]) -> list[dict[str, Any]]:
    signatures = sketch_texts([conversation_text(ex) for ex in built], NUM_PERM)
    out = []
    for j, ex in enumerate(built):
        item = example_item(0, ex)
        rec = example_to_record(ex)
        rec.update(
            unit_key=unit_key,
            item_key=reuse.derived_key(unit_key, str(j)),
            tokens=example_tokens(ex),
            bad_commands=invalid_answer_commands(ex),
            full=item.full,
            prompt=item.prompt,
            answer=item.answer,
            signature=signatures[j].tobytes(),
        )
        out.append(rec)
    return out


def build_pairs(
    docs: pa.Table, doc_keys: list[str], cfg: CorpusConfig, store: ArtifactStore, *, reuse_cache: bool
) -> PairsBuild:
    """The instruction pairs of scrubbed `docs`, whose content keys are `doc_keys`."""
    version = builder_version(cfg)
    sources = docs.column("source").to_pylist()
    rows_of_source: dict[str, list[int]] = {s: [] for s in UNIT_SOURCES}
    for i, s in enumerate(sources):
        if s in rows_of_source:
            rows_of_source[s].append(i)

    stats = Counter()
    parts: list[pa.Table] = []
    unit_order: list[str] = []
    for source in UNIT_SOURCES:
        idx = rows_of_source[source]
        if source == "beads":
            units = [(reuse.derived_key(version, source, *(doc_keys[i] for i in idx)), idx)] if idx else []
        else:
            units = [(reuse.derived_key(version, source, doc_keys[i]), [i]) for i in idx]
        unit_order += [k for k, _ in units]
        parts.append(_source_part(store, source, version, docs, units, cfg, reuse_cache, stats))

    combined = pa.concat_tables(parts) if parts else CACHE_SCHEMA.empty_table()
    rows_of_unit: dict[str, list[int]] = {}
    for i, k in enumerate(combined.column("unit_key").to_pylist()):
        rows_of_unit.setdefault(k, []).append(i)
    produced = [i for k in unit_order for i in rows_of_unit.get(k, [])]
    return _finish(combined, produced, cfg, store, reuse_cache, stats)


def _source_part(
    store: ArtifactStore,
    source: str,
    version: str,
    docs: pa.Table,
    units: list[tuple[str, list[int]]],
    cfg: CorpusConfig,
    reuse_cache: bool,
    stats: Counter,
) -> pa.Table:
    """The cache rows of every current unit of one source: cached ones kept, missing ones built."""
    name = f"pairs_{source}"
    cached = reuse.load_cache(store, name, version) if reuse_cache else None
    # The units a table holds (some have no examples) travel in its own metadata: written atomically.
    known = set(json.loads((cached.schema.metadata or {}).get(UNITS_KEY, b"[]"))) if cached else set()
    if cached is None or not known:
        cached, known = CACHE_SCHEMA.empty_table(), set()
    current = [k for k, _ in units]
    missing = [(k, idx) for k, idx in units if k not in known]
    stats["units_reused"] += len(units) - len(missing)
    stats["units_built"] += len(missing)
    stats["documents_reused"] += sum(len(idx) for k, idx in units if k in known)
    stats["documents_recomputed"] += sum(len(idx) for _, idx in missing)
    if not missing and known == set(current):
        stats["examples_reused"] += cached.num_rows
        return cached.replace_schema_metadata(None)  # nothing new, nothing to evict
    keep = set(current)
    take = [i for i, k in enumerate(cached.column("unit_key").to_pylist()) if k in keep]
    kept_part = cached.take(pa.array(take, pa.int64())) if len(take) != cached.num_rows else cached
    stats["examples_reused"] += kept_part.num_rows
    new_rows: list[dict[str, Any]] = []
    for key, idx in missing:
        new_rows += _cache_rows(key, _build_unit(source, docs.take(idx).to_pylist(), cfg))
    stats["examples_built"] += len(new_rows)
    part = pa.concat_tables([kept_part, pa.Table.from_pylist(new_rows, schema=CACHE_SCHEMA)])
    if reuse_cache:
        units_meta = {UNITS_KEY: json.dumps(sorted(set(current))).encode()}
        reuse.save_cache(store, name, version, part.replace_schema_metadata(units_meta))
    return part.replace_schema_metadata(None)


def _finish(
    combined: pa.Table,
    produced: list[int],
    cfg: CorpusConfig,
    store: ArtifactStore,
    reuse_cache: bool,
    stats: Counter,
) -> PairsBuild:
    report = PairsReport(built=len(produced))
    weights = dict(cfg.task_weights)
    col = {n: combined.column(n).to_pylist() for n in ("task", "tokens", "bad_commands", "group_id")}
    checked: list[int] = []
    for i in produced:
        task = col["task"][i]
        if col["tokens"][i] > cfg.max_tokens:
            report.over_budget[task] += 1
            continue
        bad = col["bad_commands"][i]
        if bad and cfg.drop_invalid_commands:
            report.invalid_commands[task] += 1
            if len(report.invalid_examples) < 20:
                report.invalid_examples.append(
                    {"task": task, "group_id": col["group_id"][i], "commands": bad[:3]}
                )
            continue
        checked.append(i)

    def factor(i: int) -> float:
        return float(weights.get(col["task"][i], 1.0))

    records: dict[int, dict[str, Any]] = {}

    def example_of(i: int) -> dict[str, Any]:
        if i not in records:
            rec = combined.slice(i, 1).select(list(ROW_FIELDS)).to_pylist()[0]
            ex = example_from_record(rec)
            ex["weight"] = float(ex["weight"]) * factor(i)
            records[i] = ex
        return records[i]

    ids = combined.column("example_id").to_pylist()
    times = combined.column("source_time").to_pylist()
    full, prompt, answer = (combined.column(n).to_pylist() for n in ("full", "prompt", "answer"))
    # source_time as dedup._source_time reads it: a number, else -inf (NaN too)
    items = [
        _Item(
            i,
            str(ids[i] or ""),
            -math.inf if times[i] is None or times[i] != times[i] else times[i],
            full[i],
            prompt[i],
            answer[i],
        )
        for i in checked
    ]
    signature_col = combined.column("signature")

    def signatures_of(indices: list[int]) -> np.ndarray:
        blobs = signature_col.take(pa.array(indices, pa.int64())).to_pylist()
        return np.frombuffer(b"".join(blobs), dtype=np.uint32).reshape(len(indices), NUM_PERM)

    item_keys = combined.column("item_key").to_pylist()
    memo_table = reuse.load_cache(store, COMPONENTS, "components") if reuse_cache else None
    memo: dict[str, ComponentDecisions] = {}
    if memo_table is not None:
        for r in memo_table.to_pylist():
            memo[r["memo_key"]] = (tuple(zip(r["removed"], r["kept_by"], strict=True)), tuple(r["stats"]))
    memo_out: dict[str, ComponentDecisions] = {}
    kept, removed, conflicts, dstats = dedup_items(
        items,
        row_hash_of=lambda i: _row_hash(example_of(i)),
        shingles_of=lambda i: shingle_hashes(conversation_text(example_of(i))[: dedup.MAX_SHINGLE_CHARS]),
        signatures_of=signatures_of,
        threshold=cfg.dedup_threshold,
        num_perm=NUM_PERM,
        keys=item_keys,
        memo=memo,
        memo_out=memo_out,
    )
    stats["components_reused"] = sum(1 for k in memo_out if k in memo)
    stats["components_decided"] = len(memo_out) - stats["components_reused"]
    if reuse_cache and (set(memo_out) != set(memo)):
        rows = [
            {"memo_key": k, "removed": [a for a, _ in p], "kept_by": [b for _, b in p], "stats": list(s)}
            for k, (p, s) in memo_out.items()
        ]
        reuse.save_cache(store, COMPONENTS, "components", pa.Table.from_pylist(rows, schema=COMPONENT_SCHEMA))

    counts = {"kept": len(kept), "exact_duplicate": 0, "near_duplicate": 0, "conflict_older": 0}
    for _eid, reason, _kid in removed:
        counts[reason] += 1
    report.dedup = counts
    report.conflicts = conflicts
    kept.sort(key=lambda i: ids[i])  # stable: ties keep their rank order, as in build_instruction_pairs
    roles = combined.column("role").to_pylist()
    for i in kept:
        report.by_task[col["task"][i]] += 1
        report.by_role[roles[i] or "(none)"] += 1

    take = pa.array(kept, pa.int64())
    table = combined.select(list(ROW_FIELDS)).take(take)
    old_weight = table.column("weight").to_pylist()
    new_weight = pa.array([float(w) * factor(i) for w, i in zip(old_weight, kept, strict=True)], pa.float64())
    table = table.set_column(ROW_FIELDS.index("weight"), "weight", new_weight).cast(ROW_SCHEMA)
    return PairsBuild(
        table=table,
        report=report,
        kept_keys=[item_keys[i] for i in kept],
        example_of=lambda row: example_of(kept[row]),
        stats={**dict(stats), **{f"dedup_{k}": v for k, v in dstats.items()}},
    )


def verified_state(store: ArtifactStore, cfg: CorpusConfig) -> tuple[str, set[str]]:
    """Item keys of examples that passed the per-example checks under this token budget."""
    version = reuse.fingerprint("verified", builder_version(cfg), cfg.max_tokens)
    table = reuse.load_cache(store, VERIFIED, version)
    return version, set(table.column("item_key").to_pylist()) if table is not None else set()


def save_verified(store: ArtifactStore, version: str, keys: set[str]) -> None:
    table = pa.table({"item_key": pa.array(sorted(keys), pa.string())})
    reuse.save_cache(store, VERIFIED, version, table)
