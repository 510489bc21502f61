"""When to retrain: how much the corpus changed since the adapter was last trained.

Each `corpus_splits` materialization reports `corpus_change_fraction` (the share of examples added,
changed or removed against the previous build). The changes since the build the current adapter was
trained on (matched by `corpus_version`) add up, capped at 1, so many small changes also reach the
threshold. A build without the number counts as a full change: retraining too often is cheaper than
a stale adapter nobody noticed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CorpusBuild:
    """One corpus_splits materialization."""

    storage_id: int
    corpus_version: str | None
    change_fraction: float | None  # None: not reported


@dataclass(frozen=True)
class RetrainDecision:
    retrain: bool
    pending_change: float  # accumulated change since the trained build, 0..1
    builds_since_training: int
    reason: str


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def pending_change(builds_newest_first: list[CorpusBuild], trained_version: str | None) -> tuple[float, int]:
    """(accumulated change since the build with `trained_version`, number of builds since it).

    With no adapter, or when the trained build is not among `builds`, everything counts as changed."""
    if not builds_newest_first:
        return 0.0, 0
    if (
        builds_newest_first[0].corpus_version is not None
        and builds_newest_first[0].corpus_version == trained_version
    ):
        return 0.0, 0  # the corpus is back to (or still at) what the adapter saw
    total, n = 0.0, 0
    for b in builds_newest_first:
        if trained_version is not None and b.corpus_version == trained_version:
            return min(total, 1.0), n
        total += 1.0 if b.change_fraction is None else max(0.0, float(b.change_fraction))
        n += 1
    return 1.0, n


def decide_retrain(
    builds_newest_first: list[CorpusBuild], trained_version: str | None, threshold: float
) -> RetrainDecision:
    if not builds_newest_first:
        return RetrainDecision(False, 0.0, 0, "corpus_splits has never been built")
    pending, n = pending_change(builds_newest_first, trained_version)
    latest = builds_newest_first[0].corpus_version or "?"
    if trained_version is None:
        return RetrainDecision(True, 1.0, n, f"no adapter trained yet; corpus {latest[:12]} is ready")
    if n == 0:
        return RetrainDecision(
            False, 0.0, 0, f"the adapter is already trained on corpus {latest[:12]} (nothing changed)"
        )
    if pending >= threshold:
        return RetrainDecision(
            True,
            pending,
            n,
            f"corpus changed {_pct(pending)} over {n} build(s) since the adapter was trained "
            f"(threshold {_pct(threshold)}); corpus {trained_version[:12]} -> {latest[:12]}",
        )
    return RetrainDecision(
        False,
        pending,
        n,
        f"corpus changed {_pct(pending)} over {n} build(s) since the adapter was trained, below the "
        f"retrain threshold of {_pct(threshold)}",
    )
