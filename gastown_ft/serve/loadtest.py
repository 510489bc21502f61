"""A bounded load test of a running `serve`: latency percentiles and tokens/s at 1, 2, 4 clients.

Run it as its own process, beside the server (on loopback):

    python -m gastown_ft.serve.loadtest --base-url http://127.0.0.1:8000 --clients 1,2,4 \\
        --requests 8 --max-seconds 120 --max-tokens 64

Each level starts that many clients, each sending streamed, greedy chat completions one after
another until the level has sent `--requests` or spent `--max-seconds` (a request already sent is
waited for). Per level: p50/p95 of the whole reply's latency and of the time to the first token,
and tokens/s (completion tokens of all replies over the level's wall time). JSON on stdout.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
import urllib.parse
from typing import Any

PROMPTS = (
    "What does `gt done` do?",
    "List the open beads of this rig.",
    "Who are you?",
    "Summarize the convoy status.",
    "Which formula should a polecat run for a bug fix?",
    "How do I hand a bead back to the refinery?",
)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _one(conn: http.client.HTTPConnection, model: str, prompt: str, max_tokens: int) -> dict[str, Any]:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    first = None
    tokens = 0
    conn.request(
        "POST", "/v1/chat/completions", body=json.dumps(body), headers={"Content-Type": "application/json"}
    )
    r = conn.getresponse()
    if r.status != 200:
        return {"error": f"HTTP {r.status}: {r.read()[:200]!r}"}
    for raw in r:  # server-sent events, a line at a time
        line = raw.decode("utf-8").strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        if "error" in chunk:
            r.read()
            return {"error": chunk["error"].get("message")}
        if first is None and any((c.get("delta") or {}).get("content") for c in chunk.get("choices", [])):
            first = time.perf_counter() - started
        if chunk.get("usage"):
            tokens = chunk["usage"]["completion_tokens"]
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "first_token": first if first is not None else seconds, "tokens": tokens}


def run_level(
    base_url: str, clients: int, *, requests: int, max_seconds: float, max_tokens: int, model: str
) -> dict[str, Any]:
    url = urllib.parse.urlsplit(base_url)
    results: list[dict[str, Any]] = []
    lock = threading.Lock()
    sent = [0]
    deadline = time.perf_counter() + max_seconds

    def client_loop(index: int) -> None:
        conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=max(60.0, max_seconds))
        try:
            while True:
                with lock:
                    if sent[0] >= requests or time.perf_counter() > deadline:
                        return
                    n = sent[0]
                    sent[0] += 1
                try:
                    out = _one(conn, model, PROMPTS[n % len(PROMPTS)], max_tokens)
                except OSError as e:
                    out = {"error": f"{type(e).__name__}: {e}"}
                    conn.close()
                with lock:
                    results.append(out)
        finally:
            conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ok = [r for r in results if "error" not in r]
    latency = [r["seconds"] for r in ok]
    first = [r["first_token"] for r in ok]
    tokens = sum(r["tokens"] for r in ok)
    return {
        "clients": clients,
        "requests": len(results),
        "errors": [r["error"] for r in results if "error" in r],
        "wall_seconds": round(wall, 3),
        "completion_tokens": tokens,
        "tokens_per_second": round(tokens / wall, 2) if wall > 0 else None,
        "latency_p50": _round(_percentile(latency, 0.5)),
        "latency_p95": _round(_percentile(latency, 0.95)),
        "first_token_p50": _round(_percentile(first, 0.5)),
        "first_token_p95": _round(_percentile(first, 0.95)),
    }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def load_test(
    base_url: str,
    levels: list[int],
    *,
    requests: int = 8,
    max_seconds: float = 120.0,
    max_tokens: int = 64,
    model: str = "gastown-ft",
) -> list[dict[str, Any]]:
    """One result per concurrency level (see the module doc)."""
    return [
        run_level(
            base_url.rstrip("/"),
            c,
            requests=requests,
            max_seconds=max_seconds,
            max_tokens=max_tokens,
            model=model,
        )
        for c in levels
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", default="http://127.0.0.1:8000", help="the server, without /v1")
    p.add_argument("--clients", default="1,2,4", help="concurrency levels, comma-separated")
    p.add_argument("--requests", type=int, default=8, help="requests per level (at most)")
    p.add_argument("--max-seconds", type=float, default=120.0, help="time per level (at most)")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--model", default="gastown-ft")
    a = p.parse_args(argv)
    levels = [int(x) for x in a.clients.split(",") if x.strip()]
    out = load_test(
        a.base_url,
        levels,
        requests=a.requests,
        max_seconds=a.max_seconds,
        max_tokens=a.max_tokens,
        model=a.model,
    )
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 1 if any(level["errors"] for level in out) else 0


if __name__ == "__main__":
    sys.exit(main())
