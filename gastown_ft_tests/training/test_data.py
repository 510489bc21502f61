"""Tokenization with an exact label mask, truncation, packing, the epoch order and the collate.

The helpers at the top (a quick byte-level BPE tokenizer with the chat template, a tiny random LLaMA
saved next to it, a few Gas Town chats) are shared with test_estimate.py and test_lora.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import PreTrainedTokenizerFast

from gastown_ft.corpus.examples import BASH_TOOL, assistant, make_example, tool_call, tool_result, user
from gastown_ft.corpus.splits import example_from_record, example_to_record
from gastown_ft.training.chat_format import (
    TURN_END,
    render,
)
from gastown_ft.training.data import (
    IGNORE_INDEX,
    chain_conversations,
    collate,
    encode_example,
    encode_examples,
    epoch_order,
    full_text_ids,
    pack,
    piecewise_matches_full_text,
    spread_by_task,
    spread_evenly,
    trained_weight,
)
from gastown_ft.training.tokenizer import train_tokenizer

# --- shared helpers ------------------------------------------------------------------------------

RIGS = ["ledger", "gastown", "beads"]
BEADS = ["gt-1", "gt-42", "bd-7", "hq-3"]


def chat(i: int) -> dict:
    """A short agent example with a tool call and its result (deterministic in i)."""
    rig, bead = RIGS[i % len(RIGS)], BEADS[i % len(BEADS)]
    command = ["bd show", "bd update", "gt hook", "gt done"][i % 4] + f" {bead}"
    return make_example(
        task="agent_turns",
        role="polecat",
        rig=rig,
        group_id=f"g{i}",
        source_ids=[f"s{i}"],
        tools=[BASH_TOOL],
        messages=[
            user(f"Work on {bead} in {rig}."),
            assistant(f"Running {command}.", [tool_call(f"c{i}", "Bash", {"command": command})]),
            tool_result(f"c{i}", f"{bead}: open, assigned to polecat {i}"),
            assistant(f"Done with {bead}."),
        ],
    )


def corpus_texts() -> list[str]:
    return [render(chat(i)["messages"], chat(i)["tools"]) for i in range(24)]


def make_tokenizer(vocab_size: int = 600) -> PreTrainedTokenizerFast:
    """The project's own tokenizer, trained on a few rendered chats."""
    return train_tokenizer(corpus_texts(), vocab_size)


def save_tiny_model(
    path: Path,
    tokenizer=None,
    *,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    intermediate: int | None = None,
    vocab: int | None = None,
    init_range: float = 0.02,
    seed: int = 0,
) -> Path:
    """A random LLaMA (and its tokenizer) saved with save_pretrained into `path`. A larger
    `init_range` than the default 0.02 gives logits a range that LoRA alone can sharpen quickly."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tokenizer or make_tokenizer()
    config = LlamaConfig(
        vocab_size=vocab or len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate or 2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids(TURN_END),
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        initializer_range=init_range,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


# --- tests ---------------------------------------------------------------------------------------


def _trained_text(enc, tokenizer) -> list[str]:
    """The trained spans, decoded one contiguous run at a time."""
    runs, cur = [], []
    for tid, lab in zip(enc["input_ids"], enc["labels"], strict=True):
        if lab != IGNORE_INDEX:
            assert lab == tid
            cur.append(tid)
        elif cur:
            runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    return [tokenizer.decode(r, skip_special_tokens=False) for r in runs]


def test_label_mask_is_exactly_the_assistant_outputs_and_their_end_of_turn(tokenizer):
    example = chat(1)
    enc = encode_example(example, tokenizer, max_seq_len=4096)
    assert _trained_text(enc, tokenizer) == [
        'Running bd update gt-42.\n<tool_call>\n{"name": "Bash", "arguments": {"command": "bd update gt-42"}}'
        "\n</tool_call>" + TURN_END,
        "Done with gt-42." + TURN_END,
    ]
    assert enc["attention_mask"] == [1] * len(enc["input_ids"])
    # The whole sequence decodes back to the rendered conversation, BOS first.
    assert tokenizer.decode(enc["input_ids"]) == render(example["messages"], example["tools"])
    assert enc["input_ids"][0] == tokenizer.bos_token_id
    # The <|im_end|> closing each assistant turn is trained; no other special token is.
    end = tokenizer.convert_tokens_to_ids(TURN_END)
    trained_specials = [t for t, lab in zip(enc["input_ids"], enc["labels"], strict=True) if lab == end]
    assert len(trained_specials) == 2


def test_piecewise_ids_equal_the_whole_text_ids(tokenizer):
    examples = [chat(i) for i in range(12)] + [
        make_example(
            task="t",
            group_id="x",
            source_ids=[],
            messages=[
                user("empty content, two calls"),
                assistant(
                    "",
                    [
                        tool_call("a", "Bash", {"command": "gt hook"}),
                        tool_call("b", "Bash", {"command": "bd ready"}),
                    ],
                ),
                tool_result("a", "ok"),
                tool_result("b", "none"),
                assistant(" leading space"),
            ],
        )
    ]
    for example in examples:
        assert piecewise_matches_full_text(example, tokenizer)
        assert encode_example(example, tokenizer, 4096)["input_ids"] == full_text_ids(example, tokenizer)
    # The documented exception: an output that starts with two whitespace characters can merge with
    # the header's newline in the whole text; the piecewise ids keep the header as the prompt ends.
    odd = make_example(task="t", group_id="y", source_ids=[], messages=[user("hi"), assistant("  indented")])
    enc = encode_example(odd, tokenizer, 4096)
    prompt = tokenizer(
        tokenizer.apply_chat_template(odd["messages"][:-1], tokenize=False, add_generation_prompt=True),
        add_special_tokens=False,
    )["input_ids"]
    assert enc["input_ids"][: len(prompt)] == prompt
    assert all(x == IGNORE_INDEX for x in enc["labels"][: len(prompt)])


def test_records_from_parquet_encode_like_examples(tokenizer):
    example = chat(3)
    record = example_to_record(example)
    assert isinstance(record["tools"], str)
    # The stored tools JSON has sorted keys, so the tools block renders in that order: compare with
    # the example read back, whose messages (and labels) are the same as the original's.
    back = example_from_record(record)
    assert back["tools"] == example["tools"]
    assert encode_example(record, tokenizer, 512) == encode_example(back, tokenizer, 512)
    assert _trained_text(encode_example(record, tokenizer, 512), tokenizer) == _trained_text(
        encode_example(example, tokenizer, 512), tokenizer
    )


def test_truncation_keeps_the_start_and_drops_examples_with_nothing_trained(tokenizer):
    example = chat(0)
    full = encode_example(example, tokenizer, 4096)
    n = len(full["input_ids"])
    first_trained = next(i for i, lab in enumerate(full["labels"]) if lab != IGNORE_INDEX)
    cut = encode_example(example, tokenizer, first_trained + 3)
    assert cut["input_ids"] == full["input_ids"][: first_trained + 3]
    assert cut["labels"] == full["labels"][: first_trained + 3]
    assert encode_example(example, tokenizer, first_trained) is None  # only the prompt fits

    seqs, stats = encode_examples([example, chat(1), chat(2)], tokenizer, first_trained + 3)
    assert stats.examples == 3 and stats.kept + stats.dropped == 3
    assert stats.truncated == stats.kept  # every kept one was cut
    seqs, stats = encode_examples([example], tokenizer, first_trained)
    assert (seqs, stats.dropped, stats.kept) == ([], 1, 0)
    seqs, stats = encode_examples([example], tokenizer, n)
    assert (stats.kept, stats.truncated, stats.tokens, stats.longest) == (1, 0, n, n)
    assert stats.trained_tokens == sum(1 for x in full["labels"] if x != IGNORE_INDEX)
    # An example without an assistant turn has nothing to learn.
    no_answer = make_example(task="t", group_id="z", source_ids=[], messages=[user("hello?")])
    assert encode_example(no_answer, tokenizer, 4096) is None


def test_pack_keeps_each_examples_ids_labels_and_restarts_positions(tokenizer):
    seqs, _ = encode_examples([chat(i) for i in range(10)], tokenizer, 4096)
    width = max(len(s["input_ids"]) for s in seqs) * 3
    rows = pack(seqs, width)
    assert len(rows) < len(seqs)
    assert all(len(r["input_ids"]) <= width for r in rows)
    # Cut every row at its position resets: the pieces are exactly the input sequences.
    pieces = []
    for r in rows:
        starts = [i for i, p in enumerate(r["position_ids"]) if p == 0] + [len(r["input_ids"])]
        assert len(r["labels"]) == len(r["input_ids"]) == len(r["attention_mask"])
        for a, b in zip(starts, starts[1:], strict=False):
            pieces.append((tuple(r["input_ids"][a:b]), tuple(r["labels"][a:b])))
    assert sorted(pieces) == sorted((tuple(s["input_ids"]), tuple(s["labels"])) for s in seqs)
    assert pack(seqs, width) == rows  # deterministic
    with pytest.raises(ValueError):
        pack(seqs, 8)


def test_epoch_order_is_a_deterministic_permutation_per_epoch():
    a = epoch_order(50, 0, seed=1)
    assert sorted(a) == list(range(50))
    assert a == epoch_order(50, 0, seed=1)
    assert a != epoch_order(50, 1, seed=1)
    assert a != epoch_order(50, 0, seed=2)
    assert epoch_order(0, 0, 0) == []
    # Pinned: no library version may change the order a resumed run relies on.
    assert epoch_order(5, 0, seed=0) == [4, 1, 2, 3, 0]
    assert epoch_order(8, 3, seed=42) == [0, 3, 6, 5, 1, 4, 7, 2]


def test_collate_pads_right_with_pad_id_and_ignored_labels(tokenizer):
    seqs, _ = encode_examples([chat(0), chat(5)], tokenizer, 4096)
    batch = collate(seqs, tokenizer.pad_token_id)
    width = max(len(s["input_ids"]) for s in seqs)
    assert batch["input_ids"].shape == batch["labels"].shape == (2, width)
    for row, s in enumerate(seqs):
        n = len(s["input_ids"])
        assert batch["input_ids"][row, :n].tolist() == s["input_ids"]
        assert batch["input_ids"][row, n:].tolist() == [tokenizer.pad_token_id] * (width - n)
        assert batch["labels"][row, n:].tolist() == [IGNORE_INDEX] * (width - n)
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (width - n)
        assert batch["position_ids"][row].tolist() == list(range(width))
    assert batch["packed"] is False
    rows = pack(seqs, 4096)
    assert collate(rows, tokenizer.pad_token_id)["packed"] is True


def test_grouped_order_is_a_stable_permutation_with_less_padding():
    import random

    from gastown_ft.training.data import epoch_order, grouped_order

    rng = random.Random(3)
    lengths = [rng.randrange(20, 600) for _ in range(301)]
    order = grouped_order(lengths, 0, 7, 8)
    assert sorted(order) == list(range(301))
    assert order == grouped_order(lengths, 0, 7, 8)  # a resumed run sees the same batches
    assert order != grouped_order(lengths, 1, 7, 8)

    def padded(o):
        return sum(len(o[k : k + 8]) * max(lengths[i] for i in o[k : k + 8]) for k in range(0, len(o), 8))

    assert padded(order) < 0.8 * padded(epoch_order(301, 0, 7))


def test_grouped_order_with_openings_puts_them_side_by_side_in_each_window():
    import random

    from gastown_ft.training.data import GROUP_BATCHES, grouped_order

    rng = random.Random(5)
    keys = [rng.randrange(6) for _ in range(203)]
    lengths = [rng.randrange(20, 600) for _ in range(203)]
    order = grouped_order(lengths, 0, 7, 4, keys)
    assert sorted(order) == list(range(203))
    assert order == grouped_order(lengths, 0, 7, 4, keys)  # a resumed run sees the same batches
    assert order != grouped_order(lengths, 1, 7, 4, keys)
    batches = [order[k : k + 4] for k in range(0, len(order), 4)]
    assert all(len(b) == 4 for b in batches[:-1])  # the short batch is last, so the cuts line up
    single = sum(1 for b in batches if len({keys[i] for i in b}) == 1)
    plain = grouped_order(lengths, 0, 7, 4)
    single_plain = sum(1 for k in range(0, 203, 4) if len({keys[i] for i in plain[k : k + 4]}) == 1)
    assert single > 2 * max(1, single_plain)  # far more batches share their opening...
    assert single < len(batches)  # ...while a window's openings still mix (GROUP_BATCHES batches each)
    assert GROUP_BATCHES * 4 < 203


def test_encoded_examples_know_their_opening(tokenizer):
    from gastown_ft.training.data import opening_keys

    seqs, _ = encode_examples([chat(0), chat(3), chat(1)], tokenizer, 4096)
    keys = opening_keys(seqs)
    assert keys[0] == keys[1] != keys[2]  # chats 0 and 3: one rig; chat 1: another
    p = seqs[0]["prefix_len"]
    assert seqs[0]["input_ids"][:p] == seqs[1]["input_ids"][:p]
    assert tokenizer.decode(seqs[0]["input_ids"][:p]).rstrip().endswith("<|im_end|>")
    assert all(x == -100 for x in seqs[0]["labels"][: p + 1])


def test_the_weight_column_reaches_every_trained_token_packed_or_not(tokenizer):
    heavy = {**chat(0), "weight": 3.0}
    unweighted = {k: v for k, v in chat(1).items() if k != "weight"}
    null = {**chat(2), "weight": None}
    seqs, _ = encode_examples([heavy, unweighted, null], tokenizer, 4096)
    assert [s["weight"] for s in seqs] == [3.0, 1.0, 1.0]  # absent or null: 1
    # A record read back from Parquet keeps it.
    assert encode_example(example_to_record(heavy), tokenizer, 4096)["weight"] == 3.0
    with pytest.raises(ValueError, match="weight"):
        encode_example({**chat(0), "weight": -1.0}, tokenizer, 4096)

    def trained(s):  # positions predicting a trained token (position 0 predicts nothing)
        return sum(1 for x in s["labels"][1:] if x != IGNORE_INDEX)

    batch = collate(seqs[:2], tokenizer.pad_token_id)
    n0, n1 = len(seqs[0]["input_ids"]), len(seqs[1]["input_ids"])
    width = max(n0, n1)
    assert batch["loss_weights"][0].tolist() == [3.0] * n0 + [0.0] * (width - n0)
    assert batch["loss_weights"][1].tolist() == [1.0] * n1 + [0.0] * (width - n1)
    assert trained_weight(batch) == 3 * trained(seqs[0]) + trained(seqs[1])

    # Packed: each example's tokens keep its own weight, wherever it lands in a row.
    rows = pack(seqs, 4096)
    assert len(rows) == 1
    row = rows[0]
    starts = [i for i, p in enumerate(row["position_ids"]) if p == 0] + [len(row["input_ids"])]
    pieces = {
        tuple(row["input_ids"][a:b]): set(row["loss_weights"][a:b])
        for a, b in zip(starts, starts[1:], strict=False)
    }
    assert pieces == {tuple(s["input_ids"]): {s["weight"]} for s in seqs}
    packed = collate(rows, tokenizer.pad_token_id)
    assert trained_weight(packed) == 3 * trained(seqs[0]) + trained(seqs[1]) + trained(seqs[2])


def _text_answer(i: int, rig: str = "ledger") -> dict:
    """A question answered in words, without tools (same system prompt as chat(i) when rigs match)."""
    return make_example(
        task="bead_deps",
        role="polecat",
        rig=rig,
        group_id=f"t{i}",
        source_ids=[f"t{i}"],
        messages=[user(f"What blocks gt-{i}?"), assistant(f"Nothing blocks gt-{i}.")],
    )


def test_chaining_joins_examples_of_one_system_prompt_and_keeps_every_trained_token(tokenizer):
    examples = [chat(i) for i in range(12)] + [_text_answer(i) for i in range(4)]
    alone, _ = encode_examples(examples, tokenizer, 4096)
    chained = chain_conversations(examples, tokenizer, 4096, 4)
    seqs, stats = encode_examples(chained, tokenizer, 4096)
    # Fewer, longer conversations; fewer tokens in all, the same trained tokens (each turn still trained).
    assert len(chained) < len(examples)
    assert sum(len(s["input_ids"]) for s in seqs) < sum(len(s["input_ids"]) for s in alone)
    trained = lambda ss: sorted(  # noqa: E731
        tokenizer.decode([t for t in s["labels"] if t != IGNORE_INDEX]) for s in ss
    )
    assert "".join(trained(seqs)).count(TURN_END) == "".join(trained(alone)).count(TURN_END)
    for conv in chained:
        msgs = conv["messages"]
        assert [m["role"] for m in msgs].count("system") == 1 and msgs[0]["role"] == "system"
        assert conv.get("chained", 1) <= 4
        by_id = {e["example_id"]: e for e in examples}
        members = [by_id[i] for i in conv["example_id"].split("+")] if conv.get("chained") else [conv]
        assert len(members) == conv.get("chained", 1)
        assert {e["messages"][0]["content"] for e in members} == {msgs[0]["content"]}
        # every member's turns appear, in order, after the one system prompt
        assert msgs[1:] == [m for e in members for m in e["messages"][1:]]
        if any(e["tools"] for e in members):
            assert conv["tools"] == [BASH_TOOL]  # a tool-less question may join a chain with tools
    # Different system prompts (rigs) never share a chain; the result is deterministic.
    assert chain_conversations(examples, tokenizer, 4096, 4) == chained
    assert chain_conversations(examples, tokenizer, 4096, 1) == examples


def test_chaining_respects_max_seq_len_and_weights(tokenizer):
    examples = [chat(3 * i) for i in range(8)]  # one rig: one system prompt
    one = len(encode_example(examples[0], tokenizer, 4096)["input_ids"])
    chained = chain_conversations(examples, tokenizer, int(one * 1.9), 8)
    seqs, stats = encode_examples(chained, tokenizer, int(one * 1.9))
    assert stats.truncated == 0 and all(len(s["input_ids"]) <= one * 1.9 for s in seqs)
    assert max(c.get("chained", 1) for c in chained) >= 2
    heavy = [dict(e, weight=3.0) if i % 2 else e for i, e in enumerate(examples)]
    for conv in chain_conversations(heavy, tokenizer, 4096, 8):
        ids = conv["example_id"].split("+")
        assert len({e["weight"] for e in heavy if e["example_id"] in ids}) == 1  # one weight a chain


def test_spread_evenly_keeps_the_ends_and_order():
    assert spread_evenly(list(range(10)), 4) == [0, 3, 6, 9]
    assert spread_evenly(list(range(3)), 5) == [0, 1, 2]
    assert spread_evenly(list(range(10)), None) == list(range(10))
    assert spread_evenly(list(range(10)), 1) == [0]


def test_spread_by_task_shares_the_cap_over_tasks_small_ones_first():
    examples = [{"task": "big", "i": i} for i in range(20)] + [{"task": "small", "i": i} for i in range(2)]
    examples += [{"task": "mid", "i": i} for i in range(6)]
    picked = spread_by_task(examples, 9)
    counts = {t: sum(1 for e in picked if e["task"] == t) for t in ("big", "small", "mid")}
    assert counts == {"big": 3, "small": 2, "mid": 4}
    assert picked == [e for e in examples if e in picked]  # the examples' own order
    assert [e["i"] for e in picked if e["task"] == "big"] == [0, 10, 19]
    assert spread_by_task(examples, 100) == examples
