"""Scrub document rows: text, title, path, key and meta, with a redaction report; unsafe ones
quarantined. Before any row is scrubbed, the people of the whole corpus are learned (`learn_people`).

The meta JSON is scrubbed as one text (placeholders hold no quote or backslash, so it stays valid
JSON); if it would not parse afterwards, its string values are scrubbed one by one instead.

Learning is the first of two passes over the raw tables (identities.py): it reads one batch of the
text columns at a time and keeps only the evidence (a set of names), so memory stays flat; with
reuse, a source whose raw table is unchanged gives its evidence of the last build without being
read. The people found number the `person-N` placeholders that the scrub pass then writes.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow.parquet as pq

from gastown_ft.artifacts import ArtifactStore
from gastown_ft.corpus import identities
from gastown_ft.corpus import reuse as reuse_mod
from gastown_ft.corpus.documents import Quarantined
from gastown_ft.corpus.identities import Evidence, IdentityMap
from gastown_ft.corpus.scrub import Scrubber

SCRUBBED_FIELDS = ("text", "title", "path", "key", "meta")
LEARN_BATCH_ROWS = 2000


@dataclass
class RedactionReport:
    by_kind: Counter = field(default_factory=Counter)
    by_source: dict[str, Counter] = field(default_factory=dict)
    documents_changed: int = 0
    documents: int = 0

    def add(self, source: str, counts: Counter) -> None:
        self.documents += 1
        if counts:
            self.documents_changed += 1
            self.by_kind.update(counts)
            self.by_source.setdefault(source, Counter()).update(counts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "by_kind": dict(self.by_kind),
            "by_source": {k: dict(v) for k, v in self.by_source.items()},
            "documents": self.documents,
            "documents_changed": self.documents_changed,
        }


def _scrub_values(value: Any, scrubber: Scrubber, counts: Counter, unsafe: list[str]) -> Any:
    if isinstance(value, str):
        r = scrubber.scrub(value)
        counts.update(r.counts)
        if r.unsafe:
            unsafe.append(r.unsafe)
        return r.text
    if isinstance(value, list):
        return [_scrub_values(v, scrubber, counts, unsafe) for v in value]
    if isinstance(value, dict):
        return {k: _scrub_values(v, scrubber, counts, unsafe) for k, v in value.items()}
    return value


def scrub_row(row: dict[str, Any], scrubber: Scrubber) -> tuple[dict[str, Any], Counter, str | None]:
    """(scrubbed row, counts by kind, unsafe reason or None)."""
    out = dict(row)
    counts: Counter = Counter()
    unsafe: list[str] = []
    for name in ("text", "title", "path", "key"):
        if out.get(name):
            r = scrubber.scrub(out[name])
            out[name] = r.text
            counts.update(r.counts)
            if r.unsafe:
                unsafe.append(f"{name}: {r.unsafe}")
    meta = out.get("meta")
    if meta:
        r = scrubber.scrub(meta)
        try:
            json.loads(r.text)
            out["meta"] = r.text
            counts.update(r.counts)
            if r.unsafe:
                unsafe.append(f"meta: {r.unsafe}")
        except ValueError:
            out["meta"] = json.dumps(
                _scrub_values(json.loads(meta), scrubber, counts, unsafe), ensure_ascii=False, sort_keys=True
            )
    if counts:
        out["bytes"] = len(out["text"].encode("utf-8"))
    return out, counts, ("; ".join(unsafe) if unsafe else None)


def scrub_rows(
    rows: Iterable[dict[str, Any]],
    scrubber: Scrubber,
    report: RedactionReport,
    quarantined: list[Quarantined],
) -> Iterator[dict[str, Any]]:
    """Scrubbed rows; a row whose secret cannot be removed safely goes to `quarantined` instead."""
    for row in rows:
        clean, counts, unsafe = scrub_row(row, scrubber)
        if unsafe:
            # The quarantine record names the (scrubbed) path, never the secret.
            quarantined.append(
                Quarantined(row["source"], clean["path"], "unsafe_secret", unsafe[:500], rig=row.get("rig"))
            )
            continue
        report.add(row["source"], counts)
        yield clean


# --------------------------------------------------------------------------------------------------
# Pass 1: the people of the whole corpus


def learn_row(row: dict[str, Any], add) -> None:
    """Identity evidence of one document row (every scrubbed field)."""
    for name in SCRUBBED_FIELDS:
        value = row.get(name)
        if isinstance(value, str) and value:
            identities.learn(value, add)


def _learn_source(store: ArtifactStore, source: str, version: str, reuse: bool) -> tuple[set[Evidence], bool]:
    """The evidence of one raw table, batch by batch; (evidence, whether it came from the cache)."""
    path = store.path("raw", source)
    name = f"learn_{source}"
    stamp = reuse_mod.stamps([path])
    if reuse:
        state = reuse_mod.load_state(store, name)
        if state and state.get("raw") == stamp and state.get("version") == version:
            return {tuple(e) for e in state["evidence"]}, True
    found: set[Evidence] = set()
    pf = pq.ParquetFile(path)
    columns = [c for c in SCRUBBED_FIELDS if c in pf.schema_arrow.names]
    for batch in pf.iter_batches(batch_size=LEARN_BATCH_ROWS, columns=columns):
        for column in batch.columns:
            for value in column.to_pylist():
                if value:
                    identities.learn(value, found.add)
    if reuse:
        reuse_mod.save_state(store, name, {"raw": stamp, "version": version, "evidence": sorted(found)})
    return found, False


def learn_people(
    store: ArtifactStore,
    sources: Iterable[str],
    *,
    learn_names: bool = True,
    keep_names: Iterable[str] = (),
    extra_names: Iterable[str] = (),
    reuse: bool = True,
) -> tuple[IdentityMap, dict[str, Any]]:
    """Pass 1 over every raw table: the people to replace, and counts for the report (never names)."""
    started = time.perf_counter()
    version = reuse_mod.fingerprint(reuse_mod.code_version(identities, __name__))
    evidence: set[Evidence] = set()
    reused = 0
    if learn_names:
        for source in sources:
            if store.exists("raw", source):
                found, cached = _learn_source(store, source, version, reuse)
                evidence |= found
                reused += cached
    people = IdentityMap.build(evidence, keep=keep_names, extra=extra_names)
    stats = {
        **people.as_stats(),
        "evidence": len(evidence),
        "agent_handles_seen": sum(1 for kind, _v, _l in evidence if kind == "handle"),
        "sources_reused": reused,
        "seconds": time.perf_counter() - started,
    }
    return people, stats
