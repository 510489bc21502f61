"""The byte-level BPE tokenizer: special tokens, round trips, the chat template, save/reload, determinism."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from gastown_ft.corpus.examples import BASH_TOOL, assistant, tool_call, tool_result, user
from gastown_ft.training.chat_format import (
    BOS,
    CHAT_TEMPLATE,
    EOS,
    PAD,
    SPECIAL_TOKENS,
    TURN_END,
    TURN_START,
    UNK,
    render,
)
from gastown_ft.training.tokenizer import train_tokenizer

VOCAB = 512


def demo_texts(town) -> list[str]:
    """CLAUDE.md and formula files of the demo town, in a stable order."""
    paths = sorted(
        p for p in town.root.rglob("*") if p.is_file() and (p.name == "CLAUDE.md" or ".formula." in p.name)
    )
    return [p.read_text(encoding="utf-8") for p in paths]


@pytest.fixture(scope="module")
def texts(demo_town) -> list[str]:
    return demo_texts(demo_town)


@pytest.fixture(scope="module")
def tok(texts):
    return train_tokenizer(iter(texts), VOCAB, model_max_length=512)  # a one-shot iterator: streamed


@pytest.fixture(scope="module")
def reloaded(tok, tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    tok.save_pretrained(out)
    return AutoTokenizer.from_pretrained(out)


SAMPLES = [
    "",
    "gt done",
    "bd create --title 'Fix the flaky test' --type bug --priority 1",
    "  leading spaces, trailing spaces  ",
    "tabs\tand\r\nCRLF\nand\n\n\nblank lines",
    "ünïcödé — “quotes” 日本語 🚀🔥",
    'json {"a": [1, 2.5, null], "b": "\\u00e9"}',
    f"{TURN_START}user\nhi{TURN_END}\n{BOS}{EOS}{PAD}{UNK}",
    "x<|im_start|>y<|im_end|>z <s> </s>",
    "\x00\x01 control bytes \x7f",
]

CONVERSATIONS = [
    [user("hi"), assistant("yo")],
    [
        {"role": "system", "content": "You are a polecat in rig `ledger`."},
        user("Claim gt-1"),
        assistant("Claiming.", [tool_call("c1", "Bash", {"command": "bd update gt-1 --claim"})]),
        tool_result("c1", "ok ünïcode"),
        assistant("Done."),
    ],
]


def test_special_tokens_are_ids_0_to_5_and_single_tokens(tok, reloaded):
    for t in (tok, reloaded):
        assert t.convert_tokens_to_ids(list(SPECIAL_TOKENS)) == list(range(len(SPECIAL_TOKENS)))
        for i, s in enumerate(SPECIAL_TOKENS):
            assert t(s, add_special_tokens=False)["input_ids"] == [i]
            ids = t(f"a{s}b", add_special_tokens=False)["input_ids"]
            assert i in ids and ids.count(i) == 1
        assert (t.bos_token, t.eos_token, t.pad_token, t.unk_token) == (BOS, EOS, PAD, UNK)
        assert {TURN_START, TURN_END} <= set(t.all_special_tokens)


@pytest.mark.parametrize("text", SAMPLES)
def test_text_round_trips(tok, reloaded, text):
    for t in (tok, reloaded):
        ids = t(text)["input_ids"]
        assert t.decode(ids) == text
        assert t.bos_token_id not in t(text.replace(BOS, ""))["input_ids"]  # nothing added implicitly


def test_reloaded_tokenizer_is_the_same(tok, reloaded):
    assert len(reloaded) == len(tok) <= VOCAB
    assert reloaded.get_vocab() == tok.get_vocab()
    text = "\n".join(SAMPLES)
    assert reloaded(text)["input_ids"] == tok(text)["input_ids"]
    assert reloaded.chat_template == CHAT_TEMPLATE
    assert reloaded.padding_side == "right"
    assert reloaded.model_max_length == 512
    batch = reloaded(["gt", "gt done and more"], padding=True)
    short = batch["input_ids"][0]
    assert short[-1] == reloaded.pad_token_id and batch["attention_mask"][0][-1] == 0


@pytest.mark.parametrize("messages", CONVERSATIONS)
@pytest.mark.parametrize("tools", [None, [BASH_TOOL]])
@pytest.mark.parametrize("gen", [False, True])
def test_chat_rendering_matches_chat_format(reloaded, messages, tools, gen):
    expected = render(messages, tools, add_generation_prompt=gen)
    text = reloaded.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=gen)
    assert text == expected
    ids = reloaded.apply_chat_template(messages, tools=tools, add_generation_prompt=gen, return_dict=True)[
        "input_ids"
    ]
    assert ids == reloaded(expected, add_special_tokens=False)["input_ids"]
    assert ids[0] == reloaded.bos_token_id and ids.count(reloaded.bos_token_id) == 1
    assert reloaded.decode(ids) == expected


def test_training_is_deterministic(texts, tok):
    again = train_tokenizer(texts, VOCAB, model_max_length=512)
    assert again.backend_tokenizer.to_str() == tok.backend_tokenizer.to_str()
    other = train_tokenizer(texts[::-1][:3], VOCAB, model_max_length=512)
    assert other.backend_tokenizer.to_str() != tok.backend_tokenizer.to_str()


def test_bigger_vocab_learns_more_merges(texts, tok):
    big = train_tokenizer(texts, 1024)
    assert len(tok) < len(big) <= 1024
    sample = "\n".join(texts[:3])
    assert len(big(sample)["input_ids"]) < len(tok(sample)["input_ids"])


def test_too_small_vocab_is_refused():
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(["hello"], 100)
