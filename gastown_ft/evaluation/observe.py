"""Every generation of the evaluation goes through one decoder that watches it.

`ObservedDecoder` wraps the engine's decoder (engines.py) with the same `generate` /
`generate_variants` calls. The evaluation names what it is generating (`with decoder.part("safety")`,
with the arm where it is not the plain variant: "base+retrieval"); each call is handed, with its
prompts, answers, wall time and peak memory, to the observers: the canary watch (canary.py) and the
cost meter (cost.py). It also counts, per part and variant, the generations made and the prompts that
had to be cut to fit the context, so nothing is cut silently.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gastown_ft.evaluation.cost import PeakRss
from gastown_ft.evaluation.generate import Generation, Prompt


@dataclass
class Batch:
    """One decoder call for one variant: what was asked and what came back."""

    part: str  # task suite | generalization | patrol:<name> | episodes | safety | retrieval | crosscheck
    arm: str  # the variant, or the variant with what was added to its prompts ("base+retrieval")
    variant: str
    prompts: Sequence[Prompt]
    generations: Sequence[Generation]
    seconds: float  # wall time of the call (shared by the variants when they answered side by side)
    peak_rss_bytes: int | None  # this process's peak RSS during the call (None: not measurable here)


class Observer(Protocol):
    def observe(self, batch: Batch) -> None: ...


class ObservedDecoder:
    """A decoder (TransformersDecoder / LlamaCppDecoder) whose generations are seen by `observers`."""

    def __init__(self, decoder: Any, observers: Sequence[Observer] = (), rss: PeakRss | None = None) -> None:
        self.decoder = decoder
        self.observers = list(observers)
        self._part = "unnamed"
        self._arm_suffix = ""
        self.counts: dict[str, dict[str, Any]] = {}
        self._rss = rss or PeakRss()

    def __getattr__(self, name: str) -> Any:  # engine, fallback, variants(), close(), ...
        return getattr(self.decoder, name)

    @contextlib.contextmanager
    def part(self, name: str, arm_suffix: str = "") -> Iterator[None]:
        """Generations inside are reported as part `name`, each variant's arm as variant + suffix."""
        before = self._part, self._arm_suffix
        self._part, self._arm_suffix = name, arm_suffix
        try:
            yield
        finally:
            self._part, self._arm_suffix = before

    def generate(
        self,
        prompts: Sequence[Prompt],
        *,
        variant: str,
        max_new_tokens: int,
        batch_size: int,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[Generation]:
        self._rss.reset()
        started = time.perf_counter()
        gens = self.decoder.generate(
            prompts, variant=variant, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress
        )
        self._seen(variant, prompts, gens, time.perf_counter() - started)
        return gens

    def generate_variants(
        self, prompts: Sequence[Prompt], variants: Sequence[str], *, max_new_tokens: int, batch_size: int
    ) -> dict[str, list[Generation]]:
        self._rss.reset()
        started = time.perf_counter()
        out = self.decoder.generate_variants(
            prompts, variants, max_new_tokens=max_new_tokens, batch_size=batch_size
        )
        seconds = time.perf_counter() - started
        for v in variants:
            self._seen(v, prompts, out[v], seconds)
        return out

    def _seen(self, variant: str, prompts: Sequence[Prompt], gens: Sequence[Generation], seconds: float):
        batch = Batch(
            self._part, variant + self._arm_suffix, variant, prompts, gens, seconds, self._rss.peak()
        )
        row = self.counts.setdefault(self._part, {"generations": {}, "truncated": []})
        row["generations"][batch.arm] = row["generations"].get(batch.arm, 0) + len(gens)
        for i, (p, g) in enumerate(zip(prompts, gens, strict=True)):
            if g.truncated:
                row["truncated"].append(
                    {"arm": batch.arm, "case_id": p.case_id or f"#{i}", "prompt_tokens": g.prompt_tokens}
                )
        for o in self.observers:
            o.observe(batch)

    def record(self) -> dict[str, Any]:
        """results["generations"]: per part, the generations each arm made and the prompts that were cut
        to fit the context (each named), and the total."""
        total = sum(n for row in self.counts.values() for n in row["generations"].values())
        return {"parts": self.counts, "total": total}


def truncation_warnings(generations: dict[str, Any]) -> list[str]:
    """One warning per part whose prompts were cut to fit the model's context."""
    out = []
    for part, row in ((generations or {}).get("parts") or {}).items():
        cut = row.get("truncated") or []
        if cut:
            ids = sorted({c["case_id"] for c in cut})
            names = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
            out.append(
                f"{part}: {len(cut)} prompt(s) were cut to fit the model's context (their start was "
                f"dropped): {names}"
            )
    return out
