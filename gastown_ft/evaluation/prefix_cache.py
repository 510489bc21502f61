"""Batched greedy decoding that computes each shared opening once.

The evaluation's prompts open with one of a dozen system prompts and tool lists, often more than half
of each prompt. Prefilling every row of every batch repeats that work: on 2 cores it was most of the
task suite's time. Here each distinct opening (the longest token prefix a prompt shares with another
prompt of the same call) is run through the model once per variant; a batch then starts from those
keys and values, each row's opening left-padded to the batch's longest, and prefills only the rest of
each prompt:

    row:  [pad .. opening_r][pad .. rest_r]   mask 0 over the pads, 1 elsewhere

Positions come from the mask (`generate` counts the ones), so every token sits where it would sit in
the prompt alone; a row whose prompt was cut to fit the context, or whose opening nobody shares, has
an empty opening and prefills whole.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

MIN_SHARED = 16  # a shorter common opening saves less than the cache's bookkeeping costs


def opening_lengths(ids: Sequence[list[int]]) -> list[int]:
    """Per prompt, the longest token prefix it shares with any other prompt (its opening), or 0 when
    that is shorter than MIN_SHARED; at least one token is left to prefill. In lexicographic order a
    prompt's longest shared prefix is with one of its two neighbours."""
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    out = [0] * len(ids)
    for a, b in itertools.pairwise(order):
        shared = len(os.path.commonprefix([ids[a], ids[b]]))
        for i in (a, b):
            out[i] = max(out[i], min(shared, len(ids[i]) - 1))
    return [n if n >= MIN_SHARED else 0 for n in out]


class OpeningCache:
    """The keys and values of each opening, computed once for one model (one variant), and dropped
    once the last row that needs them is batched (a 300-token opening of a 135M model holds 7 MB)."""

    def __init__(self, model, rows: Sequence[list[int]], openings: Sequence[int]) -> None:
        self.model = model
        self._kv: dict[tuple[int, ...], list[tuple[Any, Any]]] = {}
        self._left = Counter(tuple(r[:n]) for r, n in zip(rows, openings, strict=True) if n)

    def _layers(self, opening: tuple[int, ...]) -> list[tuple[Any, Any]]:
        import torch

        kv = self._kv.get(opening)
        if kv is None:
            out = self.model(input_ids=torch.tensor([opening]), use_cache=True, logits_to_keep=1)
            kv = [(layer.keys, layer.values) for layer in out.cache.layers]
            self._kv[opening] = kv
        return kv

    def batch(self, rows: Sequence[list[int]], openings: Sequence[int], pad_id: int):
        """(input_ids, attention_mask, cache) for `generate`: each row's opening from the cache, the
        rest of it to prefill; rows are left-padded within both parts."""
        import torch
        from transformers import DynamicCache

        width_open = max(openings)
        width_rest = max(len(r) - n for r, n in zip(rows, openings, strict=True))
        ids, mask = [], []
        for r, n in zip(rows, openings, strict=True):
            rest = len(r) - n
            ids.append([pad_id] * (width_open - n) + r[:n] + [pad_id] * (width_rest - rest) + r[n:])
            mask.append([0] * (width_open - n) + [1] * n + [0] * (width_rest - rest) + [1] * rest)
        per_row = [self._layers(tuple(r[:n])) if n else None for r, n in zip(rows, openings, strict=True)]
        for r, n in zip(rows, openings, strict=True):
            key = tuple(r[:n])
            self._left[key] -= 1
            if n and self._left[key] <= 0:
                self._kv.pop(key, None)
        template = next(kv for kv in per_row if kv is not None)
        layers = []
        for li, (k0, v0) in enumerate(template):
            ks, vs = [], []
            for kv, n in zip(per_row, openings, strict=True):
                k, v = kv[li] if kv is not None else (k0[:, :, :0], v0[:, :, :0])
                pad = width_open - n
                if pad:
                    k = torch.cat([k.new_zeros(*k.shape[:2], pad, k.shape[3]), k], dim=2)
                    v = torch.cat([v.new_zeros(*v.shape[:2], pad, v.shape[3]), v], dim=2)
                ks.append(k)
                vs.append(v)
            layers.append((torch.cat(ks), torch.cat(vs)))
        return torch.tensor(ids), torch.tensor(mask), DynamicCache(layers, config=self.model.config)
