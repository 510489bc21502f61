"""Cost of use per arm: latency per request (p50, p95), tokens per second, peak memory.

Measured on the generations that answer the task suite (base, tuned) and its retrieval subset
(base+retrieval, tuned+retrieval), the same requests with and without retrieved context:

- latency: each request's own time, from the start of its batch to its own last token (generate.py
  notes when each row of a batch stops; llama.cpp answers one request at a time). With batching,
  requests share the forward passes, so `batch_size` is reported beside it;
- tokens/s: generated tokens over the wall time the arm took (each request counts its share of its
  batch's time, so batching does not count the same second twice);
- peak RSS: the process's peak resident memory during the arm's calls. Linux's high-water mark is
  reset before each call (`/proc/self/clear_refs`, "5"), so it is the call's own peak; where that
  cannot be done it is the process's peak so far, and `peak_rss_scope` says "process".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

COST_PARTS = ("task suite", "retrieval")


class PeakRss:
    """This process's peak RSS since the last `reset` (Linux), else since the process started."""

    def __init__(self) -> None:
        self.resettable = True

    def reset(self) -> None:
        if not self.resettable:
            return
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
        except OSError:
            self.resettable = False

    def peak(self) -> int | None:
        try:
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return None

    @property
    def scope(self) -> str:
        return "call" if self.resettable else "process"


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation between the closest ranks; None when empty."""
    if not values:
        return None
    xs = sorted(values)
    k = (len(xs) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


class CostMeter:
    """Collects the cost of each arm from the decoder calls of `parts`."""

    def __init__(self, parts: Sequence[str] = COST_PARTS, rss: PeakRss | None = None) -> None:
        self.parts = set(parts)
        self.rss = rss
        self._arms: dict[str, dict[str, Any]] = {}

    def observe(self, batch) -> None:  # observe.Batch
        if batch.part not in self.parts:
            return
        arm = self._arms.setdefault(
            batch.arm,
            {"latency": [], "tokens": 0, "prompt_tokens": 0, "share": 0.0, "peak": None, "batch": 0},
        )
        for g in batch.generations:
            arm["latency"].append(g.seconds)
            arm["tokens"] += g.new_tokens
            arm["prompt_tokens"] += g.prompt_tokens
            arm["share"] += g.wall_share
            arm["batch"] = max(arm["batch"], g.batch_size)
        if batch.peak_rss_bytes is not None:
            arm["peak"] = max(arm["peak"] or 0, batch.peak_rss_bytes)

    def summary(self) -> dict[str, Any]:
        """{arm: {requests, latency_p50_ms, latency_p95_ms, tokens_per_s, new_tokens, prompt_tokens,
        peak_rss_mb, batch_size}} and how the peak was taken."""
        arms = {}
        for name, a in self._arms.items():
            p50, p95 = percentile(a["latency"], 50), percentile(a["latency"], 95)
            arms[name] = {
                "requests": len(a["latency"]),
                "latency_p50_ms": None if p50 is None else round(p50 * 1000, 1),
                "latency_p95_ms": None if p95 is None else round(p95 * 1000, 1),
                "tokens_per_s": round(a["tokens"] / a["share"], 1) if a["share"] > 0 else None,
                "new_tokens": a["tokens"],
                "prompt_tokens": a["prompt_tokens"],
                "peak_rss_mb": None if a["peak"] is None else round(a["peak"] / 2**20, 1),
                "batch_size": a["batch"],
            }
        return {
            "parts": sorted(self.parts),
            "arms": arms,
            "peak_rss_scope": self.rss.scope if self.rss is not None else "call",
        }
