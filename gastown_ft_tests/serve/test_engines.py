"""Engine choice and fallback, replies side by side, and quantized GGUF copies, on the tiny chat model.

The server's HTTP behaviour on both engines is in test_server.py; here the pieces underneath run in
process: `choose_engine`, `Engine` (with a client that stops reading in the middle of a reply, to
hold one generation slot), `quantize_gguf` and the held-out loss of each file.
"""

from __future__ import annotations

import shutil
import threading

import pytest

from gastown_ft.errors import GastownFTError
from gastown_ft.llamacpp.runtime import unavailable
from gastown_ft.serve.engine import Engine, ModelChoice, choose_engine
from gastown_ft.serve.protocol import parse_chat_request
from gastown_ft_tests.serve.tiny_chat_model import (
    TEXT_ANSWER,
    TEXT_QUESTION,
    build_tiny_chat_model,
    conversations,
)

NO_LLAMA_CPP = unavailable()
needs_llama_cpp = pytest.mark.skipif(bool(NO_LLAMA_CPP), reason=NO_LLAMA_CPP or "")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from gastown_ft.export.gguf import write_gguf

    out = tmp_path_factory.mktemp("engines") / "bundle"
    build_tiny_chat_model(out / "merged", steps=80)
    write_gguf(out / "merged", out / "model.gguf", "f16")
    return out


@pytest.fixture
def no_gguf(bundle, tmp_path):
    out = tmp_path / "bundle"
    shutil.copytree(bundle / "merged", out / "merged")
    return out


def test_auto_falls_back_to_transformers_and_says_why(no_gguf):
    chosen = choose_engine("auto", no_gguf / "merged")
    assert chosen.engine == "transformers" and chosen.gguf is None
    assert chosen.note and "llama.cpp not used" in chosen.note
    assert ("no model.gguf" in chosen.note) if not NO_LLAMA_CPP else NO_LLAMA_CPP in chosen.note

    engine = Engine(ModelChoice(no_gguf / "merged", "v1"), device="cpu", threads=1)
    health = engine.describe()
    assert health["engine"] == "transformers" and health["engine_requested"] == "auto"
    assert health["engine_fallback"] == chosen.note
    assert "llama.cpp not used" in engine.engine_summary()


def test_an_engine_that_cannot_run_is_refused_not_replaced(no_gguf, bundle):
    with pytest.raises(GastownFTError, match="cannot serve with llama.cpp"):
        choose_engine("llama.cpp", no_gguf / "merged")
    with pytest.raises(GastownFTError, match="llama.cpp only"):
        choose_engine("transformers", bundle / "merged", quant="q8_0")
    with pytest.raises(GastownFTError, match="unknown engine"):
        choose_engine("vllm", bundle / "merged")


@needs_llama_cpp
def test_auto_takes_llama_cpp_when_the_gguf_is_there(bundle):
    chosen = choose_engine("auto", bundle / "merged")
    assert chosen.engine == "llama.cpp" and chosen.gguf == bundle / "model.gguf" and chosen.note is None
    with pytest.raises(GastownFTError, match=r"no model\.Q8_0\.gguf"):
        choose_engine("auto", bundle / "merged", quant="q8_0")


class _SlowClient:
    """Collects one reply's events; the first piece of text blocks until `release` is set (a client
    that stops reading): the generation holds its slot meanwhile."""

    def __init__(self, hold: bool) -> None:
        self.release = threading.Event()
        self.holding = threading.Event()
        self.done = threading.Event()
        self.text: list[str] = []
        self.hold = hold

    def __call__(self, kind, value) -> None:
        if kind == "text":
            if self.hold and not self.holding.is_set():
                self.holding.set()
                self.release.wait(60)
            self.text.append(value)
        elif kind in ("done", "error"):
            self.done.set()


def _start(engine: Engine, client: _SlowClient) -> threading.Thread:
    req = parse_chat_request(
        {"model": "m", "messages": [{"role": "user", "content": TEXT_QUESTION}], "temperature": 0}
    )
    t = threading.Thread(target=engine.run, args=(req, client, threading.Event()), daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("engine_name", ["transformers", pytest.param("llama.cpp", marks=needs_llama_cpp)])
def test_a_held_reply_does_not_block_the_next_one_within_parallel(bundle, engine_name):
    for parallel in (2, 1):
        engine = Engine(
            ModelChoice(bundle / "merged", "v1"),
            device="cpu",
            engine=engine_name,
            parallel=parallel,
            threads=1,
        )
        held, quick = _SlowClient(hold=True), _SlowClient(hold=False)
        _start(engine, held)
        assert held.holding.wait(60)
        _start(engine, quick)
        finished_alongside = quick.done.wait(30 if parallel == 2 else 1.0)
        held.release.set()
        assert held.done.wait(60) and quick.done.wait(60)
        assert "".join(held.text) == "".join(quick.text) == TEXT_ANSWER
        # Two slots: the second reply comes while the first is held; one slot: it waits for it.
        assert finished_alongside == (parallel == 2)


@needs_llama_cpp
def test_quantized_copies_load_answer_and_have_their_loss_measured(bundle, tmp_path):
    from transformers import AutoTokenizer

    from gastown_ft.export.card import build_model_card
    from gastown_ft.export.quantize import quantize_gguf
    from gastown_ft.llamacpp.quality import gguf_heldout_loss, heldout_sequences

    src = tmp_path / "model.gguf"
    shutil.copy(bundle / "model.gguf", src)
    shutil.copytree(bundle / "merged", tmp_path / "merged")
    examples = [{"messages": m, "tools": t} for m, t in conversations()]
    seqs = heldout_sequences(examples, AutoTokenizer.from_pretrained(bundle / "merged"))
    rows = [{"quant": "f16", "file": src.name, "bytes": src.stat().st_size} | gguf_heldout_loss(src, seqs)]
    for quant, name in (("q8_0", "model.Q8_0.gguf"), ("q4_k_m", "model.Q4_K_M.gguf")):
        r = quantize_gguf(src, quant, threads=1)
        assert r.path == tmp_path / name and 0 < r.bytes < src.stat().st_size
        rows.append({"quant": quant, "file": name, "bytes": r.bytes} | gguf_heldout_loss(r.path, seqs))
        # The quantized file loads in the server's engine and answers.
        engine = Engine(ModelChoice(tmp_path / "merged", "v1"), device="cpu", quant=quant, threads=1)
        assert engine.describe()["gguf"] == str(r.path) and engine.engine == "llama.cpp"
        client = _SlowClient(hold=False)
        _start(engine, client).join(60)
        reply = "".join(client.text)
        assert reply == TEXT_ANSWER if quant == "q8_0" else reply.strip()
    f16, q8, q4 = (row["loss"] for row in rows)
    assert all(row["tokens"] > 20 and row["examples"] == 2 for row in rows)
    assert abs(q8 - f16) < 0.05 + 0.05 * f16  # 8-bit is close to f16; the card shows each
    card = str(
        build_model_card(
            base_model={"name": "tiny", "source": "local"},
            corpus={},
            training_config=None,
            eval_results=None,
            provenance=None,
            quantizations=rows,
        )
    )
    assert "### GGUF quantizations" in card and "`model.Q4_K_M.gguf` | q4_k_m" in card
    assert f"{q4:.4f}" in card and f"{q4 - f16:+.4f}" in card


def test_quantizing_without_llama_cpp_or_an_unknown_kind_is_refused(bundle):
    from gastown_ft.export.quantize import quantize_gguf, quantized_name

    with pytest.raises(GastownFTError, match="unknown GGUF quantization"):
        quantized_name("model.gguf", "q3")
    if NO_LLAMA_CPP:
        with pytest.raises(GastownFTError, match="not importable"):
            quantize_gguf(bundle / "model.gguf", "q8_0")
    assert quantized_name("model.gguf", "q4_k_m") == "model.Q4_K_M.gguf"


@needs_llama_cpp
def test_the_evaluation_gets_the_same_greedy_answers_from_the_gguf(bundle):
    from gastown_ft.evaluation.generate import Prompt, generate, load_model
    from gastown_ft.llamacpp import generate as gguf

    prompts = [Prompt(messages=m[:-1], tools=t) for m, t in conversations()] + [
        Prompt(messages=[{"role": "user", "content": "Summarize the convoy status."}], max_new_tokens=6)
    ]
    want = generate(load_model(bundle / "merged"), prompts, variant="base", max_new_tokens=48)
    model = gguf.load_gguf_model(bundle / "model.gguf", bundle / "merged", threads=1)
    try:
        got = gguf.generate(model, prompts, max_new_tokens=48)
    finally:
        model.close()
    assert [g.text for g in got] == [g.text for g in want]
    assert got[0].tool_calls == want[0].tool_calls and got[0].tool_calls[0]["name"] == "Bash"
    assert got[1].text == TEXT_ANSWER and got[1].stopped
    assert got[2].new_tokens == 6 and not got[2].stopped  # its own budget
    assert [g.prompt_tokens for g in got] == [g.prompt_tokens for g in want]


def test_a_clients_tool_key_order_renders_the_prompt_training_saw():
    """Clients send tool schemas in their own key order; the prompt is the one training rendered."""
    from types import SimpleNamespace

    from gastown_ft.corpus.examples import BASH_TOOL, make_example, user
    from gastown_ft.corpus.splits import example_from_record, example_to_record
    from gastown_ft.evaluation.generate import Prompt, render_prompt
    from gastown_ft.serve.engine import Engine
    from gastown_ft_tests.training.test_data import make_tokenizer

    tok = make_tokenizer()
    natural = {  # as an OpenAI client writes it
        "type": "function",
        "function": {
            "name": "Bash",
            "description": BASH_TOOL["function"]["description"],
            "parameters": {
                "type": "object",
                "required": ["command"],
                "properties": BASH_TOOL["function"]["parameters"]["properties"],
            },
        },
    }
    messages = [{"role": "system", "content": "You are the Witness."}, {"role": "user", "content": "ready?"}]
    stored = example_from_record(
        example_to_record(
            make_example(task="t", group_id="g", source_ids=[], messages=[user("ready?")], tools=[natural])
        )
    )
    trained = tok(render_prompt(Prompt(messages, stored["tools"]), tok), add_special_tokens=False)[
        "input_ids"
    ]
    served = Engine.prompt_ids(
        None, SimpleNamespace(tokenizer=tok), SimpleNamespace(messages=messages, tools=[natural])
    )
    assert served == trained
    # ...while the client's order, rendered as it came, is another prompt
    from gastown_ft.training.chat_format import render, sequence_prefix

    as_sent = render(messages, [natural], add_generation_prompt=True, bos=sequence_prefix(tok))
    assert tok(as_sent, add_special_tokens=False)["input_ids"] != trained
