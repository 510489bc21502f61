"""Examples to token ids with an exact label mask, packing, the per-epoch order, and the collate.

Tokenization is piecewise: `render_segments` cuts the rendered conversation into (text, trained)
pieces, each run of pieces with the same flag is tokenized on its own, and the ids are concatenated.
So a token never straddles the trained / untrained boundary and the label mask is exact: labels are
-100 on everything the prompt supplies (system, tools, user, tool results, the
`<|im_start|>assistant\\n` headers) and equal the ids on what the assistant writes, its tool calls and
its closing `<|im_end|>` (so the model learns to end its turn).

Piecewise versus whole-text tokenization. Every flag change in `render_segments` sits right after the
`\\n` of an `<|im_start|>assistant\\n` header or right after an `<|im_end|>` special token. Special
tokens are always cut out before the BPE runs, and a byte-level (GPT-2 style) pre-tokenizer puts a
newline followed by a letter, a digit, punctuation or a single space in its own pre-token. So for
ordinary turns the concatenated ids are exactly the ids of the whole rendered text
(`piecewise_matches_full_text` checks it; the tests hold it on real examples). They can differ only
when an assistant output starts with two or more whitespace characters: the whole text may then merge
the header's newline with them. The piecewise ids are the right ones to train on, because they are
what generation sees: the prompt is rendered up to `<|im_start|>assistant\\n`, tokenized on its own,
and the model continues from there.

Truncation keeps the start (system prompt, tools, the user's request) and cuts at the end; an example
with no trained token left is dropped (and counted in `EncodeStats`).

Packing (`pack`) puts several short examples into one row of at most `max_seq_len` tokens. Each row
carries `position_ids` that restart at 0 for every example: given position ids and no attention mask,
transformers' masking utilities detect the packed format and build a block-diagonal causal mask, so
examples in one row do not attend to each other (for the sdpa and eager attention implementations).
A model without that support would see cross-example attention; the loss mask stays exact either way.

Chaining (`chain_conversations`, `[training] chain_examples`) joins examples that share a system
prompt, tools and weight into one multi-turn conversation, so the long shared prefix is paid once.

Example weights. A corpus example carries a `weight` (3.0 for the rare critical formulas, the config's
task weights, ...; 1.0 when absent or null). Each encoded sequence keeps it as `weight`, a packed row
spreads it over its tokens as `loss_weights` (its examples may differ), and `collate` gives every
position its weight. The training loss counts an example of weight w like w copies of it
(`trained_weight` is the step's denominator); evaluation ignores the weights.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gastown_ft.training.chat_format import render_segments, sequence_prefix

IGNORE_INDEX = -100


def spread_evenly(items: Sequence[Any], n: int | None) -> list[Any]:
    """At most `n` of `items`, evenly spread (the first always), in their order; all when `n` is None."""
    items = list(items)
    if n is None or len(items) <= n:
        return items
    if n <= 1:
        return items[: max(0, n)]
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)]


def cap_per_task(examples: Sequence[dict[str, Any]], caps: dict[str, int]) -> list[dict[str, Any]]:
    """At most `caps[task]` examples of each named task, evenly spread; the rest kept; in order."""
    if not caps:
        return list(examples)
    by_task: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        by_task.setdefault(str(ex.get("task") or ""), []).append(i)
    keep = sorted(i for t, idx in by_task.items() for i in spread_evenly(idx, caps.get(t)))
    return [examples[i] for i in keep]


def spread_by_task(examples: Sequence[dict[str, Any]], n: int | None) -> list[dict[str, Any]]:
    """At most `n` examples in all, shared out over their tasks as evenly as the counts allow and
    evenly spread within each task; a deterministic subset in the examples' own order."""
    if n is None or len(examples) <= n:
        return list(examples)
    by_task: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        by_task.setdefault(str(ex.get("task") or ""), []).append(i)
    quota = {t: 0 for t in by_task}
    left = n
    while left > 0:  # one more for each task that has some left, smallest tasks first
        open_tasks = sorted(
            (t for t in by_task if quota[t] < len(by_task[t])), key=lambda t: (len(by_task[t]), t)
        )
        if not open_tasks:
            break
        for t in open_tasks[:left]:
            quota[t] += 1
        left = n - sum(quota.values())
    keep = sorted(i for t, idx in by_task.items() for i in spread_evenly(idx, quota[t]))
    return [examples[i] for i in keep]


def _example(example: dict[str, Any]) -> dict[str, Any]:
    """The example row, also from a record read back from Parquet (tools as a JSON string)."""
    if isinstance(example.get("tools"), str):
        from gastown_ft.corpus.splits import example_from_record

        return example_from_record(example)
    return example


def _runs(example: dict[str, Any], tokenizer) -> list[tuple[str, bool]]:
    """render_segments with adjacent pieces of the same flag joined (their boundaries are at special
    tokens, so joining them changes no token)."""
    example = _example(example)
    runs: list[tuple[str, bool]] = []
    segments = render_segments(
        example["messages"], example.get("tools") or None, bos=sequence_prefix(tokenizer)
    )
    for text, trained in segments:
        if not text:
            continue
        if runs and runs[-1][1] == trained:
            runs[-1] = (runs[-1][0] + text, trained)
        else:
            runs.append((text, trained))
    return runs


def example_weight(example: dict[str, Any]) -> float:
    """The example's training weight: its `weight` column, 1.0 when absent or null."""
    w = example.get("weight")
    if w is None:
        return 1.0
    w = float(w)
    if not math.isfinite(w) or w < 0:
        raise ValueError(f"example {example.get('example_id')!r} has weight {w}: it must be finite and >= 0")
    return w


def _encode_untruncated(example: dict[str, Any], tokenizer) -> tuple[list[int], list[int]]:
    runs = _runs(example, tokenizer)
    if not runs:
        return [], []
    pieces = tokenizer([t for t, _ in runs], add_special_tokens=False, verbose=False)["input_ids"]
    input_ids: list[int] = []
    labels: list[int] = []
    for ids, (_text, trained) in zip(pieces, runs, strict=True):
        input_ids += ids
        labels += ids if trained else [IGNORE_INDEX] * len(ids)
    return input_ids, labels


def _truncate(
    input_ids: list[int], labels: list[int], max_seq_len: int, weight: float
) -> dict[str, Any] | None:
    input_ids, labels = input_ids[:max_seq_len], labels[:max_seq_len]
    if all(x == IGNORE_INDEX for x in labels):
        return None
    return {
        "input_ids": input_ids,
        "labels": labels,
        "attention_mask": [1] * len(input_ids),
        "weight": weight,
    }


def _chain_key(example: dict[str, Any]) -> str | None:
    """What chained examples must share: the system prompt and the weight (tools: see `_tools_key`)."""
    msgs = example.get("messages") or []
    if not msgs or msgs[0].get("role") != "system":
        return None
    return json.dumps([msgs[0].get("content"), example_weight(example)], sort_keys=True)


def _tools_key(example: dict[str, Any]) -> str | None:
    tools = example.get("tools") or None
    return json.dumps(tools, sort_keys=True) if tools else None


def _prefix_tokens(example: dict[str, Any], tokenizer) -> int:
    """Tokens of the example's sequence prefix, system prompt and tools (what a chained turn saves)."""
    head = {"messages": example["messages"][:1], "tools": example.get("tools")}
    text = "".join(t for t, _ in _runs(head, tokenizer))
    return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def _opening_tokens(example: dict[str, Any], tokenizer, cache: dict[tuple[str, str | None], int]) -> int:
    """Tokens of the example's opening (BOS, system prompt and tools: what examples of one role share);
    0 without a system prompt. Cached per (system prompt, tools)."""
    msgs = example.get("messages") or []
    if not msgs or msgs[0].get("role") != "system":
        return 0
    key = (str(msgs[0].get("content")), _tools_key(example))
    if key not in cache:
        cache[key] = _prefix_tokens(example, tokenizer)
    return cache[key]


def chain_conversations(
    examples: Sequence[dict[str, Any]], tokenizer, max_seq_len: int, max_examples: int
) -> list[dict[str, Any]]:
    """Examples that share a system prompt, tools and weight, chained into multi-turn conversations of
    at most `max_examples` requests and `max_seq_len` tokens; the rest as they are.

    Why: in a command example the system prompt and the tool schema are ~190 of ~280 tokens, and every
    example pays for them again. Chained, a conversation pays once, so an epoch costs about half the
    compute, and the model sees several requests in one session, as an operator's session has them.
    Every assistant turn stays trained; the first request of each chain is still a one-turn prompt, like
    the evaluation's. An example without tools may join a chain that offers them (an agent with a Bash
    tool still answers questions in words); two different tool sets never share a chain. Chains are formed in a fixed pseudo-random order (a hash of each example's id),
    so neighbours are unrelated requests and the result is deterministic."""
    if max_examples <= 1:
        return list(examples)
    out: list[dict[str, Any]] = []
    groups: dict[str, list[tuple[str, dict[str, Any], int]]] = {}
    prefix: dict[tuple[str, str | None], int] = {}  # (key, tools) -> prefix tokens
    for raw in examples:
        ex = _example(raw)
        key = _chain_key(ex)
        if key is None:
            out.append(ex)
            continue
        order = hashlib.sha256(str(ex.get("example_id") or json.dumps(ex["messages"])).encode()).hexdigest()
        groups.setdefault(key, []).append((order, ex, len(_encode_untruncated(ex, tokenizer)[0])))
        for tk in {_tools_key(ex), None}:
            if (key, tk) not in prefix:
                head = {"messages": ex["messages"][:1], "tools": json.loads(tk) if tk else None}
                prefix[(key, tk)] = _prefix_tokens(head, tokenizer)
    for key in sorted(groups):
        members = sorted(groups[key], key=lambda m: m[0])
        chain: list[dict[str, Any]] = []
        tools: str | None = None
        size = 0
        for _order, ex, n in members:
            own = _tools_key(ex)
            # A member's own prefix is dropped; a tool-less chain joined by a tool user gains the schema.
            extra = n - prefix[(key, own)]
            gain = prefix[(key, own)] - prefix[(key, None)] if own is not None and tools is None else 0
            clash = own is not None and tools is not None and own != tools
            if chain and (len(chain) >= max_examples or size + extra + gain > max_seq_len or clash):
                out.append(_chained(chain, tools))
                chain, size, tools = [], 0, None
            if not chain:
                chain, size, tools = [ex], n, own
            else:
                chain.append(ex)
                size += extra + gain
                tools = tools or own
        if chain:
            out.append(_chained(chain, tools))
    return out


def _chained(chain: list[dict[str, Any]], tools: str | None) -> dict[str, Any]:
    if len(chain) == 1:
        return chain[0]
    first = chain[0]
    messages = list(first["messages"])
    for ex in chain[1:]:
        messages += ex["messages"][1:]
    return {
        **first,
        "tools": json.loads(tools) if tools else None,
        "messages": messages,
        "example_id": "+".join(str(ex.get("example_id")) for ex in chain),
        "task": "+".join(sorted({str(ex.get("task")) for ex in chain})),
        "chained": len(chain),
    }


def encode_example(example: dict[str, Any], tokenizer, max_seq_len: int) -> dict[str, Any] | None:
    """input_ids, labels (-100 where not trained), attention_mask and the example's weight, cut to
    `max_seq_len` at the end; None when no trained token is left (the example is dropped)."""
    return _truncate(*_encode_untruncated(example, tokenizer), max_seq_len, example_weight(example))


def full_text_ids(example: dict[str, Any], tokenizer) -> list[int]:
    """The ids of the whole rendered conversation, tokenized in one go."""
    text = "".join(t for t, _ in _runs(example, tokenizer))
    return tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]


def piecewise_matches_full_text(example: dict[str, Any], tokenizer) -> bool:
    """Whether the piecewise ids (untruncated) equal the ids of the whole rendered text."""
    return _encode_untruncated(example, tokenizer)[0] == full_text_ids(example, tokenizer)


@dataclass
class EncodeStats:
    examples: int = 0
    kept: int = 0
    dropped: int = 0  # no trained token left after truncation (or no assistant turn at all)
    truncated: int = 0  # kept, but cut at max_seq_len
    tokens: int = 0  # tokens of the kept sequences
    trained_tokens: int = 0  # of which carry a label
    longest: int = 0
    lengths: list[int] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if k != "lengths"}


def encode_examples(
    examples: Iterable[dict[str, Any]], tokenizer, max_seq_len: int
) -> tuple[list[dict[str, list[int]]], EncodeStats]:
    """Encode many examples; the dropped ones are left out and counted."""
    out: list[dict[str, list[int]]] = []
    stats = EncodeStats()
    openings: dict[tuple[str, str | None], int] = {}
    for example in examples:
        stats.examples += 1
        input_ids, labels = _encode_untruncated(example, tokenizer)
        enc = _truncate(input_ids, labels, max_seq_len, example_weight(example))
        if enc is None:
            stats.dropped += 1
            continue
        opening = _opening_tokens(_example(example), tokenizer, openings)
        if opening:
            enc["prefix_len"] = min(opening, len(enc["input_ids"]))
        n = len(enc["input_ids"])
        if len(input_ids) > n:
            stats.truncated += 1
        stats.kept += 1
        stats.tokens += n
        stats.trained_tokens += sum(1 for x in enc["labels"] if x != IGNORE_INDEX)
        stats.longest = max(stats.longest, n)
        stats.lengths.append(n)
        out.append(enc)
    return out, stats


def pack(sequences: Sequence[dict[str, list[int]]], max_seq_len: int) -> list[dict[str, list[int]]]:
    """Pack encoded sequences into rows of at most `max_seq_len` tokens (first fit, longest first;
    deterministic for a given input order). Each row has input_ids, labels, attention_mask,
    position_ids restarting at 0 for every example (see the module docstring on attention) and
    loss_weights, each example's weight on each of its tokens."""
    order = sorted(range(len(sequences)), key=lambda i: (-len(sequences[i]["input_ids"]), i))
    rows: list[list[int]] = []
    free: list[int] = []
    for i in order:
        n = len(sequences[i]["input_ids"])
        if n > max_seq_len:
            raise ValueError(f"sequence {i} has {n} tokens, more than max_seq_len={max_seq_len}")
        for r, room in enumerate(free):
            if n <= room:
                rows[r].append(i)
                free[r] -= n
                break
        else:
            rows.append([i])
            free.append(max_seq_len - n)
    packed = []
    for members in rows:
        row: dict[str, list] = {
            "input_ids": [],
            "labels": [],
            "attention_mask": [],
            "position_ids": [],
            "loss_weights": [],
        }
        for i in members:
            seq = sequences[i]
            row["input_ids"] += seq["input_ids"]
            row["labels"] += seq["labels"]
            row["attention_mask"] += [1] * len(seq["input_ids"])
            row["position_ids"] += list(range(len(seq["input_ids"])))
            row["loss_weights"] += token_weights(seq)
        packed.append(row)
    return packed


def epoch_order(n: int, epoch: int, seed: int) -> list[int]:
    """A permutation of range(n) that depends only on (n, epoch, seed): index i sorts by
    sha256(f"{seed}:{epoch}:{i}"), which no library version changes. A resumed run recomputes it and
    sees exactly the same batches."""

    def key(i: int) -> bytes:
        return hashlib.sha256(f"{seed}:{epoch}:{i}".encode()).digest()

    return sorted(range(n), key=key)


GROUP_BATCHES = 16  # batches of one length-sorted window


def _shuffled_batches(batches: list[list[int]], epoch: int, seed: int, batch_size: int) -> list[int]:
    """The batches in a seeded order, flattened; a short batch goes last, so that cutting the flat
    order every `batch_size` rows (as the trainer does) gives back exactly these batches."""
    full = [b for b in batches if len(b) == batch_size]
    short = [b for b in batches if len(b) != batch_size]
    shuffled = epoch_order(len(full), epoch, seed + 1)
    return [i for b in shuffled for i in full[b]] + [i for b in short for i in b]


def grouped_order(
    lengths: Sequence[int], epoch: int, seed: int, batch_size: int, keys: Sequence[int] | None = None
) -> list[int]:
    """`epoch_order`, regrouped so that each batch holds examples of similar length (less padding).

    The shuffled order is cut into windows of GROUP_BATCHES batches; each window is sorted by length
    (by `keys` first when given: examples with the same opening, so that `share_prefixes` can merge
    the ones that land in one batch) and cut into batches, and the batches are shuffled again
    (seeded). Like `epoch_order` it depends only on its arguments, so a resumed run sees the same
    batches.

    Why windows and not all of an opening's examples in one batch: on the demo, batches drawn from one
    opening each (one role, so few tasks a batch) computed 1.65x fewer tokens than length-grouped ones,
    but the tuned model scored 27 of 57 suite cases against 31-32; windows keep batches mixed and still
    merge what one batch shares (1.35x fewer tokens)."""
    order = epoch_order(len(lengths), epoch, seed)
    window = batch_size * GROUP_BATCHES
    batches: list[list[int]] = []
    for k in range(0, len(order), window):
        if keys is None:
            chunk = sorted(order[k : k + window], key=lambda i: -lengths[i])
        else:
            chunk = sorted(order[k : k + window], key=lambda i: (keys[i], -lengths[i]))
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    return _shuffled_batches(batches, epoch, seed, batch_size)


def token_weights(row: dict[str, Any]) -> list[float]:
    """The loss weight of each token of an encoded sequence or packed row (1.0 when it has none)."""
    if "loss_weights" in row:
        return list(row["loss_weights"])
    return [float(row.get("weight", 1.0))] * len(row["input_ids"])


MIN_SHARED_PREFIX = 8  # a shorter common opening is not worth a merged row


def _shareable_opening(seq: dict[str, Any]) -> int:
    """The length of the sequence's opening that may be shared, 0 when none: an unpacked sequence
    whose opening carries no label and is followed by at least one token that carries none either
    (each merged example's first own token is then predicted by no trained position)."""
    p = int(seq.get("prefix_len") or 0)
    if p < MIN_SHARED_PREFIX or "position_ids" in seq or len(seq["input_ids"]) <= p:
        return 0
    if any(x != IGNORE_INDEX for x in seq["labels"][: p + 1]):
        return 0
    return p


def opening_keys(seqs: Sequence[dict[str, Any]]) -> list[int]:
    """One int per sequence, equal for sequences with the same shareable opening (first-seen order);
    distinct for a sequence with none. `grouped_order` batches equal keys together."""
    ids: dict[tuple[int, ...], int] = {}
    out = []
    for i, s in enumerate(seqs):
        p = _shareable_opening(s)
        key = tuple(s["input_ids"][:p]) if p else ("solo", i)
        out.append(ids.setdefault(key, len(ids)))  # type: ignore[arg-type]
    return out


def share_prefixes(seqs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sequences of one micro-batch with those that open alike merged: one row holds the opening
    once, then each sequence's own tokens (`spans` marks where each starts and ends). `collate` gives
    such a row a mask under which each sequence sees the opening and its own earlier tokens only, and
    positions that continue the opening, so every token's logits are what they are in its own
    sequence, and the loss and its gradient equal those of the unmerged batch (up to float rounding).

    Why: a command example's opening (system prompt and tool schema) is ~170 of ~300 tokens, and a
    batch of one role's examples computed it once per example. Sequences without a shareable
    opening, and openings seen once, stay as they are."""
    groups: dict[Any, list[int]] = {}
    for i, s in enumerate(seqs):
        p = _shareable_opening(s)
        groups.setdefault(tuple(s["input_ids"][:p]) if p else ("solo", i), []).append(i)
    rows: list[dict[str, Any]] = []
    for members in groups.values():
        if len(members) == 1:
            rows.append(seqs[members[0]])
            continue
        first = seqs[members[0]]
        p = _shareable_opening(first)
        row: dict[str, Any] = {
            "input_ids": list(first["input_ids"][:p]),
            "labels": list(first["labels"][:p]),
            "loss_weights": token_weights(first)[:p],
            "position_ids": list(range(p)),
            "spans": [],
            "example_tokens": 0,
        }
        for i in members:
            s = seqs[i]
            start = len(row["input_ids"])
            row["input_ids"] += s["input_ids"][p:]
            row["labels"] += s["labels"][p:]
            row["loss_weights"] += token_weights(s)[p:]
            row["position_ids"] += list(range(p, len(s["input_ids"])))
            row["spans"].append((start, len(row["input_ids"])))
            row["example_tokens"] += len(s["input_ids"])
        row["attention_mask"] = [1] * len(row["input_ids"])
        rows.append(row)
    return rows


def _shared_mask(batch: Sequence[dict[str, Any]], width: int):
    """(rows, 1, width, width) bool, True where a query position may attend to a key position: causal
    within each sequence, a merged row's examples each over the opening and their own span; a padding
    position attends to itself only (a row with no key at all would give NaN)."""
    import torch

    mask = torch.zeros(len(batch), 1, width, width, dtype=torch.bool)
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    for b, s in enumerate(batch):
        n = len(s["input_ids"])
        spans = s.get("spans")
        if not spans:
            mask[b, 0, :n, :n] = causal[:n, :n]
        else:
            p = spans[0][0]
            mask[b, 0, :p, :p] = causal[:p, :p]
            for start, end in spans:
                mask[b, 0, start:end, :p] = True
                mask[b, 0, start:end, start:end] = causal[: end - start, : end - start]
        idx = torch.arange(n, width)
        mask[b, 0, idx, idx] = True
    return mask


def collate(batch: Sequence[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Right-padded tensors: input_ids (pad_id), labels (-100), attention_mask (0), position_ids
    (packed rows keep theirs; padding continues the last count) and loss_weights (float32, 0 on the
    padding). `packed` says whether any row holds several examples (then pass position_ids and no
    attention mask to the model)."""
    import torch

    width = max(len(s["input_ids"]) for s in batch)
    ids, labels, mask, pos, weights = [], [], [], [], []
    packed = False
    for s in batch:
        n = len(s["input_ids"])
        pad = width - n
        ids.append(list(s["input_ids"]) + [pad_id] * pad)
        labels.append(list(s["labels"]) + [IGNORE_INDEX] * pad)
        mask.append([1] * n + [0] * pad)
        p = list(s.get("position_ids") or range(n))
        packed = packed or any(b != a + 1 for a, b in zip(p, p[1:], strict=False))
        start = p[-1] + 1 if p else 0
        pos.append(p + list(range(start, start + pad)))
        weights.append(token_weights(s) + [0.0] * pad)
    out = {
        "input_ids": torch.tensor(ids, dtype=torch.long),
        "labels": torch.tensor(labels, dtype=torch.long),
        "attention_mask": torch.tensor(mask, dtype=torch.long),
        "position_ids": torch.tensor(pos, dtype=torch.long),
        "loss_weights": torch.tensor(weights, dtype=torch.float32),
        "packed": packed,
        # the tokens of the examples themselves (a merged row's opening counts once per example)
        "example_tokens": sum(int(s.get("example_tokens") or len(s["input_ids"])) for s in batch),
    }
    if any(s.get("spans") for s in batch):
        out["shared_mask"] = _shared_mask(batch, width)
    return out


def trained_weight(batch: dict[str, Any]) -> float:
    """The summed loss weight of the positions a collated batch trains (each position predicts the next
    token; with every weight 1, the count of trained tokens): the denominator of the step's loss."""
    trained = batch["labels"][:, 1:] != IGNORE_INDEX
    # float64, so the count is exact and the same whichever way a step is split into shares
    return float(batch["loss_weights"][:, 1:].double()[trained].sum())


def sequences_fingerprint(sequences: Sequence[dict[str, Any]]) -> str:
    """sha256 over the ids, labels and weights of the sequences, in order. Weights of 1 are left out,
    so an unweighted corpus keeps the fingerprint it had before weights were read."""
    h = hashlib.sha256()
    for s in sequences:
        h.update(repr((s["input_ids"], s["labels"], s.get("position_ids"))).encode())
        weights = token_weights(s)
        if any(w != 1.0 for w in weights):
            h.update(repr(weights).encode())
    return h.hexdigest()
