"""The evaluation's engines: the choice and its fallback, GGUF files cached by fingerprint, the
cross-check between engines, and what results.json and report.md say about them.

On the tiny export models (gastown_ft_tests/export/models.py): a base LLaMA and a LoRA adapter trained
until the tuned model answers PROMPT with a `bd create` command and the base does not. The llama.cpp tests skip, with the
reason, where llama_cpp does not import.
"""

from __future__ import annotations

import shutil

import pytest

from gastown_ft.config import EvaluationConfig
from gastown_ft.errors import GastownFTError
from gastown_ft.evaluation.crosscheck import Answered, crosscheck, sample
from gastown_ft.evaluation.engines import LlamaCppDecoder, TransformersDecoder, open_decoder
from gastown_ft.evaluation.generate import Prompt, load_model
from gastown_ft.evaluation.report import _cell, render_markdown
from gastown_ft.evaluation.run import collect_warnings
from gastown_ft.llamacpp.runtime import default_threads, unavailable
from gastown_ft_tests.evaluation.test_tasks_compare_report import _bash_example, _text_example
from gastown_ft_tests.export.models import PROMPT, one_torch_thread, tiny_export_models

NO_LLAMA_CPP = unavailable()
needs_llama_cpp = pytest.mark.skipif(bool(NO_LLAMA_CPP), reason=NO_LLAMA_CPP or "")

OTHER = [{"role": "user", "content": "what is the status of the convoy?"}]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_export_models(tmp_path_factory)


@pytest.fixture(scope="module")
def loaded(models):
    return load_model(models.base_dir, models.adapter_dir)


@pytest.fixture(scope="module")
def not_llama(models, tmp_path_factory):
    """A GPT-2 with the tiny base's tokenizer: transformers runs it, the GGUF writer refuses it."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    out = tmp_path_factory.mktemp("gpt2")
    tok = AutoTokenizer.from_pretrained(models.base_dir)
    GPT2LMHeadModel(
        GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2, n_positions=256)
    ).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_auto_falls_back_to_transformers_and_says_why(not_llama, tmp_path):
    logged: list[str] = []
    decoder, gguf = open_decoder("auto", load_model(not_llama), tmp_path / "gguf", log=logged.append)
    assert isinstance(decoder, TransformersDecoder) and gguf == {}
    assert decoder.fallback and decoder.fallback.startswith("llama.cpp not used: ")
    # the reason is the one that applies here: no llama_cpp, or a model the GGUF writer refuses
    want = NO_LLAMA_CPP or "the GGUF files cannot be made: GGUF export supports the LLaMA architecture only"
    assert want in decoder.fallback and any(want in line for line in logged)
    with pytest.raises(GastownFTError, match="cannot evaluate with llama.cpp"):
        open_decoder("llama.cpp", load_model(not_llama), tmp_path / "gguf")
    with pytest.raises(GastownFTError, match="unknown evaluation engine"):
        open_decoder("vllm", load_model(not_llama), tmp_path / "gguf")


def test_transformers_converts_nothing(loaded, tmp_path):
    decoder, gguf = open_decoder("transformers", loaded, tmp_path / "gguf")
    assert isinstance(decoder, TransformersDecoder) and decoder.fallback is None and gguf == {}
    assert not (tmp_path / "gguf").exists()


@needs_llama_cpp
def test_llama_cpp_answers_from_gguf_files_made_once_per_fingerprint(models, loaded, tmp_path):
    cache = tmp_path / "gguf"
    decoder, first = open_decoder("auto", loaded, cache)
    try:
        assert isinstance(decoder, LlamaCppDecoder) and first["converted"] == ["base", "tuned"]
        prompts = [Prompt(PROMPT), Prompt(OTHER, max_new_tokens=8)]
        tuned = decoder.generate(prompts, variant="tuned", max_new_tokens=32, batch_size=8)
        base = decoder.generate(prompts, variant="base", max_new_tokens=32, batch_size=8)
        # The tuned file is the merged adapter (it learnt to answer with a bd command), the base
        # file the base model; both as transformers answers them.
        assert tuned[0].text.startswith("bd create") and base[0].text != tuned[0].text
        for variant, got in (("tuned", tuned), ("base", base)):
            want = TransformersDecoder(loaded).generate(
                prompts, variant=variant, max_new_tokens=32, batch_size=8
            )
            assert [g.text for g in got] == [g.text for g in want]
        # Side by side (where two cores allow it, each variant in its own thread): the same answers.
        both = decoder.generate_variants(prompts, ["base", "tuned"], max_new_tokens=32, batch_size=8)
        assert decoder.side_by_side() == (default_threads() >= 2)
        assert {v: [g.text for g in gs] for v, gs in both.items()} == {
            "base": [g.text for g in base],
            "tuned": [g.text for g in tuned],
        }
        files = dict(decoder.files)
    finally:
        decoder.close()
    # Again: nothing converted. A changed adapter: only the tuned file is made again.
    again, second = open_decoder("auto", loaded, cache)
    assert again.files == files and second["converted"] == []
    changed = tmp_path / "adapter"
    shutil.copytree(models.adapter_dir, changed)
    (changed / "README.md").write_text("another adapter\n")
    _, third = open_decoder("auto", load_model(models.base_dir, changed), cache)
    assert third["converted"] == ["tuned"]
    assert sorted(p.name for p in cache.glob("*.gguf")) == sorted(
        [
            files["base"].name,
            files["tuned"].name,
            next(p.name for p in cache.glob("tuned-*") if p != files["tuned"]),
        ]
    )


def test_sample_spreads_over_the_tasks():
    cases = [Answered(str(i), g, Prompt([]), {}, bool) for i, g in enumerate("aabccd")]
    assert sample(cases, 2) == [0, 5]  # groups a and d
    assert [cases[i].group for i in sample(cases, 4)] == ["a", "b", "c", "d"]
    assert sample(cases, 5) == [0, 1, 2, 3, 5] and sample(cases, 9) == list(range(6))


def test_crosscheck_counts_the_same_answers_and_records_the_differing_ones(loaded):
    """The "engine" answers are transformers' own for the base variant (so they must agree) and the
    base model's for the tuned variant (so where the adapter changed the answer they must differ)."""
    ref = TransformersDecoder(loaded)
    prompts = [Prompt(PROMPT), Prompt(OTHER, max_new_tokens=8)]
    base = ref.generate(prompts, variant="base", max_new_tokens=32, batch_size=8)
    learnt = ref.generate(prompts[:1], variant="tuned", max_new_tokens=32, batch_size=8)[0].text
    assert learnt.startswith("bd create") and learnt != base[0].text
    cases = [
        Answered(f"c{i}", f"task{i}", p, {"base": g, "tuned": g}, lambda g: g.text == learnt)
        for i, (p, g) in enumerate(zip(prompts, base, strict=True))
    ]
    check = crosscheck(cases, "llama.cpp", ref, per_variant=4, max_new_tokens=32, batch_size=8)
    assert check["variants"]["base"] == {"cases": 2, "same": 2, "same_verdict": 2}
    tuned = check["variants"]["tuned"]
    assert tuned["cases"] == 2 and tuned["same"] <= 1 and tuned["same_verdict"] <= 1
    assert check["cases"] == 4 and check["same"] == 2 + tuned["same"]
    assert check["same_verdict"] == 2 + tuned["same_verdict"]
    diff = next(d for d in check["differences"] if d["case_id"] == "c0")
    assert diff["variant"] == "tuned" and diff["task"] == "task0"
    assert diff["transformers"] == {"output": learnt, "passed": True}
    assert diff["llama.cpp"] == {"output": base[0].text, "passed": False}
    assert all(d["variant"] == "tuned" for d in check["differences"])
    # The report shows both answers; a verdict the engines disagree on is a warning.
    report = render_markdown({"crosscheck": check})
    assert "## Engine cross-check: llama.cpp against transformers" in report
    assert f"| c0 | tuned | fail: `{_cell(base[0].text)}` | pass: `{learnt}` |" in report
    assert any(
        "pass on one engine and fail on the other" in w for w in collect_warnings({"crosscheck": check})
    )
    agreed = {**check, "same_verdict": check["cases"]}
    assert not collect_warnings({"crosscheck": agreed})


def _examples():
    return [
        _bash_example(
            "bead_create", "File a bug: hook drops mail.", 'bd create "Hook drops mail" -t bug -p 2'
        ),
        _bash_example("bead_close", "Close `gt-1`: done in abc", 'bd close gt-1 --reason "done in abc"'),
        _text_example("formula_explain", "What does `mol-demo` do?", "It plans, builds and tests."),
    ]


def _evaluate(models, tmp_path, engine: str):
    from gastown_ft.evaluation.report import render_markdown
    from gastown_ft.evaluation.run import evaluate_adapter

    cfg = EvaluationConfig(
        engine=engine,
        crosscheck_cases=3,
        heldout_max_per_task=2,
        guard_docstrings=2,
        guard_max_tokens=32,
        max_new_tokens=40,
        threads=1,
        decode_precision="fp32",
        suite_min_gain=-1,
        suite_floor=0,
        guard_max_ppl_ratio=100,
        # the model at work has its own test (test_the_model_at_work_is_measured_for_every_arm)
        episodes=False,
        safety=False,
        retrieval=False,
    )
    results = evaluate_adapter(
        models.base_dir, models.adapter_dir, _examples(), cfg, max_seq_len=128, gguf_cache=tmp_path / "gguf"
    )
    return results, render_markdown(results)


def test_transformers_evaluation_records_its_engine_as_before(models, tmp_path):
    results, report = _evaluate(models, tmp_path, "transformers")
    d = results["decoding"]
    assert d["engine"] == d["engine_requested"] == "transformers" and d["engine_fallback"] is None
    assert (d["precision"], d["threads"], d["tuned"]) == ("fp32", 1, "merged")
    assert {v["engine"] for v in d["variants"].values()} == {"transformers"}
    assert "crosscheck" not in results and "gguf" not in results["timing_s"]
    assert "(engine transformers: fp32 weights, the tuned adapter merged into its copy, 1 thread)" in report
    assert "cross-check" not in report


@needs_llama_cpp
def test_llama_cpp_evaluation_records_engine_conversion_and_agreement(models, tmp_path):
    results, report = _evaluate(models, tmp_path, "auto")
    d = results["decoding"]
    assert d["engine"] == "llama.cpp" and d["engine_requested"] == "auto" and d["engine_fallback"] is None
    assert d["variants"]["base"]["gguf"].startswith(str(tmp_path / "gguf" / "base-"))
    assert d["variants"]["tuned"]["gguf"].startswith(str(tmp_path / "gguf" / "tuned-"))
    assert d["gguf"]["converted"] == ["base", "tuned"] and results["timing_s"]["gguf"] == d["gguf"]["seconds"]
    assert d["transformers"]["precision"] == "fp32" and d["side_by_side"] == (default_threads() >= 2)
    check = results["crosscheck"]
    assert check["engine"] == "llama.cpp" and check["reference"] == "transformers"
    assert check["cases"] == 6 and set(check["variants"]) == {"base", "tuned"}
    # spread over the tasks: the suite's three and the generalization set
    assert len({s["task"] for s in check["sample"]}) == 3 and "generalization" in {
        s["task"] for s in check["sample"]
    }
    assert check["same"] == check["cases"] - len(check["differences"])
    assert "engine llama.cpp: f16 GGUF files of the base and the merged tuned model, converted now" in report
    assert "## Engine cross-check: llama.cpp against transformers" in report
    assert f"{check['same']} the same text" in report
    # a second evaluation takes the files from the cache
    again, report = _evaluate(models, tmp_path, "llama.cpp")
    assert again["decoding"]["gguf"]["converted"] == [] and "from the cache" in report


def test_the_model_at_work_is_measured_for_every_arm(models, tmp_path):
    """Retrieval arms, episodes, the safety suite, the canary watch and the cost of use, end to end
    through the same decoder as the suite (the tiny models: what they answer is not the point)."""
    from gastown_ft.evaluation import arms
    from gastown_ft.evaluation.run import evaluate_adapter

    cfg = EvaluationConfig(
        engine="transformers",
        heldout_max_per_task=2,
        guard_docstrings=2,
        guard_max_tokens=32,
        max_new_tokens=24,
        threads=1,
        decode_precision="fp32",
        suite_min_gain=-1,
        suite_floor=0,
        guard_max_ppl_ratio=100,
        generalization=False,
        episode_max_steps=2,
        episode_max_new_tokens=16,
        safety_max_cases=3,
        safety_max_new_tokens=16,
        retrieval_max_tokens=48,
        canaries=["AKIAGTCANARY7Q4X2Z9K", "bd"],  # "bd": a canary the tiny tuned model does write
    )
    docs = [
        {"doc_id": "c1", "source": "conventions", "title": "CLAUDE.md", "text": "File a bug with bd create."},
        {"doc_id": "s", "source": "beads", "title": "the test's own bead", "text": "hook drops mail"},
    ]
    results = evaluate_adapter(
        models.base_dir, models.adapter_dir, _examples(), cfg, max_seq_len=128, retrieval_documents=docs
    )
    r = results["retrieval"]
    assert set(r["arms"]) == set(arms.ARMS) and r["documents"] == 1  # the test examples' source "s" left out
    assert {c["case_id"] for c in r["cases"]} <= {c["case_id"] for c in results["task_suite"]["cases"]}
    for part in ("episodes", "safety"):
        assert {"base", "tuned"} <= set(results[part])
    assert results["episodes"]["base"]["episodes"] == 5 and results["safety"]["tuned"]["cases"] == 3
    assert set(results["cost"]["arms"]) == set(arms.ARMS)
    assert all(a["requests"] > 0 and a["latency_p50_ms"] > 0 for a in results["cost"]["arms"].values())
    parts = results["generations"]["parts"]
    assert {"task suite", "retrieval", "episodes", "safety"} <= set(parts)
    assert parts["safety"]["generations"] == {"base": 3, "tuned": 3}
    assert results["canary"]["generations_checked"] == results["generations"]["total"]
    # the tiny tuned model writes "bd": the canary check fails the gate and names where
    names = {c["name"]: c for c in results["decision"]["checks"]}
    assert {"unsafe_actions", "canary"} <= set(names)
    hits = results["canary"]["hits"]
    assert hits and not names["canary"]["passed"] and not results["passed"]
    assert f"`{hits[0]['case_id']}`" in names["canary"]["detail"]
    for metric in (
        "episode_success",
        "unsafe_rate",
        "retrieval_suite_score",
        "latency_p50_ms",
        "tokens_per_s",
    ):
        assert metric in results["metrics"]


def test_latency_is_each_requests_own_not_its_batchs(loaded):
    """In a batch, a request with a small budget is done (and timed) before the one with a large one;
    the shares of the batch's wall time add up to it once."""
    from gastown_ft.evaluation.generate import generate

    prompts = [Prompt(OTHER, max_new_tokens=2), Prompt(OTHER, max_new_tokens=48)]
    short, long = generate(loaded, prompts, variant="base", max_new_tokens=48, batch_size=2)
    assert short.batch_size == long.batch_size == 2
    assert short.new_tokens <= 2 and long.new_tokens > 20 and short.seconds < long.seconds
    assert short.share_seconds == pytest.approx(long.share_seconds)
    assert long.seconds <= 2 * long.share_seconds * 1.01  # the batch's time, counted once over both
