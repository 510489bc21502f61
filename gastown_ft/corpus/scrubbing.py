"""Scrub document rows: text, title, path and meta, with a redaction report; unsafe ones quarantined.

The meta JSON is scrubbed as one text (placeholders hold no quote or backslash, so it stays valid
JSON); if it would not parse afterwards, its string values are scrubbed one by one instead.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from gastown_ft.corpus.documents import Quarantined
from gastown_ft.corpus.scrub import Scrubber

SCRUBBED_FIELDS = ("text", "title", "path", "meta")


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
    for name in ("text", "title", "path"):
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
