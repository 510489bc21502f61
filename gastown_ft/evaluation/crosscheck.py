"""The cross-check: a sample of the evaluation's cases answered again by a second engine.

When llama.cpp writes the evaluation's answers, transformers (what `engine = "transformers"` would
have used) answers a few of the same prompts again, for both variants, and the two are compared text
for text and verdict for verdict. The sample is spread over the tasks (one case per task, tasks evenly
spaced, then a second round...). Greedy answers of two engines can part where two tokens' scores tie
within rounding (f16 against bf16 or fp32 weights); the differing cases are recorded with both answers,
so a reader sees whether a difference changed a verdict.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gastown_ft.evaluation.generate import Generation, Prompt
from gastown_ft.training.data import spread_evenly

ANSWER_CHARS = 600  # of each differing answer kept in the results


@dataclass
class Answered:
    """One case as the evaluation ran it: its prompt, its group for the sample (the task), its
    answers per variant and a way to score another answer."""

    case_id: str
    group: str
    prompt: Prompt
    answers: dict[str, Generation]
    score: Callable[[Generation], bool]


def sample(cases: Sequence[Answered], n: int) -> list[int]:
    """Indices of `n` cases spread over their groups: a case from each of `n` evenly spaced groups,
    and when there are fewer groups than `n`, a second case from each, and so on."""
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(cases):
        groups.setdefault(c.group, []).append(i)
    want = min(n, len(cases))
    picked: list[int] = []
    depth = 0
    while len(picked) < want:
        left = [g for g in groups.values() if depth < len(g)]
        picked += [g[depth] for g in spread_evenly(left, want - len(picked))]
        depth += 1
    return sorted(picked)


def crosscheck(
    cases: Sequence[Answered],
    engine: str,
    reference: Any,  # a Decoder (evaluation/engines.py)
    *,
    per_variant: int,
    max_new_tokens: int,
    batch_size: int,
    variants: Sequence[str] = ("base", "tuned"),
) -> dict[str, Any]:
    """`per_variant` sampled cases answered by `reference` for each variant, against `engine`'s answers."""
    started = time.perf_counter()
    idx = sample(cases, per_variant)
    picked = [cases[i] for i in idx]
    out: dict[str, Any] = {"engine": engine, "reference": reference.engine, "variants": {}, "differences": []}
    for variant in variants:
        picked_v = [c for c in picked if variant in c.answers]
        gens = reference.generate(
            [c.prompt for c in picked_v],
            variant=variant,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
        )
        same = same_verdict = 0
        for case, theirs in zip(picked_v, gens, strict=True):
            ours = case.answers[variant]
            ours_passed, theirs_passed = case.score(ours), case.score(theirs)
            same += ours.text == theirs.text
            same_verdict += ours_passed == theirs_passed
            if ours.text != theirs.text:
                out["differences"].append(
                    {
                        "case_id": case.case_id,
                        "task": case.group,
                        "variant": variant,
                        engine: {"output": ours.text[:ANSWER_CHARS], "passed": ours_passed},
                        reference.engine: {"output": theirs.text[:ANSWER_CHARS], "passed": theirs_passed},
                    }
                )
        out["variants"][variant] = {"cases": len(picked_v), "same": same, "same_verdict": same_verdict}
    rows = out["variants"].values()
    out["cases"] = sum(r["cases"] for r in rows)
    out["same"] = sum(r["same"] for r in rows)
    out["same_verdict"] = sum(r["same_verdict"] for r in rows)
    out["sample"] = [{"case_id": c.case_id, "task": c.group} for c in picked]
    out["seconds"] = round(time.perf_counter() - started, 2)
    return out
