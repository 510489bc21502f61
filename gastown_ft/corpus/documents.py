"""The records every reader produces: documents with provenance, and quarantined inputs.

A reader never raises on bad input and never drops it silently: what it cannot read becomes a
`Quarantined` record in the `ReadLog`, with a short machine reason and a human detail.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

SOURCES = ("formulas", "beads", "conventions", "transcripts", "events")


def content_hash(text: str | bytes) -> str:
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


def stable_id(*parts: object) -> str:
    """A short id derived from content, so a rebuild of unchanged input reproduces it."""
    joined = "\x1f".join("" if p is None else str(p) for p in parts)
    return hashlib.sha256(joined.encode("utf-8", "surrogatepass")).hexdigest()[:20]


@dataclass
class Document:
    """One source document with its provenance.

    `text` is the canonical text the corpus sees; `meta` holds the source's structured fields
    (steps of a formula, blocks of a transcript, ...), stored as JSON.
    """

    source: str
    kind: str
    path: str
    text: str
    title: str = ""
    rig: str | None = None
    commit: str | None = None
    mtime: float | None = None
    role: str | None = None
    key: str = ""  # distinguishes several documents from one file (a bead id, a thread id, a line)
    meta: dict[str, Any] = field(default_factory=dict)
    content_hash: str = ""
    doc_id: str = ""

    def __post_init__(self) -> None:
        if not self.content_hash:
            self.content_hash = content_hash(self.text)
        if not self.doc_id:
            self.doc_id = stable_id(self.source, self.path, self.key, self.content_hash)


@dataclass
class Quarantined:
    """An input that could not be read or used, and why."""

    source: str
    path: str
    reason: str  # short code: invalid_toml, empty_file, binary_file, not_an_object, needs_cycle, ...
    detail: str
    rig: str | None = None
    line: int | None = None

    @property
    def quarantine_id(self) -> str:
        return stable_id(self.source, self.path, self.line, self.reason)


@dataclass
class ReadLog:
    """What a reader saw besides documents: quarantined inputs and deliberate skips (counted)."""

    quarantined: list[Quarantined] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # e.g. {"tombstone": 3319}
    files_read: int = 0

    def quarantine(
        self,
        source: str,
        path: str,
        reason: str,
        detail: str,
        *,
        rig: str | None = None,
        line: int | None = None,
    ) -> None:
        self.quarantined.append(Quarantined(source, path, reason, detail[:2000], rig, line))

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] += n


DOCUMENT_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("source", pa.string()),
        ("kind", pa.string()),
        ("rig", pa.string()),
        ("path", pa.string()),
        ("key", pa.string()),
        ("commit", pa.string()),
        ("mtime", pa.float64()),
        ("role", pa.string()),
        ("content_hash", pa.string()),
        ("title", pa.string()),
        ("text", pa.string()),
        ("meta", pa.string()),  # JSON
        ("bytes", pa.int64()),
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        ("quarantine_id", pa.string()),
        ("source", pa.string()),
        ("path", pa.string()),
        ("rig", pa.string()),
        ("line", pa.int64()),
        ("reason", pa.string()),
        ("detail", pa.string()),
    ]
)


def _safe(text: str) -> str:
    # Lone surrogates (from bad UTF-8 decoded with surrogateescape) cannot go into Arrow strings.
    return text.encode("utf-8", "replace").decode("utf-8") if text else text


def documents_to_table(docs: list[Document]) -> pa.Table:
    rows = {name: [] for name in DOCUMENT_SCHEMA.names}
    for d in docs:
        text = _safe(d.text)
        rec = asdict(d)
        rec["text"] = text
        rec["title"] = _safe(d.title)
        rec["meta"] = json.dumps(d.meta, ensure_ascii=False, default=str, sort_keys=True)
        rec["bytes"] = len(text.encode("utf-8"))
        for name in DOCUMENT_SCHEMA.names:
            rows[name].append(rec[name])
    return pa.table(rows, schema=DOCUMENT_SCHEMA)


def quarantine_to_table(items: list[Quarantined]) -> pa.Table:
    rows = {name: [] for name in QUARANTINE_SCHEMA.names}
    for q in items:
        rec = asdict(q)
        rec["quarantine_id"] = q.quarantine_id
        rec["detail"] = _safe(q.detail)
        rec["path"] = _safe(q.path)
        for name in QUARANTINE_SCHEMA.names:
            rows[name].append(rec[name])
    return pa.table(rows, schema=QUARANTINE_SCHEMA)
