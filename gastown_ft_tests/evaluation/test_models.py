"""Evaluation with a real (tiny) trained model: held-out loss, the guard, generation, the CLI, the asset."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gastown_ft.artifacts import ArtifactStore
from gastown_ft.training.inputs import load_split_examples


@pytest.fixture(scope="module")
def tiny(tiny_trained):
    """(settings, instance, base model dir, adapter dir, loaded model, test examples)."""
    from gastown_ft.evaluation.generate import load_model

    settings, instance, _town = tiny_trained
    event = instance.get_latest_materialization_event(__import__("dagster").AssetKey("lora_adapter"))
    adapter = Path(str(event.asset_materialization.metadata["path"].value))
    base = settings.artifacts.dir / "models" / "embedded"
    loaded = load_model(base, adapter)
    test = load_split_examples(ArtifactStore(settings.artifacts.dir), "test")
    return settings, instance, base, adapter, loaded, test


@pytest.mark.training
def test_heldout_per_task_matches_a_plain_model_and_is_token_weighted(tiny):
    from transformers import AutoModelForCausalLM

    from gastown_ft.evaluation.heldout import encode_by_task, heldout_losses
    from gastown_ft.training.lora import evaluate_loss

    settings, _, base, _, loaded, test = tiny
    encoded = encode_by_task(test, loaded.tokenizer, settings.training.max_seq_len, 4)
    assert set(encoded) <= {e["task"] for e in test} and all(len(v) <= 4 for v in encoded.values())
    with loaded.variant("base") as model:
        base_h = heldout_losses(model, encoded, loaded.pad_id, 4)
    with loaded.variant("tuned") as model:
        tuned_h = heldout_losses(model, encoded, loaded.pad_id, 4)
    plain = AutoModelForCausalLM.from_pretrained(str(base))
    task = sorted(encoded)[0]
    # With the adapter off, the numbers are the base model's own.
    assert base_h["tasks"][task]["loss"] == pytest.approx(
        evaluate_loss(plain, encoded[task], loaded.pad_id, 4), rel=1e-5
    )
    assert tuned_h["tasks"][task]["loss"] != pytest.approx(base_h["tasks"][task]["loss"], rel=1e-7)
    rows = tuned_h["tasks"].values()
    weighted = sum(r["loss"] * r["tokens"] for r in rows) / sum(r["tokens"] for r in rows)
    assert tuned_h["overall"]["loss"] == pytest.approx(weighted)
    assert tuned_h["overall"]["perplexity"] == pytest.approx(math.exp(weighted))


@pytest.mark.training
def test_guard_sample_is_deterministic_and_perplexity_matches_the_model_loss(tiny):
    import torch

    from gastown_ft.evaluation.guard import encode_texts, fingerprint, stdlib_docstrings, text_perplexity

    _, _, _, _, loaded, _ = tiny
    texts = stdlib_docstrings(6)
    assert len(texts) == 6 and all(len(t) >= 200 for t in texts)
    assert fingerprint(texts) == fingerprint(stdlib_docstrings(6)) and stdlib_docstrings(3) == texts[:3]
    seqs = encode_texts(texts, loaded.tokenizer, 64)
    with loaded.variant("base") as model:
        got = text_perplexity(model, seqs, loaded.pad_id, 3)
        with torch.inference_mode():
            losses = [
                (
                    model(
                        input_ids=torch.tensor([s["input_ids"]]), labels=torch.tensor([s["input_ids"]])
                    ).loss.item(),
                    len(s["input_ids"]) - 1,
                )
                for s in seqs
            ]
    expected = sum(loss * n for loss, n in losses) / sum(n for _, n in losses)
    assert got["loss"] == pytest.approx(expected, rel=1e-4)
    assert got["perplexity"] == pytest.approx(math.exp(expected), rel=1e-4) and got["texts"] == 6


@pytest.mark.training
def test_generation_is_greedy_batched_and_stops(tiny):
    from gastown_ft.evaluation.generate import Prompt, generate

    _, _, _, _, loaded, test = tiny
    prompts = [
        Prompt(e["messages"][:-1], e["tools"] or None, max_new_tokens=6 + i % 3)
        for i, e in enumerate(test[:5])
    ]
    batched = generate(loaded, prompts, variant="tuned", max_new_tokens=8, batch_size=4)
    single = generate(loaded, prompts, variant="tuned", max_new_tokens=8, batch_size=1)
    assert [g.new_tokens for g in batched] == [
        min(8, p.max_new_tokens) if not g.stopped else g.new_tokens
        for p, g in zip(prompts, batched, strict=True)
    ]
    assert [g.text for g in batched] == [g.text for g in single]  # left padding changes nothing
    # A budget the prompt cannot fit beside: the prompt keeps its end and says it was cut.
    long = Prompt([{"role": "user", "content": "word " * 2000}])
    (g,) = generate(loaded, [long], variant="base", max_new_tokens=4)
    assert g.truncated and g.prompt_tokens <= loaded.context - 4


def _gft(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GASTOWN_FT_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "gastown_ft.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


@pytest.mark.training
@pytest.mark.shared
def test_cli_eval_on_the_shared_suite(tiny, shared_samples, tmp_path):
    _, _, base, adapter, _, _ = tiny
    suite = shared_samples / "gastown" / "gt-model-eval"
    out = tmp_path / "res.json"
    run = _gft(
        "eval",
        "--suite",
        str(suite),
        "--model",
        str(base),
        "--adapter",
        str(adapter),
        "--max-cases",
        "6",
        "--max-new-tokens",
        "12",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    data = json.loads(out.read_text())
    assert data["adapter"] == str(adapter.resolve()) and data["decoding"] == "greedy"
    assert len(data["cases"]) == 6 and data["summary"]["cases"] == 6
    case = data["cases"][0]
    assert {"case_id", "status", "output", "asserts", "latency_ms"} <= set(case)
    assert (
        data["summary"]["accuracy"]
        == sum(c["status"] == "pass" for c in data["cases"]) / data["summary"]["scored"]
    )
    assert "accuracy" in run.stdout and "deacon-zombie.yaml" in run.stdout  # the missing file is reported
    bad = _gft("eval", "--suite", str(tmp_path / "nope.yaml"), "--model", str(base), cwd=tmp_path)
    assert bad.returncode == 2 and "suite not found" in bad.stderr and "Traceback" not in bad.stderr
    bad = _gft("eval", "--suite", str(suite), "--model", str(tmp_path), cwd=tmp_path)
    assert bad.returncode == 2 and "config.json" in bad.stderr and "hint" in bad.stderr


def _settings_with(settings, tmp_path: Path, **evaluation):
    from gastown_ft.config import load_settings, render_settings_toml
    from gastown_ft.demo.canaries import CANARIES

    fast = {
        "max_cases_per_task": 2,
        "heldout_max_per_task": 4,
        "max_new_tokens": 24,
        "guard_docstrings": 6,
        "guard_max_tokens": 64,
        "retrieval_max_per_task": 1,
        "episode_max_steps": 2,
        "episode_max_new_tokens": 24,
        "safety_max_cases": 3,
        "safety_max_new_tokens": 24,
        "canaries": list(CANARIES),  # the demo town's, planted in its transcripts and beads
    }
    cfg = settings.model_copy(
        update={"evaluation": settings.evaluation.model_copy(update={**fast, **evaluation})}
    )
    path = tmp_path / "gastown-ft.toml"
    path.write_text(render_settings_toml(cfg))
    return load_settings(path)


@pytest.mark.training
def test_eval_report_passes_when_the_gate_is_opened(tiny, tmp_path):
    from gastown_ft.evaluation import load_eval_results
    from gastown_ft.orchestrate import materialize_assets
    from gastown_ft.status import asset_status

    settings, instance, base, adapter, _, _ = tiny
    # The tiny model is barely trained: its suite scores are near zero for base and tuned alike, so the
    # default gate (beat the base, reach suite_floor) refuses it. This test is about the asset, not the
    # model: the gate is opened explicitly (a tuned score up to 1 below the base's, no floor).
    cfg = _settings_with(settings, tmp_path, suite_min_gain=-1.0, suite_floor=0.0, guard_max_ppl_ratio=100.0)
    result = materialize_assets(cfg, instance, ["eval_report"])
    assert result.success, [e.message for e in result.all_events if e.is_step_failure]
    checks = [e for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert len(checks) == 1 and checks[0].event_specific_data.passed
    meta = asset_status(instance)["eval_report"]["metadata"]
    for name in ("suite_score", "heldout_loss", "general_text_perplexity"):
        assert isinstance(meta[f"{name}_base"], float) and isinstance(meta[f"{name}_tuned"], float)
    assert meta["passed"] is True
    results = load_eval_results(meta["results_path"])
    assert results["passed"] and Path(results["report_path"]).read_text().startswith("# Evaluation")
    assert Path(meta["results_path"]).parent == settings.artifacts.dir / "evaluation" / adapter.parent.name
    assert results["base_model"] == str(base) and results["task_suite"]["tuned"]["cases"] > 0
    # Answers come from llama.cpp over GGUF files where it runs (engine "auto"), a sample checked against
    # transformers; transformers decodes with bf16 weights where the CPU computes bf16 natively
    # (decode_precision auto).
    decoding = results["decoding"]
    report = Path(results["report_path"]).read_text()
    transformers = decoding if decoding["engine"] == "transformers" else decoding["transformers"]
    assert transformers["precision"] == ("bf16" if results["scoring"]["precision"] == "bf16" else "fp32")
    if decoding["engine"] == "llama.cpp":
        assert decoding["precision"] == "f16" and results["crosscheck"]["cases"] > 0
        assert "(engine llama.cpp: f16 GGUF files" in report and "## Engine cross-check" in report
        assert meta["engine"] == "llama.cpp"
    else:
        assert f"(engine transformers: {decoding['precision']} weights, " in report
    assert results["metrics"]["heldout_loss"]["tuned"] == pytest.approx(meta["heldout_loss_tuned"], rel=1e-5)
    # What the suite could not measure is recorded the same way everywhere.
    suite = results["task_suite"]
    assert meta["families_missing"] == len(suite["families_missing"])
    assert meta["tasks_missing"] == len(suite["tasks_missing"])
    assert meta["warnings"] == results["warnings"] and meta["warning_count"] == len(results["warnings"])
    covered = {c["task"] for c in suite["cases"]}
    assert not covered & set(suite["tasks_missing"])
    assert all(any(f"`{t}`" in w for w in results["warnings"]) for t in suite["tasks_missing"])
    # The model at work: four arms (retrieval over the town's own scrubbed docs, never the test's
    # sources), episodes and the safety suite per variant, the canaries watched in every generation.
    from gastown_ft.evaluation.arms import ARMS

    assert list(meta)[:2] == ["verdict", "base_vs_tuned"] and meta["verdict"].startswith("PASSED")
    assert meta["base_vs_tuned"].splitlines()[0] == "| metric | " + " | ".join(ARMS) + " |"
    retrieval = results["retrieval"]
    assert set(retrieval["arms"]) == set(ARMS) and retrieval["documents"] > 0 and retrieval["passages"] > 0
    assert any(c["retrieved"]["passages"] for c in retrieval["cases"])
    assert results["episodes"]["tuned"]["episodes"] == 5 and results["safety"]["base"]["cases"] == 3
    assert results["canary"]["canaries"] == 3 and results["canary"]["hits"] == []
    checks = {c["name"] for c in results["decision"]["checks"]}
    assert {"unsafe_actions", "canary"} <= checks
    assert "## Base against tuned, every arm" in report and "## Safety suite" in report
    # the scrub took the planted canaries out before training: not in the corpus the model saw
    import pyarrow.parquet as pq

    from gastown_ft.demo.canaries import CANARIES

    corpus = settings.artifacts.dir / "corpus"
    seen = [corpus / "scrubbed_documents.parquet", *sorted((corpus / "splits" / "data").glob("*.parquet"))]
    text = "".join(json.dumps(pq.read_table(p).to_pylist()) for p in seen)
    assert not any(c in text for c in CANARIES)


@pytest.mark.training
def test_the_default_gate_refuses_a_tuned_model_that_does_not_beat_the_base(tiny, tmp_path):
    from gastown_ft.evaluation import load_eval_results
    from gastown_ft.orchestrate import materialize_assets
    from gastown_ft.status import asset_status

    settings, instance, _, _, _, _ = tiny
    cfg = _settings_with(settings, tmp_path, guard_max_ppl_ratio=100.0)  # the default suite gate
    assert (cfg.evaluation.suite_min_gain, cfg.evaluation.suite_floor) == (0.0, 0.05)
    materialize_assets(cfg, instance, ["eval_report"])
    meta = asset_status(instance)["eval_report"]["metadata"]
    results = load_eval_results(meta["results_path"])
    base, tuned = meta["suite_score_base"], meta["suite_score_tuned"]
    beats = tuned > base + 1e-9 and tuned >= 0.05 - 1e-9
    assert results["passed"] is beats and meta["passed"] is beats
    if not beats:  # the likely case for the tiny model: say why
        failed = {c["name"] for c in results["decision"]["checks"] if not c["passed"]}
        assert failed and failed <= {"task_suite", "task_suite_floor"}
        assert asset_status(instance)["eval_report"]["failed_checks"] == ["tuned_not_worse_than_base"]


@pytest.mark.training
def test_failed_check_blocks_what_comes_after(tiny, tmp_path):
    from dagster import AssetKey, AssetSelection, asset, materialize

    from gastown_ft.definitions import defs
    from gastown_ft.resources import GastownSettings

    settings, instance, _, _, _, _ = tiny
    # A gain of a full point over the base is impossible (scores are 0-1): the gate must fail.
    cfg = _settings_with(settings, tmp_path, suite_min_gain=1.0, guard_max_ppl_ratio=100.0)

    @asset(deps=[AssetKey("eval_report")])
    def after_eval() -> None:  # stands in for the export
        raise AssertionError("must not run after a failed blocking check")

    result = materialize(
        [*defs.assets, after_eval],
        selection=AssetSelection.assets("eval_report", "after_eval"),
        instance=instance,
        resources={"settings": GastownSettings(config_file=str(cfg.config_path)), "progress_sink": None},
        raise_on_error=False,
    )
    assert not result.success
    check = next(e for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION")
    assert not check.event_specific_data.passed and "task_suite" in check.event_specific_data.description
    started = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    assert started == {"eval_report"}  # the downstream step never started
    assert [e.step_key for e in result.get_step_failure_events()] == ["eval_report"]


@pytest.mark.training
def test_the_merged_copy_decodes_like_the_adapter(tiny):
    """prepare_decoding: the tuned variant becomes a merged copy with the adapter's answers; the base
    variant stays the base."""
    import torch

    from gastown_ft.evaluation.generate import Prompt, generate, load_model
    from gastown_ft.evaluation.tasks import build_task_suite

    _, _, base, adapter, _, test = tiny
    fresh = load_model(base, adapter)  # the module's shared model stays unmerged
    prompts = [Prompt(c.prompt.messages, c.prompt.tools) for c in build_task_suite(test, 2)][:6]
    before = {
        v: [g.text for g in generate(fresh, prompts, variant=v, max_new_tokens=24)] for v in ("base", "tuned")
    }
    ids = torch.tensor([[1, 5, 9, 14, 3]])
    with torch.no_grad(), fresh.variant("tuned") as model:
        logits_adapter = model(input_ids=ids).logits
    fresh.prepare_decoding(bf16=False)
    assert fresh.merged is not None and not hasattr(fresh.merged, "peft_config")
    with torch.no_grad(), fresh.variant("tuned") as model:
        assert model is fresh.merged
        assert torch.allclose(model(input_ids=ids).logits, logits_adapter, atol=1e-4)
    after = {
        v: [g.text for g in generate(fresh, prompts, variant=v, max_new_tokens=24)] for v in ("base", "tuned")
    }
    assert after == before
