"""Held-out loss and perplexity on the test split, per task, for the loaded model.

Encoded exactly as training encodes (`training.data.encode_examples`: the chat template, loss on what
the assistant writes only, the same `max_seq_len`) and measured with the trainer's own
`evaluate_loss`, so the numbers are comparable with the validation curve of the training run.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from gastown_ft.training.data import IGNORE_INDEX, encode_examples, spread_evenly
from gastown_ft.training.lora import evaluate_loss


def encode_by_task(
    examples: Sequence[dict[str, Any]], tokenizer, max_seq_len: int, max_per_task: int
) -> dict[str, list[dict[str, list[int]]]]:
    """Encoded test examples per task (at most `max_per_task` each, evenly spread, deterministic)."""
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ex in examples:
        by_task[ex.get("task") or "unknown"].append(ex)
    out = {}
    for task in sorted(by_task):
        seqs, _stats = encode_examples(spread_evenly(by_task[task], max_per_task), tokenizer, max_seq_len)
        if seqs:
            out[task] = seqs
    return out


def _ppl(loss: float) -> float:
    return math.exp(min(loss, 50.0))


def heldout_losses(
    model, encoded: dict[str, list[dict[str, list[int]]]], pad_id: int, batch_size: int, autocast=None
) -> dict[str, Any]:
    """{"overall": {loss, perplexity, tokens, examples}, "tasks": {task: {...}}} (token-weighted)."""
    tasks: dict[str, dict[str, float]] = {}
    total_loss = total_tokens = total_examples = 0
    for task, seqs in encoded.items():
        loss = evaluate_loss(model, seqs, pad_id, batch_size, autocast)
        if loss is None:
            continue
        tokens = sum(1 for s in seqs for x in s["labels"][1:] if x != IGNORE_INDEX)
        tasks[task] = {"loss": loss, "perplexity": _ppl(loss), "tokens": tokens, "examples": len(seqs)}
        total_loss += loss * tokens
        total_tokens += tokens
        total_examples += len(seqs)
    overall_loss = total_loss / total_tokens if total_tokens else float("nan")
    return {
        "overall": {
            "loss": overall_loss,
            "perplexity": _ppl(overall_loss) if total_tokens else float("nan"),
            "tokens": total_tokens,
            "examples": total_examples,
        },
        "tasks": tasks,
    }
