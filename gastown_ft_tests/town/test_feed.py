"""The town feed: our events are in Gas Town's schema, and lines stay whole beside concurrent writers
(a `gt`-like writer: O_APPEND, one write a line, no lock; and another locking gastown-ft process)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from gastown_ft.town.feed import append_event, make_event, read_events

N = 1500
# What gt does (internal/events/events.go): open O_APPEND, one Write of json+"\n", no file lock.
GT_WRITER = r"""
import json, os, sys
path, n = sys.argv[1], int(sys.argv[2])
print("ready", flush=True); sys.stdin.readline()  # start together with the others
for i in range(n):
    line = json.dumps({"ts": "2026-01-01T10:00:00Z", "source": "gt", "type": "sling", "actor": "mayor",
                       "payload": {"bead": f"gt-{i}", "pad": "x" * (i % 700)}, "visibility": "feed"}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, line.encode())
    os.close(fd)
"""
OUR_WRITER = r"""
import sys
from gastown_ft.town.feed import append_event, make_event
path, n = sys.argv[1], int(sys.argv[2])
print("ready", flush=True); sys.stdin.readline()
for i in range(n):
    append_event(path, make_event("ft_progress", "other", {"i": i, "pad": "y" * (i % 900)}))
"""


def test_an_event_has_gas_towns_schema():
    ev = make_event("ft_started", "gastown-ft", {"stage": "training"})
    assert list(ev) == ["ts", "source", "type", "actor", "payload", "visibility"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", ev["ts"])  # RFC 3339 UTC, as gt writes it
    assert ev["visibility"] in ("audit", "feed", "both")
    assert "payload" not in make_event("ft_started", "gastown-ft")  # omitempty, like gt


def test_lines_stay_whole_beside_concurrent_writers(tmp_path):
    path = tmp_path / ".events.jsonl"
    others = [
        subprocess.Popen([sys.executable, "-c", code, str(path), str(N)]) for code in (GT_WRITER, OUR_WRITER)
    ]
    for i in range(N):
        append_event(
            path, make_event("ft_progress", "gastown-ft", {"i": i, "text": "line\nbreak " * (i % 40)})
        )
    assert all(p.wait(timeout=120) == 0 for p in others)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 * N
    parsed = [json.loads(line) for line in lines]  # every line whole
    by_actor = {}
    for ev in parsed:
        by_actor.setdefault(ev["actor"], []).append(ev)
    assert {a: len(v) for a, v in by_actor.items()} == {"mayor": N, "other": N, "gastown-ft": N}
    assert [e["payload"]["i"] for e in by_actor["gastown-ft"]] == list(range(N))  # in order
    switches = sum(1 for a, b in zip(parsed, parsed[1:], strict=False) if a["actor"] != b["actor"])
    assert switches > 2  # not three blocks one after the other: the writers did run at the same time
    assert len(read_events(path)) == 2 * N  # ours (source gastown-ft) and the other gastown-ft process
    assert len(read_events(path, source="gt")) == N
