"""Memory and time of a LoRA run, estimated from first principles before anything is loaded.

Memory (fp32 throughout; bytes):

- weights: every parameter of the base model plus the adapter, 4 bytes each;
- LoRA state: for each trainable parameter its gradient and AdamW's two moments (12 bytes), plus the
  transient buffers of the optimizer step and gradient clipping (4 more);
- activations autograd keeps for the backward pass, measured with `saved_tensors_hooks` on LLaMA
  blocks: per token and layer 8 * hidden + 4 * intermediate floats (norm inputs, q/k/v after RoPE,
  attention output and its log-sum-exp, gate, up, SiLU, their product) plus one rank-wide LoRA-A
  output per adapted projection; with LoRA dropout on, peft draws a dropped copy (and a 1-byte mask)
  of every adapted projection's input, about 1.3 * the sum of those input widths more;
- attention: the fused CPU attention kernel never materialises the seq x seq scores; packed rows add a
  batch * seq^2 boolean block mask, and eager attention keeps batch * heads * seq^2 probabilities a
  layer (twice: softmax and its input);
- logits: one row of `vocab` floats per trained token (the trainer projects only the positions that
  carry a label), LOGIT_COPIES times (logits, log-softmax, its gradient);
- allocator: glibc keeps most freed temporaries of the forward and backward passes mapped (their
  sizes, 1-30 MB, sit under its dynamic mmap threshold), so the peak RSS runs ALLOCATOR_RETENTION
  times the saved activations above them; it settles after two or three steps;
- framework baseline: the Python process with torch, transformers, tokenizers and peft loaded.

The constants were fitted to the peak RSS (`resource.getrusage`) after several steps of real runs on a
2-core CPU, over models of 0.2M-22M parameters, sequences of 256-512 tokens, batches of 4-16, vocabularies
of 600-16,000 and LoRA dropout on and off: the estimate is within about 10% of the measurement there
(gastown_ft_tests/training/test_estimate.py checks a small and a medium configuration within 30%).

Time: FLOPs of one optimizer step over a measured fp32 matmul throughput, plus the memory-bound work.
Per token, the frozen projections cost 2 FLOPs a weight forward and 2 backward (the input gradient;
their weight gradient is never formed), the adapter 6 per weight (forward, input and weight
gradients), causal attention 2 * seq * hidden per layer forward and twice that backward, the LM head 4 *
hidden * vocab per trained token. Those run at MATMUL_EFFICIENCY of `measure_matmul_flops`; the
elementwise work (norms, RoPE, SiLU, dropout, their gradients) is memory-bound and costs
SECONDS_PER_ACTIVATION_BYTE per byte of saved activations. Fitted on the same runs (1 and 2 threads,
quiet machine): within about 20% of the measured step time. A busy CPU measures a lower matmul
throughput, and the estimate follows it only in part.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

from gastown_ft.errors import GastownFTError

MB = 1024 * 1024

# Calibrated constants (see the module docstring).
BASELINE_BYTES = 415 * MB
ACT_HIDDEN = 8  # floats saved per token and layer, per unit of hidden size
ACT_INTERMEDIATE = 4  # ... per unit of intermediate size
ACT_RANK = 1  # ... per unit of LoRA rank, per adapted projection
DROPOUT_COPY = 1.3  # ... per unit of the adapted projections' input widths, with LoRA dropout on
# retained = ALLOCATOR_RETENTION * activations + ALLOCATOR_RETENTION_LAYERS * one layer's activations:
# fitted on 4-layer models (1.14x their activations) and SmolLM2's 30 layers (0.38x), with the training
# step that frees each step's batches and losses before the next (measured peak RSS, 2 cores)
ALLOCATOR_RETENTION = 0.265
ALLOCATOR_RETENTION_LAYERS = 3.51
LOGIT_COPIES = 3
OPTIMIZER_BYTES_PER_TRAINABLE = 16
MATMUL_EFFICIENCY = 0.92
SECONDS_PER_ACTIVATION_BYTE = 1.13e-9
SECONDS_PER_STEP = 0.002  # optimizer update and clipping of the (small) adapter
BF16_CPU_ACTIVATIONS = 0.745  # activations and what glibc keeps under CPU bf16 autocast, relative to fp32
NF4_BYTES_PER_WEIGHT = 0.56  # 4-bit NF4 with double-quantized block scales (bitsandbytes)
GPU_BASELINE_BYTES = 64 * MB  # what torch.cuda.max_memory_allocated sees besides the parts below
GPU_ALLOCATOR_RETENTION = 0.1


@dataclass
class Estimate:
    peak_bytes: int
    breakdown: dict[str, int]
    step_seconds: float
    total_seconds: float
    steps: int
    tokens_per_step: int
    flops_per_step: float = 0.0
    matmul_flops: float = 0.0
    inputs: dict[str, Any] = field(default_factory=dict, repr=False)  # to re-estimate variants

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_per_step / self.step_seconds if self.step_seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "peak_bytes": self.peak_bytes,
            "breakdown": dict(self.breakdown),
            "step_seconds": self.step_seconds,
            "total_seconds": self.total_seconds,
            "steps": self.steps,
            "tokens_per_step": self.tokens_per_step,
            "tokens_per_s": self.tokens_per_s,
            "flops_per_step": self.flops_per_step,
            "matmul_flops": self.matmul_flops,
        }


def _get(config: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        value = config.get(name) if isinstance(config, dict) else getattr(config, name, None)
        if value is not None:
            return value
    return default


def model_dims(model_config: Any) -> dict[str, int]:
    """hidden, intermediate, layers, heads, kv_heads, head_dim, vocab of a transformers config (or dict)."""
    hidden = int(_get(model_config, "hidden_size", "n_embd", "d_model"))
    heads = int(_get(model_config, "num_attention_heads", "n_head", default=1))
    return {
        "hidden": hidden,
        "intermediate": int(_get(model_config, "intermediate_size", "n_inner", default=4 * hidden)),
        "layers": int(_get(model_config, "num_hidden_layers", "n_layer", "num_layers")),
        "heads": heads,
        "kv_heads": int(_get(model_config, "num_key_value_heads", default=heads)),
        "head_dim": int(_get(model_config, "head_dim", default=hidden // heads)),
        "vocab": int(_get(model_config, "vocab_size")),
    }


_MATMUL_CACHE: dict[int, float] = {}


def measure_matmul_flops(
    seconds: float = 0.5, *, size: int = 512, threads: int | None = None, dtype: Any = None
) -> float:
    """FLOP/s of torch.matmul on this CPU (square `size` matrices, fp32 unless `dtype`, ~`seconds`)."""
    import torch

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        a = torch.randn(size, size, generator=torch.Generator().manual_seed(0)).to(dtype or torch.float32)
        b = torch.randn(size, size, generator=torch.Generator().manual_seed(1)).to(dtype or torch.float32)
        torch.matmul(a, b)  # warm up
        n = 0
        start = time.perf_counter()
        while True:
            torch.matmul(a, b)
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
        return 2.0 * size**3 * n / elapsed
    finally:
        torch.set_num_threads(previous)


def matmul_flops_cached(threads: int | None = None) -> float:
    """measure_matmul_flops once per process and thread count."""
    key = threads or 0
    if key not in _MATMUL_CACHE:
        _MATMUL_CACHE[key] = measure_matmul_flops(0.3, threads=threads)
    return _MATMUL_CACHE[key]


_BF16_CACHE: dict[int, float] = {}
_GPU_CACHE: dict[tuple[str, str], float] = {}


def bf16_matmul_flops_cached(threads: int | None = None) -> float:
    """bfloat16 matmul FLOP/s on this CPU (AMX / AVX512-BF16 where present), once per thread count."""
    import torch

    key = threads or 0
    if key not in _BF16_CACHE:
        _BF16_CACHE[key] = measure_matmul_flops(0.3, threads=threads, dtype=torch.bfloat16)
    return _BF16_CACHE[key]


def gpu_matmul_flops_cached(device: str, precision: str) -> float:
    """Matmul FLOP/s of a CUDA device in the compute precision (4096-square products), once."""
    import torch

    key = (device, precision)
    if key not in _GPU_CACHE:
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
        a = torch.randn(4096, 4096, device=device, dtype=dtype)
        b = torch.randn(4096, 4096, device=device, dtype=dtype)
        for _ in range(3):
            a @ b
        torch.cuda.synchronize(device)
        n, start = 20, time.perf_counter()
        for _ in range(n):
            a @ b
        torch.cuda.synchronize(device)
        _GPU_CACHE[key] = 2 * 4096**3 * n / (time.perf_counter() - start)
    return _GPU_CACHE[key]


def _linear_params_per_layer(d: dict[str, int]) -> int:
    h, i, q, kv = d["hidden"], d["intermediate"], d["heads"] * d["head_dim"], d["kv_heads"] * d["head_dim"]
    return h * q + 2 * h * kv + q * h + 3 * h * i


def estimate_training(
    model_config: Any,
    n_trainable: int,
    n_total: int,
    cfg,
    n_train_tokens: int,
    *,
    n_sequences: int | None = None,
    longest_seq: int | None = None,
    max_trained_tokens: int | None = None,
    padded_tokens: int | None = None,
    trained_tokens: int | None = None,
    packed: bool | None = None,
    matmul_flops: float | None = None,
    device_kind: str = "cpu",
    precision: str = "fp32",
    quantization: str = "none",
) -> Estimate:
    """Peak memory and time of training `cfg` (a TrainingConfig) on `n_train_tokens` tokens an epoch.

    Optional facts from the tokenized corpus sharpen it: `n_sequences` (rows an epoch, after packing;
    default: the tokens packed into max_seq_len rows), `longest_seq` (the longest row), the most
    trained tokens one micro-batch can hold (`max_trained_tokens`), the padded tokens an epoch
    (`padded_tokens`) and the trained tokens an epoch (`trained_tokens`)."""
    inputs = {
        "model_config": model_config,
        "n_trainable": n_trainable,
        "n_total": n_total,
        "cfg": cfg,
        "n_train_tokens": n_train_tokens,
        "n_sequences": n_sequences,
        "longest_seq": longest_seq,
        "max_trained_tokens": max_trained_tokens,
        "padded_tokens": padded_tokens,
        "trained_tokens": trained_tokens,
        "packed": packed,
        "matmul_flops": matmul_flops,
        "device_kind": device_kind,
        "precision": precision,
        "quantization": quantization,
    }
    d = model_dims(model_config)
    h, inter, layers, vocab = d["hidden"], d["intermediate"], d["layers"], d["vocab"]
    batch, seq = cfg.batch_size, min(longest_seq or cfg.max_seq_len, cfg.max_seq_len)
    packed = cfg.packing if packed is None else packed
    n_sequences = n_sequences or max(1, math.ceil(n_train_tokens / cfg.max_seq_len))
    padded_tokens = padded_tokens or n_train_tokens
    trained_tokens = trained_tokens if trained_tokens is not None else n_train_tokens
    tokens = batch * seq
    max_trained = min(max_trained_tokens or tokens, tokens)

    # --- memory
    gpu = device_kind == "cuda"
    # Layers below the lowest adapted one keep nothing for the backward pass: no input there needs a grad.
    grad_layers = min(layers, cfg.lora_layers or layers)
    frozen = n_total - n_trainable
    if gpu and quantization == "nf4":
        linear = layers * _linear_params_per_layer(d)
        weights = int(NF4_BYTES_PER_WEIGHT * linear + 2 * max(0, frozen - linear)) + 4 * n_trainable
    elif gpu and precision in ("bf16", "fp16"):
        weights = 2 * frozen + 4 * n_trainable
    else:
        weights = 4 * n_total
    lora_state = OPTIMIZER_BYTES_PER_TRAINABLE * n_trainable
    widths = _adapted_input_widths(cfg.target_modules, d)
    per_token_layer = ACT_HIDDEN * h + ACT_INTERMEDIATE * inter + ACT_RANK * cfg.lora_rank * len(widths)
    if cfg.lora_dropout > 0:
        per_token_layer += DROPOUT_COPY * sum(widths)
    if cfg.gradient_checkpointing:
        # only each layer's input is kept; one layer at a time is recomputed in full
        act_floats = tokens * (grad_layers * h + per_token_layer)
    else:
        act_floats = tokens * grad_layers * per_token_layer
    act_bytes = 2 if gpu and precision in ("bf16", "fp16") else 4
    activations = int(
        act_bytes * act_floats * (BF16_CPU_ACTIVATIONS if not gpu and precision == "bf16" else 1)
    )
    attention = batch * seq * seq if packed else 0
    if _get(model_config, "_attn_implementation", "attn_implementation") == "eager":
        attention += 2 * act_bytes * batch * d["heads"] * seq * seq * grad_layers
    logits = 4 * LOGIT_COPIES * max_trained * vocab
    breakdown = {
        "baseline": GPU_BASELINE_BYTES if gpu else BASELINE_BYTES,
        "weights": weights,
        "lora_state": lora_state,
        "activations": activations,
        "attention": attention,
        "logits": logits,
        # glibc on the CPU keeps freed temporaries mapped; CUDA's caching allocator fragments less
        "allocator_retained": int(
            GPU_ALLOCATOR_RETENTION * activations
            if gpu
            else ALLOCATOR_RETENTION * activations + ALLOCATOR_RETENTION_LAYERS * activations / grad_layers
        ),
    }
    peak = int(sum(breakdown.values()))

    # --- time
    batches_per_epoch = max(1, math.ceil(n_sequences / batch))
    if cfg.max_steps:
        steps = cfg.max_steps
    else:
        steps = max(1, math.ceil(cfg.epochs * batches_per_epoch / cfg.grad_accum))
    padded_per_batch = padded_tokens / batches_per_epoch
    trained_per_batch = trained_tokens / batches_per_epoch
    mean_seq = padded_per_batch / max(1, min(batch, n_sequences))
    frozen_linear = layers * _linear_params_per_layer(d)
    q_width = d["heads"] * d["head_dim"]
    # causal attention: QK^T and AV over mean_seq / 2 keys on average, 2 FLOPs a multiply-add, x3 with backward
    # forward through every layer (2 FLOPs a weight), backward (input gradients, 2) only down to the
    # lowest adapted layer
    flops_per_token = (2 + 2 * grad_layers / layers) * frozen_linear + (1 + 2 * grad_layers / layers) * (
        layers * 2 * mean_seq * q_width
    )
    flops_per_batch = padded_per_batch * flops_per_token + trained_per_batch * 4 * h * vocab
    flops_per_batch += 6 * n_trainable * padded_per_batch
    flops_per_step = flops_per_batch * cfg.grad_accum
    peak_flops = matmul_flops or matmul_flops_cached(cfg.threads or len(os.sched_getaffinity(0)))
    activation_bytes_per_batch = 4 * padded_per_batch * layers * per_token_layer
    step_seconds = (
        flops_per_step / (MATMUL_EFFICIENCY * peak_flops)
        + cfg.grad_accum * activation_bytes_per_batch * SECONDS_PER_ACTIVATION_BYTE
        + SECONDS_PER_STEP
    )
    tokens_per_step = int(round(n_train_tokens / batches_per_epoch * cfg.grad_accum))  # real, not padding
    return Estimate(
        peak_bytes=peak,
        breakdown=breakdown,
        step_seconds=step_seconds,
        total_seconds=step_seconds * steps,
        steps=steps,
        tokens_per_step=tokens_per_step,
        flops_per_step=flops_per_step,
        matmul_flops=peak_flops,
        inputs=inputs,
    )


def _adapted_input_widths(target_modules: Any, d: dict[str, int]) -> list[int]:
    """Input widths of the adapted projections of one LLaMA block (hidden for names it does not know)."""
    h, q = d["hidden"], d["heads"] * d["head_dim"]
    widths = {
        "q_proj": h,
        "k_proj": h,
        "v_proj": h,
        "o_proj": q,
        "gate_proj": h,
        "up_proj": h,
        "down_proj": d["intermediate"],
    }
    if target_modules == "all-linear":
        return list(widths.values())
    return [widths.get(name, h) for name in target_modules]


# --- memory available and the budget check -------------------------------------------------------


def _cgroup_room() -> int | None:
    """Bytes the cgroup (v2) still allows, when it sets a limit."""
    try:
        limit = open("/sys/fs/cgroup/memory.max").read().strip()
        if limit == "max":
            return None
        current = int(open("/sys/fs/cgroup/memory.current").read().strip())
        return max(0, int(limit) - current)
    except (OSError, ValueError):
        return None


def available_memory_bytes() -> int:
    """Memory a new allocation can use: MemAvailable of /proc/meminfo (psutil where there is none),
    capped by the cgroup's remaining room when a limit is set."""
    available = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if available is None:
        import psutil

        available = int(psutil.virtual_memory().available)
    room = _cgroup_room()
    return min(available, room) if room is not None else available


def _mb(n: float) -> str:
    return f"{n / MB:,.0f} MB"


def _variant(estimate: Estimate, **changes: Any) -> Estimate:
    inputs = dict(estimate.inputs)
    cfg = inputs["cfg"]
    new_cfg = cfg.model_copy(update=changes)
    inputs["cfg"] = new_cfg
    if "lora_rank" in changes:
        ratio = changes["lora_rank"] / cfg.lora_rank
        new_trainable = int(inputs["n_trainable"] * ratio)
        inputs["n_total"] = inputs["n_total"] - inputs["n_trainable"] + new_trainable
        inputs["n_trainable"] = new_trainable
    if "max_seq_len" in changes:
        new_len = changes["max_seq_len"]
        if inputs.get("longest_seq"):
            inputs["longest_seq"] = min(inputs["longest_seq"], new_len)
        if inputs.get("max_trained_tokens"):
            inputs["max_trained_tokens"] = min(inputs["max_trained_tokens"], new_cfg.batch_size * new_len)
    if "batch_size" in changes and inputs.get("max_trained_tokens"):
        inputs["max_trained_tokens"] = math.ceil(
            inputs["max_trained_tokens"] * changes["batch_size"] / cfg.batch_size
        )
    config = inputs.pop("model_config")
    n_trainable, n_total = inputs.pop("n_trainable"), inputs.pop("n_total")
    cfg_new, tokens = inputs.pop("cfg"), inputs.pop("n_train_tokens")
    return estimate_training(config, n_trainable, n_total, cfg_new, tokens, **inputs)


def budget_suggestions(estimate: Estimate) -> list[tuple[str, Estimate]]:
    """Config changes that lower the peak, each with its own new estimate."""
    cfg = estimate.inputs["cfg"]
    out: list[tuple[str, Estimate]] = []
    if cfg.batch_size > 1:
        b, a = cfg.batch_size // 2, cfg.grad_accum * 2
        out.append(
            (
                f"batch_size = {b}, grad_accum = {a} (same effective batch)",
                _variant(estimate, batch_size=b, grad_accum=a),
            )
        )
    if cfg.max_seq_len >= 64:
        n = cfg.max_seq_len // 2
        out.append(
            (f"max_seq_len = {n} (longer examples are cut or dropped)", _variant(estimate, max_seq_len=n))
        )
    if cfg.lora_rank > 1:
        r = cfg.lora_rank // 2
        out.append(
            (
                f"lora_rank = {r}, lora_alpha = {max(1, cfg.lora_alpha // 2)}",
                _variant(estimate, lora_rank=r, lora_alpha=max(1, cfg.lora_alpha // 2)),
            )
        )
    if not cfg.gradient_checkpointing:
        out.append(
            (
                "gradient_checkpointing = true (about 30% slower)",
                _variant(estimate, gradient_checkpointing=True),
            )
        )
    if estimate.inputs.get("device_kind") == "cuda" and estimate.inputs.get("quantization") != "nf4":
        inputs = {**estimate.inputs, "quantization": "nf4"}
        config = inputs.pop("model_config")
        n_trainable, n_total = inputs.pop("n_trainable"), inputs.pop("n_total")
        q_cfg, tokens = inputs.pop("cfg"), inputs.pop("n_train_tokens")
        out.append(
            (
                'quantization = "nf4" (QLoRA: the frozen base in 4 bits; needs bitsandbytes)',
                estimate_training(config, n_trainable, n_total, q_cfg, tokens, **inputs),
            )
        )
    if len(out) > 1:
        changes: dict[str, Any] = {}
        if cfg.batch_size > 1:
            changes.update(batch_size=1, grad_accum=cfg.grad_accum * cfg.batch_size)
        if cfg.max_seq_len >= 64:
            changes["max_seq_len"] = max(32, cfg.max_seq_len // 2)
        if cfg.lora_rank > 1:
            changes.update(lora_rank=max(1, cfg.lora_rank // 2), lora_alpha=max(1, cfg.lora_alpha // 2))
        text = ", ".join(f"{k} = {v}" for k, v in changes.items())
        out.append((f"all together: {text}", _variant(estimate, **changes)))
    return out


def check_budget(estimate: Estimate, budget_bytes: int) -> None:
    """Raise GastownFTError when the estimated peak is over the budget, listing concrete changes to
    [training] with the estimate each would give."""
    if estimate.peak_bytes <= budget_bytes:
        return
    lines = [
        f"estimated peak memory {_mb(estimate.peak_bytes)} is over the budget of {_mb(budget_bytes)}",
        "  largest parts: "
        + ", ".join(
            f"{k} {_mb(v)}" for k, v in sorted(estimate.breakdown.items(), key=lambda kv: -kv[1])[:3]
        ),
        "  set in [training] of gastown-ft.toml, for example:",
    ]
    for text, variant in budget_suggestions(estimate):
        fits = "fits" if variant.peak_bytes <= budget_bytes else "still over"
        lines.append(f"    {text}: about {_mb(variant.peak_bytes)} ({fits})")
    raise GastownFTError(
        "\n".join(lines),
        hint="or raise training.memory_budget_mb if the machine has the memory (the estimate is +-30%)",
    )


__all__ = [
    "Estimate",
    "available_memory_bytes",
    "budget_suggestions",
    "check_budget",
    "estimate_training",
    "measure_matmul_flops",
    "model_dims",
]
