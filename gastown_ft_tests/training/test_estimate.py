"""Memory and time estimates, the budget refusal, and the estimate against measured peak RSS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from transformers import LlamaConfig

from gastown_ft.config import TrainingConfig
from gastown_ft.errors import GastownFTError
from gastown_ft.training.estimate import (
    MB,
    available_memory_bytes,
    budget_suggestions,
    check_budget,
    estimate_training,
    measure_matmul_flops,
    model_dims,
)
from gastown_ft_tests.training.test_data import make_tokenizer, save_tiny_model

REPO = Path(__file__).resolve().parents[2]

MEDIUM = dict(
    hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4, vocab_size=4096
)


def medium_config() -> LlamaConfig:
    return LlamaConfig(**MEDIUM, num_key_value_heads=4)


def estimate(cfg: TrainingConfig, **kw):
    # 5.6M parameters of which rank 16 on every projection is ~0.47M
    return estimate_training(medium_config(), 470_000, 5_600_000, cfg, 100_000, matmul_flops=5e10, **kw)


def test_estimate_adds_up_and_scales_with_batch_sequence_and_rank():
    cfg = TrainingConfig(batch_size=8, max_seq_len=512, lora_rank=16, max_steps=None, epochs=2)
    e = estimate(cfg)
    assert e.peak_bytes == sum(e.breakdown.values())
    assert set(e.breakdown) >= {
        "baseline",
        "weights",
        "lora_state",
        "activations",
        "logits",
        "allocator_retained",
    }
    assert e.breakdown["weights"] == 4 * 5_600_000
    assert e.breakdown["lora_state"] == 16 * 470_000
    # default: the 100k tokens packed into 512-token rows, 8 a batch
    assert e.steps == 2 * -(-196 // 8) and e.tokens_per_step > 0
    assert e.step_seconds > 0 and e.total_seconds == pytest.approx(e.step_seconds * e.steps)

    bigger = estimate(cfg.model_copy(update={"batch_size": 16}))
    assert bigger.breakdown["activations"] == 2 * e.breakdown["activations"]
    assert bigger.breakdown["logits"] == 2 * e.breakdown["logits"]
    no_dropout = estimate(cfg.model_copy(update={"lora_dropout": 0.0}))
    assert no_dropout.breakdown["activations"] < e.breakdown["activations"]
    # the corpus' own facts: shorter rows and fewer trained tokens lower the peak
    tight = estimate(cfg, longest_seq=200, max_trained_tokens=400)
    assert tight.peak_bytes < e.peak_bytes
    # the packed block mask is counted; eager attention keeps the seq x seq probabilities
    assert estimate(cfg, packed=True).breakdown["attention"] == 8 * 512 * 512
    eager = medium_config()
    eager._attn_implementation = "eager"
    eager_e = estimate_training(eager, 470_000, 5_600_000, cfg, 100_000, matmul_flops=5e10)
    assert eager_e.breakdown["attention"] == 2 * 4 * 8 * 4 * 512 * 512 * 4


def test_model_config_may_be_a_dict():
    cfg = TrainingConfig(max_steps=10)
    from_dict = estimate_training({**MEDIUM}, 470_000, 5_600_000, cfg, 50_000, matmul_flops=5e10)
    assert (
        from_dict.peak_bytes
        == estimate_training(medium_config(), 470_000, 5_600_000, cfg, 50_000, matmul_flops=5e10).peak_bytes
    )
    assert from_dict.steps == 10
    assert model_dims(MEDIUM)["head_dim"] == 64


def test_over_budget_is_refused_with_concrete_suggestions():
    cfg = TrainingConfig(batch_size=8, grad_accum=1, max_seq_len=512, lora_rank=16, lora_alpha=32)
    e = estimate(cfg)
    check_budget(e, e.peak_bytes)  # at the budget: fine
    with pytest.raises(GastownFTError) as err:
        check_budget(e, 256 * MB)
    text = str(err.value)
    print(text)
    assert f"estimated peak memory {e.peak_bytes / MB:,.0f} MB is over the budget of 256 MB" in text
    assert "batch_size = 4, grad_accum = 2" in text
    assert "max_seq_len = 256" in text
    assert "lora_rank = 8, lora_alpha = 16" in text
    assert "all together" in text and "still over" in text
    assert err.value.hint and "memory_budget_mb" in err.value.hint
    assert "gradient_checkpointing = true" in text
    assert "nf4" not in text  # QLoRA is suggested on CUDA only
    suggestions = budget_suggestions(e)
    assert len(suggestions) == 5
    for label, variant in suggestions:
        assert variant.peak_bytes < e.peak_bytes, label
        assert f"about {variant.peak_bytes / MB:,.0f} MB" in text
    halved = suggestions[0][1]
    assert halved.inputs["cfg"].batch_size * halved.inputs["cfg"].grad_accum == 8  # same effective batch
    assert abs(halved.steps - e.steps) <= 1  # the same epochs, up to rounding of the last step
    # A budget between the halved batch and the original: that suggestion is marked as fitting.
    with pytest.raises(
        GastownFTError, match=r"grad_accum = 2 \(same effective batch\): about [\d,]+ MB \(fits\)"
    ):
        check_budget(e, (halved.peak_bytes + e.peak_bytes) // 2)


def test_available_memory_and_matmul_throughput():
    avail = available_memory_bytes()
    total = (
        int(next(line for line in open("/proc/meminfo") if line.startswith("MemTotal:")).split()[1]) * 1024
    )
    assert 0 < avail <= total
    flops = measure_matmul_flops(0.1)
    assert 1e8 < flops < 1e14


CALIBRATION_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import transformers
    transformers.utils.logging.disable_progress_bar()
    from gastown_ft.config import TrainingConfig
    from gastown_ft.training.lora import plan_training, train_lora
    from gastown_ft_tests.training.test_estimate import long_chat

    for name, base, out, cfg in json.loads(sys.argv[1]):
        cfg = TrainingConfig(**cfg)
        plan = plan_training(base, [long_chat(i) for i in range(16)], [], cfg)
        result = train_lora(plan, out)
        print(json.dumps({"name": name, "estimate": plan.estimate.peak_bytes, "measured": result.peak_rss_bytes,
                          "tokens_per_s": result.tokens_per_s, "estimated_tokens_per_s": plan.estimate.tokens_per_s,
                          "breakdown": plan.estimate.breakdown, "n_total": plan.n_total}), flush=True)
    """
)


def _calibrate(runs: list, timeout: int) -> list[dict]:
    """CALIBRATION_SCRIPT's results for `runs`, trained in one fresh process (its own peak RSS)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", CALIBRATION_SCRIPT, json.dumps(runs)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def long_chat(i: int, turns: int = 6) -> dict:
    """An agent session of several tool-using turns (about 600 tokens with the test tokenizer)."""
    from gastown_ft.corpus.examples import BASH_TOOL, assistant, make_example, tool_call, tool_result, user

    messages = []
    for t in range(turns):
        bead = f"gt-{i * 10 + t}"
        messages += [
            user(f"Next: work on {bead} in rig ledger, then report."),
            assistant(
                f"Running bd show {bead}.", [tool_call(f"c{t}", "Bash", {"command": f"bd show {bead}"})]
            ),
            tool_result(f"c{t}", f"{bead}: open, priority {t}, assigned to polecat {i}"),
            assistant(f"{bead} is open; claiming it now with bd update {bead} --claim."),
        ]
    return make_example(
        task="agent_turns",
        group_id=f"g{i}",
        source_ids=[],
        role="polecat",
        rig="ledger",
        tools=[BASH_TOOL],
        messages=messages,
    )


@pytest.mark.training
def test_estimate_is_within_30_percent_of_the_measured_peak_rss(tmp_path):
    """Small then medium in one fresh process (peak RSS only grows, and the small one ends first)."""
    tok = make_tokenizer()
    small = save_tiny_model(tmp_path / "small", tok, hidden=64, layers=2)
    medium = save_tiny_model(tmp_path / "medium", tok, hidden=256, layers=4, intermediate=688, vocab=4096)
    common = dict(max_steps=4, checkpoint_every=100, threads=1, lora_rank=16, lora_alpha=32, precision="fp32")
    runs = [
        (
            "small: 0.2M params, seq 256, batch 8",
            str(small),
            str(tmp_path / "o1"),
            {**common, "max_seq_len": 256, "batch_size": 8},
        ),
        (
            "medium: 5.6M params, vocab 4096, seq 512, batch 8",
            str(medium),
            str(tmp_path / "o2"),
            {**common, "max_seq_len": 512, "batch_size": 8},
        ),
    ]
    results = _calibrate(runs, timeout=300)
    assert len(results) == 2
    for r in results:
        ratio = r["estimate"] / r["measured"]
        print(
            f"{r['name']}: estimated {r['estimate'] / MB:,.0f} MB, measured peak RSS {r['measured'] / MB:,.0f} MB"
            f" (x{ratio:.2f}); {r['tokens_per_s']:,.0f} tokens/s measured, {r['estimated_tokens_per_s']:,.0f} estimated"
        )
        assert 0.7 <= ratio <= 1.3, r


LLAMA_8B = {
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
}


def _gpu_estimate(quantization: str = "none", **cfg):
    from gastown_ft.config import TrainingConfig
    from gastown_ft.training.estimate import estimate_training

    tcfg = TrainingConfig(batch_size=1, max_seq_len=512, lora_rank=16, **cfg)
    n_total, n_trainable = 8_030_000_000, 42_000_000
    return estimate_training(
        LLAMA_8B,
        n_trainable,
        n_total + n_trainable,
        tcfg,
        200_000,
        device_kind="cuda",
        precision="bf16",
        quantization=quantization,
        matmul_flops=700e12,
    )


def test_an_8b_model_on_a_16gb_card_is_refused_without_qlora():
    from gastown_ft.errors import GastownFTError
    from gastown_ft.training.estimate import check_budget

    card = 15 * 1024**3  # a 16 GB card less the CUDA context
    plain, qlora = _gpu_estimate(), _gpu_estimate("nf4")
    assert plain.peak_bytes > card >= qlora.peak_bytes
    assert plain.breakdown["weights"] > 15 * 1024**3  # bf16 weights alone do not fit
    assert qlora.breakdown["weights"] < plain.breakdown["weights"] / 2
    with pytest.raises(GastownFTError) as err:
        check_budget(plain, card)
    text = str(err.value)
    assert 'quantization = "nf4"' in text and "(fits)" in text.split("nf4")[1].splitlines()[0]
    check_budget(qlora, card)  # no error


def test_top_layers_and_checkpointing_lower_the_estimate():
    full = _gpu_estimate()
    top = _gpu_estimate(lora_layers=8)
    ckpt = _gpu_estimate(gradient_checkpointing=True)
    assert top.breakdown["activations"] == pytest.approx(full.breakdown["activations"] * 8 / 32, rel=1e-6)
    assert ckpt.breakdown["activations"] < full.breakdown["activations"] / 4
    assert top.step_seconds < full.step_seconds


@pytest.mark.training
@pytest.mark.slow
def test_smollm2_trains_and_its_estimate_is_within_20_percent(smollm2_dir, tmp_path):
    """A few bf16 LoRA steps of the real base model in a fresh process: it trains, and the plan's
    memory estimate is within 20% of the measured peak RSS."""
    runs = [
        (
            "SmolLM2-135M: seq 512, batch 4, all layers",
            str(smollm2_dir),
            str(tmp_path / "s"),
            {
                "max_steps": 3,
                "batch_size": 4,
                "max_seq_len": 512,
                "checkpoint_every": 100,
                "threads": 2,
                "precision": "auto",
                "memory_budget_mb": 100000,
                "learning_rate": 1e-3,
            },
        )
    ]
    (r,) = _calibrate(runs, timeout=600)
    ratio = r["estimate"] / r["measured"]
    print(
        f"{r['name']}: estimated {r['estimate'] / MB:,.0f} MB, measured {r['measured'] / MB:,.0f} MB (x{ratio:.2f})"
    )
    assert 0.8 <= ratio <= 1.2, r
    assert 130_000_000 < r["n_total"] < 145_000_000
    assert (tmp_path / "s" / "adapter" / "adapter_model.safetensors").is_file()
