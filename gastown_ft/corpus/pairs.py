"""Build the instruction pairs from scrubbed documents: every builder, the grammar check, sampling
weights, then exact/near dedup and conflict resolution.

Plain Python; the `instruction_pairs` asset is a thin wrapper around `build_instruction_pairs`.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from gastown_ft.config import CorpusConfig
from gastown_ft.corpus.dedup import dedup_examples
from gastown_ft.corpus.examples import example_tokens
from gastown_ft.corpus.grammar import extract_commands, validate_command
from gastown_ft.corpus.pairs_beads import build_bead_examples
from gastown_ft.corpus.pairs_conventions import build_convention_examples
from gastown_ft.corpus.pairs_formulas import build_formula_examples
from gastown_ft.corpus.pairs_transcripts import build_transcript_examples

log = logging.getLogger(__name__)


@dataclass
class PairsReport:
    by_task: Counter = field(default_factory=Counter)
    by_role: Counter = field(default_factory=Counter)
    built: int = 0
    invalid_commands: Counter = field(default_factory=Counter)  # by task: examples left out
    invalid_examples: list[dict[str, Any]] = field(default_factory=list)  # a few, for the report
    over_budget: Counter = field(default_factory=Counter)  # by task: examples longer than max_tokens
    dedup: dict[str, int] = field(default_factory=dict)
    conflicts: list[dict[str, Any]] = field(default_factory=list)


# Answers repeat across examples (the same step text, the same authored formula): parse each once.
@lru_cache(maxsize=16384)
def _commands_in(text: str) -> tuple[str, ...]:
    return tuple(extract_commands(text)) if ("gt" in text or "bd" in text) else ()


@lru_cache(maxsize=65536)
def _command_ok(command: str) -> bool:
    return validate_command(command).ok


def answer_commands(example: dict[str, Any]) -> list[str]:
    """The gt/bd commands the assistant turns write: tool calls and text alike."""
    found: list[str] = []
    for m in example["messages"]:
        if m["role"] != "assistant":
            continue
        found += _commands_in(m.get("content") or "")
        for c in m.get("tool_calls") or []:
            try:
                args = json.loads(c["function"]["arguments"])
            except ValueError:
                continue
            cmd = args.get("command") if isinstance(args, dict) else None
            if isinstance(cmd, str):
                found += _commands_in(f"```bash\n{cmd}\n```")
    return found


def invalid_answer_commands(example: dict[str, Any]) -> list[str]:
    return [c for c in answer_commands(example) if not _command_ok(c)]


def build_instruction_pairs(
    rows_by_source: dict[str, Iterable[dict[str, Any]]], cfg: CorpusConfig
) -> tuple[list[dict[str, Any]], PairsReport]:
    report = PairsReport()
    weights = dict(cfg.task_weights)
    produced: list[dict[str, Any]] = []
    # Task weights are applied below for every task; the formula builder adds the critical boost.
    produced += build_formula_examples(rows_by_source.get("formulas", []), critical_boost=cfg.critical_boost)
    produced += build_bead_examples(rows_by_source.get("beads", []), machinery=cfg.machinery)
    produced += build_convention_examples(rows_by_source.get("conventions", []))
    produced += build_transcript_examples(
        rows_by_source.get("transcripts", []),
        max_tokens=cfg.max_tokens,
        include_low_quality=cfg.include_low_quality,
    )
    report.built = len(produced)
    checked: list[dict[str, Any]] = []
    for ex in produced:
        ex["weight"] = float(ex["weight"]) * float(weights.get(ex["task"], 1.0))
        if example_tokens(ex) > cfg.max_tokens:
            report.over_budget[ex["task"]] += 1
            continue
        bad = invalid_answer_commands(ex)
        if bad and cfg.drop_invalid_commands:
            report.invalid_commands[ex["task"]] += 1
            if len(report.invalid_examples) < 20:
                report.invalid_examples.append(
                    {"task": ex["task"], "group_id": ex["group_id"], "commands": bad[:3]}
                )
            continue
        checked.append(ex)
    result = dedup_examples(checked, threshold=cfg.dedup_threshold)
    report.dedup = result.counts()
    report.conflicts = result.conflicts
    kept = sorted(result.kept, key=lambda e: e["example_id"])
    for ex in kept:
        report.by_task[ex["task"]] += 1
        report.by_role[ex["role"] or "(none)"] += 1
    log.info(
        "pairs: built %d, invalid commands %s, dedup %s",
        report.built,
        dict(report.invalid_commands),
        report.dedup,
    )
    return kept, report
