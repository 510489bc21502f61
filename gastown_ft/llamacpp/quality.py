"""What a GGUF file scores on held-out examples: the mean loss on the assistant's tokens, through llama.cpp.

The sequences are encoded as training encodes them (`training.data.encode_example`: the chat template,
loss only on what the assistant writes), so the number is the same held-out loss the evaluation reports,
here computed by llama.cpp on the file operators actually run; measuring model.gguf and each quantized
copy on the same sequences gives the quality each quantization costs. Kept cheap: 8 sequences of at most
256 tokens (one prompt pass each, sharing their openings; no generation): about 1,500 tokens a file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

IGNORE_INDEX = -100


def heldout_sequences(
    examples: Sequence[dict[str, Any]], tokenizer, *, max_seq_len: int = 256, limit: int = 8
) -> list[dict[str, list[int]]]:
    """Up to `limit` examples (evenly spread over the list) encoded for scoring."""
    from gastown_ft.training.data import encode_example

    if len(examples) > limit:
        step = (len(examples) - 1) / max(1, limit - 1)
        examples = [examples[round(i * step)] for i in range(limit)]
    out = []
    for ex in examples:
        seq = encode_example(ex, tokenizer, max_seq_len)
        if seq and any(x != IGNORE_INDEX for x in seq["labels"][1:]):
            out.append({"input_ids": list(seq["input_ids"]), "labels": list(seq["labels"])})
    return out


def _log_softmax_at(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    top = logits.max(axis=1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    return logits[np.arange(len(targets)), targets] - lse


def gguf_heldout_loss(
    path: Path | str, sequences: Sequence[dict[str, list[int]]], *, threads: int | None = None
) -> dict[str, Any]:
    """{"loss", "perplexity", "tokens", "examples"} of the GGUF at `path` on `sequences`."""
    import llama_cpp

    from gastown_ft.llamacpp.runtime import close, decode_threads, unavailable

    if unavailable() or not sequences:
        return {"loss": None, "perplexity": None, "tokens": 0, "examples": 0}
    n_ctx = max(len(s["input_ids"]) for s in sequences)
    threads = decode_threads(path, threads)
    llm = llama_cpp.Llama(
        model_path=str(path),
        n_ctx=n_ctx,
        n_batch=n_ctx,
        n_threads=threads,
        n_threads_batch=threads,
        logits_all=True,  # the logits at every position; n_ctx is kept to the longest sequence
        verbose=False,
    )
    total, count = 0.0, 0
    previous: list[int] = []
    try:
        # In token order, so that each sequence reuses the KV cache of the opening (system prompt,
        # tools) it shares with the one before; the logits there stay those already computed.
        for seq in sorted(sequences, key=lambda s: s["input_ids"]):
            ids = seq["input_ids"]
            labels = np.asarray(seq["labels"][1:])
            keep = labels != IGNORE_INDEX
            shared = 0
            while shared < min(len(ids) - 1, len(previous)) and ids[shared] == previous[shared]:
                shared += 1
            llm.n_tokens = shared  # eval() drops the cache past here and reads the rest
            llm.eval(ids[shared:])
            previous = ids
            logits = np.asarray(llm.scores[: len(ids) - 1])  # position i predicts token i + 1
            logp = _log_softmax_at(logits[keep], labels[keep])
            total -= float(logp.sum())
            count += int(keep.sum())
    finally:
        close(llm)
    loss = total / count if count else float("nan")
    return {
        "loss": round(loss, 5),
        "perplexity": round(math.exp(min(loss, 50.0)), 4),
        "tokens": count,
        "examples": len(sequences),
    }
