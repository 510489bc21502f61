"""The pass/fail decision: is the tuned model at least as good as the base where it matters?

Three kinds of check, each on numbers the evaluation already measured:

- the Gas Town task suite: tuned `suite_score` >= base `suite_score` - tolerance;
- each patrol suite: tuned accuracy >= base accuracy - tolerance;
- the general-text guard: tuned perplexity <= base perplexity x `max_ppl_ratio`.

`tolerance` is in absolute score points (0.05 = five percentage points). A negative tolerance demands
that the tuned model beat the base by that margin. A suite with no scored case cannot show a
regression and passes, saying so.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Check:
    name: str
    passed: bool
    base: float | None
    tuned: float | None
    limit: float | None  # the tuned value must be >= (scores) or <= (perplexity) this
    detail: str


@dataclass
class Decision:
    passed: bool
    checks: list[Check] = field(default_factory=list)
    tolerance: float = 0.0
    max_ppl_ratio: float = 1.0

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def summary(self) -> str:
        if self.passed:
            return f"tuned model passes all {len(self.checks)} checks against the base"
        return "; ".join(c.detail for c in self.failures)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["summary"] = self.summary()
        return d


def _score_check(name: str, base: float | None, tuned: float | None, cases: int, tolerance: float) -> Check:
    if not cases or base is None or tuned is None:
        return Check(name, True, base, tuned, None, f"{name}: no scored case, nothing to compare")
    limit = base - tolerance
    ok = tuned >= limit - 1e-12
    verdict = "ok" if ok else "WORSE than the base"
    return Check(
        name,
        ok,
        base,
        tuned,
        limit,
        f"{name}: tuned {tuned:.3f} vs base {base:.3f} (must be >= {limit:.3f}): {verdict}",
    )


def decide(results: dict[str, Any], tolerance: float, max_ppl_ratio: float) -> Decision:
    """The decision on an evaluation's results (the dict `evaluation.run.evaluate_adapter` returns)."""
    checks: list[Check] = []
    suite = results.get("task_suite") or {}
    checks.append(
        _score_check(
            "task_suite",
            (suite.get("base") or {}).get("suite_score"),
            (suite.get("tuned") or {}).get("suite_score"),
            (suite.get("tuned") or {}).get("cases", 0),
            tolerance,
        )
    )
    for s in (results.get("patrol") or {}).get("suites", []):
        checks.append(
            _score_check(
                f"patrol:{s['name']}",
                s["base"]["accuracy"],
                s["tuned"]["accuracy"],
                s["tuned"]["scored"],
                tolerance,
            )
        )
    guard = results.get("guard") or {}
    base_ppl = (guard.get("base") or {}).get("perplexity")
    tuned_ppl = (guard.get("tuned") or {}).get("perplexity")
    if base_ppl is None or tuned_ppl is None or not math.isfinite(base_ppl) or not math.isfinite(tuned_ppl):
        checks.append(Check("general_text_guard", True, base_ppl, tuned_ppl, None, "guard: no text measured"))
    else:
        limit = base_ppl * max_ppl_ratio
        ok = tuned_ppl <= limit
        checks.append(
            Check(
                "general_text_guard",
                ok,
                base_ppl,
                tuned_ppl,
                limit,
                f"general-text perplexity: tuned {tuned_ppl:.2f} vs base {base_ppl:.2f} "
                f"(ratio {tuned_ppl / base_ppl:.3f}, at most {max_ppl_ratio:.3f}): "
                + ("ok" if ok else "DEGRADED beyond the bound"),
            )
        )
    return Decision(all(c.passed for c in checks), checks, tolerance, max_ppl_ratio)
