"""`gastown-ft serve` end to end, through the official `openai` client, on each engine.

A tiny chat model is registered and promoted (with its GGUF, as the export writes it); the server runs
as the operator starts it (the CLI, in its own process, on a free loopback port) and is talked to only
over HTTP. Every test runs twice: `--engine transformers` and `--engine llama.cpp` (skipped, with the
reason, where llama-cpp-python is not installed). Each engine's greedy replies are checked against the
same engine called directly.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from gastown_ft.export.registry import Registry
from gastown_ft.llamacpp.runtime import unavailable
from gastown_ft_tests.serve.tiny_chat_model import (
    SMALL_BASH_TOOL,
    TEXT_ANSWER,
    TEXT_QUESTION,
    TOOL_COMMAND,
    TOOL_QUESTION,
    build_tiny_chat_model,
)

GFT = "from gastown_ft.cli import main; main()"  # the `gastown-ft` entry point
ENGINES = ("transformers", "llama.cpp")
NO_LLAMA_CPP = unavailable()
MODEL = "gastown-ft"
PASSED = {"passed": True, "metrics": {"task_exact": 1.0}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "GASTOWN_FT_CONFIG"} | {"HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    """An export bundle of the tiny chat model: merged/, model.gguf, README.md."""
    from gastown_ft.export.gguf import write_gguf

    bundle = tmp_path_factory.mktemp("tiny") / "export-1"
    build_tiny_chat_model(bundle / "merged", steps=80)
    write_gguf(bundle / "merged", bundle / "model.gguf", "f16")
    (bundle / "README.md").write_text("# tiny\n")
    return bundle


@pytest.fixture(scope="module", params=ENGINES)
def served(request, tmp_path_factory, tiny_bundle):
    """(client, base_url, registry, work): v1 (the tiny model) promoted and served by `gastown-ft serve`
    on the engine of this parameter."""
    engine = request.param
    if engine == "llama.cpp" and NO_LLAMA_CPP:
        pytest.skip(NO_LLAMA_CPP)
    work = tmp_path_factory.mktemp(f"serve-{engine}")
    bundle = work / "export-1"
    shutil.copytree(tiny_bundle, bundle)
    port = _free_port()
    cfg = work / "gastown-ft.toml"
    cfg.write_text(
        f'[artifacts]\ndir = "artifacts"\n[serve]\nport = {port}\nmax_tokens = 64\nthreads = 1\n'
        f'engine = "{engine}"\nparallel = 2\n'
    )
    reg = Registry(work / "artifacts" / "registry")
    reg.promote(reg.register(bundle, {"eval": PASSED, "corpus_version": "test"}))
    log = (work / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-c", GFT, "--config", str(cfg), "serve"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=_env(),
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            _get(base + "/health")
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("the server did not start:\n" + (work / "serve.log").read_text())
            time.sleep(0.3)
    client = openai.OpenAI(base_url=base + "/v1", api_key="x", max_retries=0, timeout=120)
    try:
        yield client, base, reg, work, engine
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def direct(served):
    """The promoted model run straight on the server's engine: what the server must agree with."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = served[2].get("v1").merged_dir
    tok = AutoTokenizer.from_pretrained(path)
    if served[4] == "llama.cpp":
        yield _llama_cpp_greedy(path.parent / "model.gguf", tok)
        return
    model = AutoModelForCausalLM.from_pretrained(path).eval()

    def greedy(messages, tools=None, max_new_tokens=64):
        import torch

        ids = tok.apply_chat_template(
            messages, tools=tools, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )["input_ids"]
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as the server runs: the same kernels, and no spinning on a busy machine
        try:
            with torch.inference_mode():
                out = model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    do_sample=False,
                    max_new_tokens=max_new_tokens,
                )
        finally:
            torch.set_num_threads(threads)
        new = out[0, ids.shape[1] :].tolist()
        return tok.decode(new, skip_special_tokens=True), ids.shape[1], len(new)

    yield greedy


def _llama_cpp_greedy(gguf, tok):
    """Greedy replies of llama.cpp itself (llama-cpp-python's Llama, the prompt ids from the HF
    tokenizer), counting the end token as generate() does."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=512, n_threads=1, verbose=False)
    ends = {tok.convert_tokens_to_ids("<|im_end|>"), tok.eos_token_id}

    def greedy(messages, tools=None, max_new_tokens=64):
        ids = tok.apply_chat_template(messages, tools=tools, add_generation_prompt=True, return_dict=True)[
            "input_ids"
        ]
        llm.reset()
        new = []
        for t in llm.generate(ids, temp=0.0, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0):
            new.append(t)
            if t in ends or len(new) >= max_new_tokens:
                break
        return tok.decode(new, skip_special_tokens=True), len(ids), len(new)

    return greedy


def _ask(client, content, **kw):
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}], **kw)


def _stream(client, content, **kw):
    chunks = list(_ask(client, content, stream=True, stream_options={"include_usage": True}, **kw))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    return chunks, text, finish


def test_models_list_names_the_served_model(served):
    client, base, reg, *_ = served
    assert [m.id for m in client.models.list()] == [MODEL]
    assert client.models.retrieve(MODEL).owned_by == "gastown-ft"
    health = _get(base + "/health")
    assert health["version"] == "v1" and health["model"] == MODEL and health["following_promotions"]


def test_the_engine_is_named_in_the_banner_and_health(served):
    _, base, reg, work, engine = served
    health = _get(base + "/health")
    assert health["engine"] == engine and health["engine_requested"] == engine
    assert health["engine_fallback"] is None and health["parallel"] == 2
    assert health["gguf"] == (str(reg.get("v1").bundle_dir / "model.gguf") if engine == "llama.cpp" else None)
    assert f"  engine     {engine} (" in (work / "serve.log").read_text()


def test_a_load_test_from_another_process_reports_latency_and_throughput(served):
    base = served[1]
    out = subprocess.run(
        [sys.executable, "-m", "gastown_ft.serve.loadtest", "--base-url", base]
        + ["--clients", "1,2", "--requests", "3", "--max-tokens", "8", "--max-seconds", "60"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    levels = json.loads(out.stdout)
    assert [lv["clients"] for lv in levels] == [1, 2]
    for lv in levels:
        assert lv["requests"] == 3 and not lv["errors"] and lv["completion_tokens"] > 0
        assert 0 < lv["first_token_p50"] <= lv["latency_p50"] <= lv["latency_p95"]
        assert lv["tokens_per_second"] > 0


@pytest.mark.parametrize("question,max_tokens", [(TEXT_QUESTION, None), ("Summarize the convoy status.", 12)])
def test_greedy_reply_is_repeatable_and_equals_transformers_generate(served, direct, question, max_tokens):
    client = served[0]
    kw = {"temperature": 0} | ({"max_tokens": max_tokens} if max_tokens else {})
    first, second = _ask(client, question, **kw), _ask(client, question, **kw)
    text, n_prompt, n_new = direct([{"role": "user", "content": question}], max_new_tokens=max_tokens or 64)
    assert first.choices[0].message.content == second.choices[0].message.content == text
    assert first.usage.prompt_tokens == n_prompt and first.usage.completion_tokens == n_new
    assert first.usage.total_tokens == n_prompt + n_new
    assert first.choices[0].finish_reason == ("length" if max_tokens else "stop")
    assert first.system_fingerprint == "gastown-ft-v1" and first.model == MODEL
    if max_tokens is None:
        assert text == TEXT_ANSWER  # the memorized answer: the template and the stop token work


def test_streamed_deltas_add_up_to_the_whole_reply(served):
    client = served[0]
    whole = _ask(client, TEXT_QUESTION, temperature=0)
    chunks, text, finish = _stream(client, TEXT_QUESTION, temperature=0)
    assert text == whole.choices[0].message.content and len(chunks) > 5
    assert chunks[0].choices[0].delta.role == "assistant"
    assert finish == ["stop"]
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert len({c.id for c in chunks}) == 1


def test_stop_strings_end_the_reply_before_them(served):
    client = served[0]
    whole = _ask(client, TEXT_QUESTION, temperature=0, stop=["polecats", "zzz"])
    _, text, finish = _stream(client, TEXT_QUESTION, temperature=0, stop=["polecats", "zzz"])
    expected = TEXT_ANSWER[: TEXT_ANSWER.index("polecats")]
    assert whole.choices[0].message.content == text == expected and finish == ["stop"]


def test_tools_reach_the_model_and_its_call_comes_back_as_tool_calls(served):
    client = served[0]
    reply = _ask(client, TOOL_QUESTION, tools=[SMALL_BASH_TOOL], temperature=0)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "Bash" and call.id.startswith("call_")
    assert json.loads(call.function.arguments) == {"command": TOOL_COMMAND}

    chunks, text, finish = _stream(client, TOOL_QUESTION, tools=[SMALL_BASH_TOOL], temperature=0)
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert text == "" and finish == ["tool_calls"] and [d.index for d in deltas] == [0]
    assert deltas[0].function.name == "Bash" and json.loads(deltas[0].function.arguments) == {
        "command": TOOL_COMMAND
    }

    # Without the tool schema in the prompt the model does not call it: the tools really reach the template.
    plain = _ask(client, TOOL_QUESTION, temperature=0)
    assert not plain.choices[0].message.tool_calls and plain.usage.prompt_tokens < reply.usage.prompt_tokens
    # tool_choice "none": the text comes back as it is, unparsed.
    raw = _ask(client, TOOL_QUESTION, tools=[SMALL_BASH_TOOL], tool_choice="none", temperature=0)
    assert "<tool_call>" in raw.choices[0].message.content and not raw.choices[0].message.tool_calls


def test_a_tool_round_trip_is_accepted(served):
    client = served[0]
    first = _ask(client, TOOL_QUESTION, tools=[SMALL_BASH_TOOL], temperature=0).choices[0].message
    follow = client.chat.completions.create(
        model=MODEL,
        tools=[SMALL_BASH_TOOL],
        max_tokens=8,
        messages=[
            {"role": "system", "content": "You are the Witness."},
            {"role": "user", "content": TOOL_QUESTION},
            first.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": first.tool_calls[0].id, "content": "gt-12 open"},
        ],
    )
    assert follow.usage.prompt_tokens > 0 and follow.choices[0].finish_reason in (
        "stop",
        "length",
        "tool_calls",
    )


def test_sampling_with_a_seed_is_repeatable(served):
    client = served[0]
    a, b = (
        _ask(client, "Summarize the convoy status.", temperature=1.0, seed=5, max_tokens=16) for _ in range(2)
    )
    assert a.choices[0].message.content == b.choices[0].message.content


def test_concurrent_requests_are_served_one_at_a_time_correctly(served):
    client = served[0]
    with ThreadPoolExecutor(3) as pool:
        replies = list(pool.map(lambda _: _ask(client, TEXT_QUESTION, temperature=0), range(3)))
    assert {r.choices[0].message.content for r in replies} == {TEXT_ANSWER}


def test_bad_requests_get_openai_errors(served):
    client, base, *_ = served
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert e.value.code == "model_not_found" and "gastown-ft" in e.value.message
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "robot", "content": "hi"}])
    assert e.value.param == "messages[0].role"
    with pytest.raises(openai.BadRequestError, match="messages must be a non-empty list"):
        client.chat.completions.create(model=MODEL, messages=[])
    with pytest.raises(openai.BadRequestError, match="only n=1"):
        _ask(client, "hi", n=2)
    with pytest.raises(openai.BadRequestError) as e:
        _ask(client, "gt " * 600)
    assert e.value.code == "context_length_exceeded"
    req = urllib.request.Request(
        base + "/v1/chat/completions",
        data=b"{not json",
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 400 and "not valid JSON" in json.loads(e.value.read())["error"]["message"]


def test_the_server_follows_promotion_and_rollback(served):
    client, base, reg, work, _ = served
    v1 = reg.current()
    bundle2 = work / "export-2"
    shutil.copytree(v1.bundle_dir, bundle2)
    (bundle2 / "README.md").write_text("# tiny, second export\n")  # other content: a new version
    v2 = reg.register(bundle2, {"eval": PASSED})
    reg.promote(v2)
    reply = _ask(client, TEXT_QUESTION, temperature=0)
    assert reply.system_fingerprint == "gastown-ft-v2" and _get(base + "/health")["version"] == "v2"
    assert [m.id for m in client.models.list()] == [MODEL]  # clients keep the same model name
    reg.rollback()
    assert _ask(client, TEXT_QUESTION, temperature=0).system_fingerprint == "gastown-ft-v1"


def test_a_version_that_will_not_load_leaves_the_current_one_serving(served):
    client, base, reg, work, _ = served
    before = reg.current().version
    broken = work / "export-broken" / "merged"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text('{"model_type": "llama"}')  # no weights, no tokenizer
    reg.promote(reg.register(broken.parent, {"eval": PASSED}))
    reply = _ask(client, TEXT_QUESTION, temperature=0)
    assert reply.choices[0].message.content == TEXT_ANSWER
    assert reply.system_fingerprint == f"gastown-ft-{before}"
    health = _get(base + "/health")
    assert health["version"] == before and "cannot switch to" in health["reload_error"]
    reg.rollback()
    assert _ask(client, TEXT_QUESTION, temperature=0).system_fingerprint == f"gastown-ft-{before}"


def test_serve_without_a_promoted_version_says_what_to_do(tmp_path):
    cfg = tmp_path / "gastown-ft.toml"
    cfg.write_text('[artifacts]\ndir = "artifacts"\n')
    out = subprocess.run(
        [sys.executable, "-c", GFT, "--config", str(cfg), "serve", "--port", str(_free_port())],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert out.returncode == 2
    assert "no model version is promoted" in out.stderr and "gastown-ft models promote" in out.stderr
    assert "Traceback" not in out.stderr
