"""LoRA fine-tuning on CPU: a plan (tokens, steps, memory and time estimates) and a resumable trainer.

`plan_training` tokenizes the splits, counts tokens and parameters (on a meta-device copy of the
model: no weights are loaded), builds the LoRA settings and estimates peak memory and wall time;
`TrainingPlan.describe()` is what `gastown-ft train --dry-run` prints.

`train_lora` is a plain PyTorch loop (faster than the HF Trainer's bookkeeping for models this small,
and fully under our control for exact resumption). One step's work is `StepRunner`, which the
data-parallel processes (torchrun, `training/parallel.py`) and the hivemind peers (`swarm/trainer.py`)
share; they differ only in their optimizer and in how they pick the rows of a step:

- the batches (`StepBatches`): micro-batch m of the run is batch m % B of epoch m // B (B batches an
  epoch) in `epoch_order(n, epoch, seed)`; an optimizer step takes `grad_accum` consecutive
  micro-batches, and its loss is the mean over all trained tokens of those micro-batches (not a mean
  of means), each token weighted by its example's `weight` (see `training/data.py`; validation is
  unweighted);
- AdamW (no weight decay) on the adapter, gradients clipped to norm 1.0, learning rate warmup then
  cosine / linear / constant (LambdaLR);
- a checkpoint every `checkpoint_every` optimizer steps and at the last step, in
  `out_dir/checkpoints/step-N/`: the adapter (peft format), optimizer and scheduler state, torch /
  Python / NumPy RNG states, the step, epoch and position in the epoch order, and the loss history;
  written to a temporary directory and renamed into place, the newest two kept;
- resumption restores all of that, so a resumed run takes the same batches, the same dropout masks
  and the same updates as an uninterrupted one: the final adapter and the loss curves are equal;
- cancellation: `should_stop()` is asked between steps, and a first Ctrl-C (SIGINT, in the main
  thread) is turned into the same request; either saves a checkpoint and returns status "cancelled".
  A KeyboardInterrupt raised anyway (a second Ctrl-C, or one raised by a callback) also saves the last
  completed step, unless it came in the middle of the optimizer update.

The loss: the decoder runs once, and only the hidden states at positions that carry a label go through
the LM head (for the usual agent example most tokens are prompt, so this saves most of the head's
time and memory). Right-padded rows need no attention mask under causal attention (a real token never
attends to a later pad), so unpacked batches use the fast causal kernel; packed rows pass their
position ids and no mask, which makes transformers build a block-diagonal causal mask.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import resource
import shutil
import signal
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gastown_ft import atomic
from gastown_ft.config import TrainingConfig
from gastown_ft.errors import GastownFTError
from gastown_ft.training.allocator import TRIM_EVERY, release_freed_memory
from gastown_ft.training.data import (
    IGNORE_INDEX,
    EncodeStats,
    cap_per_task,
    chain_conversations,
    collate,
    encode_examples,
    epoch_order,
    grouped_order,
    opening_keys,
    pack,
    piecewise_matches_full_text,
    sequences_fingerprint,
    share_prefixes,
    spread_by_task,
    trained_weight,
)
from gastown_ft.training.device import Hardware, detect
from gastown_ft.training.estimate import (
    Estimate,
    available_memory_bytes,
    bf16_matmul_flops_cached,
    budget_suggestions,
    check_budget,
    estimate_training,
    gpu_matmul_flops_cached,
    matmul_flops_cached,
)
from gastown_ft.training.parallel import DataParallel, from_environment, wrap

MB = 1024 * 1024
GPU_RESERVE_BYTES = 1024 * MB  # the CUDA context and the caching allocator's slack
CHECKPOINTS = "checkpoints"
ADAPTER = "adapter"
STATE_FILE = "training_state.json"
KEEP_CHECKPOINTS = 2
MAX_GRAD_NORM = 1.0
TOKENIZATION_SAMPLE = 200  # examples checked for piecewise == whole-text tokenization
FULL_HASH_BYTES = 256 * 1024 * 1024  # base model files up to this size are hashed whole
PARTIAL_HASH_BYTES = 16 * 1024 * 1024  # larger ones: size, first and last 16 MB


# --- the plan ------------------------------------------------------------------------------------


@dataclass
class TrainingPlan:
    base_model_dir: Path
    cfg: TrainingConfig
    tokenizer: Any = field(repr=False)
    model_config: Any = field(repr=False)
    train_sequences: list[dict[str, list[int]]] = field(repr=False)
    val_sequences: list[dict[str, list[int]]] = field(repr=False)
    train_stats: EncodeStats
    val_stats: EncodeStats
    target_modules: list[str]
    n_trainable: int
    n_total: int
    batches_per_epoch: int
    total_steps: int
    warmup_steps: int
    estimate: Estimate
    budget_bytes: int
    budget_source: str
    tokenization_checked: int = 0
    tokenization_mismatches: int = 0
    chained_from: int = 0  # corpus examples before chain_examples joined them into conversations
    capped_from: int = 0  # train examples before max_examples_per_task
    fingerprint: str = ""
    hardware: Hardware | None = field(default=None, repr=False)

    @property
    def pad_id(self) -> int:
        tok = self.tokenizer
        for value in (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id):
            if value is not None:
                return int(value)
        return 0

    def lora_kwargs(self) -> dict[str, Any]:
        cfg = self.cfg
        kwargs = {
            "r": cfg.lora_rank,
            "lora_alpha": cfg.lora_alpha,
            "lora_dropout": cfg.lora_dropout,
            "target_modules": list(self.target_modules),
            "use_dora": cfg.use_dora,
            "bias": "none",
            "task_type": "CAUSAL_LM",
        }
        layers = adapted_layers(self.model_config, cfg)
        if layers is not None:
            kwargs["layers_to_transform"] = layers
        return kwargs

    def lora_config(self):
        from peft import LoraConfig

        return LoraConfig(**self.lora_kwargs())

    @property
    def over_budget(self) -> bool:
        return self.estimate.peak_bytes > self.budget_bytes

    def check_budget(self) -> None:
        check_budget(self.estimate, self.budget_bytes)

    def describe(self) -> str:
        cfg, ts, vs, est = self.cfg, self.train_stats, self.val_stats, self.estimate
        rows_note = f", packed into {len(self.train_sequences):,} rows" if cfg.packing else ""
        if cfg.max_examples_per_task and self.capped_from != self.chained_from:
            caps = ", ".join(f"{t} {n:,}" for t, n in sorted(cfg.max_examples_per_task.items()))
            rows_note += f" (of {self.capped_from:,}: at most {caps})"
        if cfg.chain_examples > 1 and self.chained_from != ts.examples:
            rows_note += (
                f" (chained from {self.chained_from:,} examples, up to {cfg.chain_examples} a conversation)"
            )
        lines = [
            f"base model      {self.base_model_dir}",
            f"train corpus    {ts.tokens:,} tokens ({ts.trained_tokens:,} trained) in {ts.kept:,} examples"
            f"{rows_note}; {ts.dropped:,} dropped (nothing trained left within {cfg.max_seq_len} tokens),"
            f" {ts.truncated:,} truncated; longest {ts.longest:,} tokens",
            f"validation      {vs.tokens:,} tokens ({vs.trained_tokens:,} trained) in {vs.kept:,} examples;"
            f" {vs.dropped:,} dropped"
            + (
                f" (at most {cfg.max_validation_examples:,}, spread over tasks)"
                if cfg.max_validation_examples
                else ""
            ),
            f"steps           {self.total_steps:,} optimizer steps"
            + (
                " (max_steps)"
                if cfg.max_steps
                else f" ({cfg.epochs:g} epochs of {self.batches_per_epoch:,} batches)"
            )
            + f"; batch {cfg.batch_size} x grad_accum {cfg.grad_accum} = {cfg.batch_size * cfg.grad_accum}"
            f" sequences a step; max_seq_len {cfg.max_seq_len}; packing {'on' if cfg.packing else 'off'}",
            f"optimizer       AdamW lr {cfg.learning_rate:g}, {cfg.lr_schedule} schedule,"
            f" {self.warmup_steps} warmup steps; checkpoint every {cfg.checkpoint_every} steps; seed {cfg.seed}",
            f"LoRA            rank {cfg.lora_rank}, alpha {cfg.lora_alpha}, dropout {cfg.lora_dropout:g},"
            f" {'DoRA, ' if cfg.use_dora else ''}modules {', '.join(self.target_modules)}"
            + (f" in the top {cfg.lora_layers} layers" if cfg.lora_layers else ""),
            f"hardware        {self.hardware.name if self.hardware else 'cpu'}"
            + (f", {cfg.processes} data-parallel processes" if cfg.processes > 1 else "")
            + (", gradient checkpointing" if cfg.gradient_checkpointing else ""),
            f"parameters      {self.n_trainable:,} trainable of {self.n_total:,}"
            f" ({100 * self.n_trainable / max(1, self.n_total):.2f}%)",
            f"estimated peak  {est.peak_bytes / MB:,.0f} MB ("
            + ", ".join(f"{k} {v / MB:,.0f}" for k, v in est.breakdown.items() if v >= MB / 2)
            + ")",
            f"estimated time  {_duration(est.total_seconds)} ({est.step_seconds:.2f} s a step,"
            f" about {est.tokens_per_s:,.0f} tokens/s at {est.matmul_flops / 1e9:,.0f} GFLOP/s matmul)",
            f"memory budget   {self.budget_bytes / MB:,.0f} MB ({self.budget_source})"
            + ("  OVER BUDGET" if self.over_budget else "  ok"),
        ]
        if self.tokenization_mismatches:
            lines.append(
                f"tokenization    {self.tokenization_mismatches} of {self.tokenization_checked} sampled examples"
                " tokenize differently piecewise than as one text (an assistant output starting with"
                " whitespace); training uses the piecewise ids, which generation sees"
            )
        if self.over_budget:
            lines.append("to fit the budget, set in [training]:")
            for text, variant in budget_suggestions(est):
                lines.append(f"  {text}: about {variant.peak_bytes / MB:,.0f} MB")
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _load_tokenizer(base_model_dir: Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(base_model_dir))
    except (OSError, ValueError) as e:
        raise GastownFTError(
            f"cannot load the tokenizer of the base model at {base_model_dir}: {e}",
            hint="build the embedded base model first, or point training.base_model at a model directory",
        ) from None


def _load_config(base_model_dir: Path):
    from transformers import AutoConfig

    if not (Path(base_model_dir) / "config.json").is_file():
        raise GastownFTError(
            f"no base model at {base_model_dir} (config.json is missing)",
            hint="build the embedded base model first, or point training.base_model at a model directory",
        )
    return AutoConfig.from_pretrained(str(base_model_dir))


def _linear_modules(model) -> list[tuple[str, int, int]]:
    """(qualified name, in_features, out_features) of every linear projection but the output head."""
    import torch
    from transformers.pytorch_utils import Conv1D

    head = model.get_output_embeddings()
    out = []
    for name, module in model.named_modules():
        if module is head:
            continue
        if isinstance(module, torch.nn.Linear):
            out.append((name, module.in_features, module.out_features))
        elif isinstance(module, Conv1D):
            in_f, out_f = module.weight.shape
            out.append((name, int(in_f), int(out_f)))
    return out


def _matches(name: str, targets: list[str]) -> bool:
    return any(name == t or name.endswith("." + t) for t in targets)


def adapted_layers(model_config, cfg: TrainingConfig) -> list[int] | None:
    """Indices of the layers `lora_layers` adapts (the top ones), or None for every layer."""
    from gastown_ft.training.estimate import model_dims

    if not cfg.lora_layers:
        return None
    n = model_dims(model_config)["layers"]
    if cfg.lora_layers >= n:
        return None
    return list(range(n - cfg.lora_layers, n))


_LAYER_INDEX = re.compile(r"\.(?:layers|h|blocks)\.(\d+)\.")


def _in_layers(name: str, layers: list[int] | None) -> bool:
    if layers is None:
        return True
    m = _LAYER_INDEX.search(name)
    return bool(m) and int(m.group(1)) in layers


def count_parameters(model_config, cfg: TrainingConfig) -> tuple[list[str], int, int]:
    """(target module names, trainable, total) for LoRA on this architecture, from a meta-device
    model (nothing allocated). "all-linear" becomes every linear projection but the output head."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config)
    linears = _linear_modules(model)
    if cfg.target_modules == "all-linear":
        targets = sorted({name.rsplit(".", 1)[-1] for name, _i, _o in linears}, key=_module_order)
    else:
        targets = list(cfg.target_modules)
    layers = adapted_layers(model_config, cfg)
    adapted = [(n, i, o) for n, i, o in linears if _matches(n, targets) and _in_layers(n, layers)]
    if not adapted:
        raise GastownFTError(
            f"training.target_modules {targets} matches no linear layer of {type(model).__name__}",
            hint='use "all-linear" or names like q_proj, v_proj: '
            + ", ".join(sorted({n.rsplit(".", 1)[-1] for n, _i, _o in linears})),
        )
    n_base = sum(p.numel() for p in model.parameters())
    trainable = sum(cfg.lora_rank * (i + o) + (o if cfg.use_dora else 0) for _n, i, o in adapted)
    return targets, trainable, n_base + trainable


_ORDER = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _module_order(name: str) -> tuple[int, str]:
    return (_ORDER.index(name) if name in _ORDER else len(_ORDER), name)


def _batches_per_epoch(n: int, batch_size: int) -> int:
    return max(1, math.ceil(n / batch_size))


def plan_training(
    base_model_dir: str | os.PathLike,
    train_examples: list[dict[str, Any]],
    val_examples: list[dict[str, Any]],
    cfg: TrainingConfig,
) -> TrainingPlan:
    """Tokenize, count, configure LoRA, compute the steps and estimate memory and time."""
    base_model_dir = Path(base_model_dir)
    model_config = _load_config(base_model_dir)
    tokenizer = _load_tokenizer(base_model_dir)
    capped_from = len(train_examples)
    train_examples = cap_per_task(train_examples, cfg.max_examples_per_task)
    val_examples = spread_by_task(val_examples, cfg.max_validation_examples)
    n_examples = len(train_examples)
    if cfg.chain_examples > 1:
        train_examples = chain_conversations(train_examples, tokenizer, cfg.max_seq_len, cfg.chain_examples)
    train_seqs, train_stats = encode_examples(train_examples, tokenizer, cfg.max_seq_len)
    val_seqs, val_stats = encode_examples(val_examples, tokenizer, cfg.max_seq_len)
    if not train_seqs:
        raise GastownFTError(
            f"no training example left: {train_stats.examples} examples, {train_stats.dropped} dropped"
            f" (nothing trained within max_seq_len = {cfg.max_seq_len} tokens)",
            hint="raise training.max_seq_len, or check that the corpus has assistant turns",
        )
    sample = train_examples[:: max(1, len(train_examples) // TOKENIZATION_SAMPLE)][:TOKENIZATION_SAMPLE]
    mismatches = sum(1 for e in sample if not piecewise_matches_full_text(e, tokenizer))

    rows = pack(train_seqs, cfg.max_seq_len) if cfg.packing else train_seqs
    targets, n_trainable, n_total = count_parameters(model_config, cfg)
    batches = _batches_per_epoch(len(rows), cfg.batch_size)
    steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * batches / cfg.grad_accum))
    warmup = math.ceil(cfg.warmup_ratio * steps)

    # Facts of the tokenized corpus that sharpen the estimate (epoch 0's padding stands for all).
    lengths = [len(r["input_ids"]) for r in rows]
    trained = sorted((sum(1 for x in r["labels"] if x != IGNORE_INDEX) for r in rows), reverse=True)
    order = batch_order(rows, 0, cfg)
    padded = 0  # what the steps compute: padded rows, after merging shared openings
    for k in range(0, len(order), cfg.batch_size):
        chunk = [rows[i] for i in order[k : k + cfg.batch_size]]
        merged = share_prefixes(chunk) if cfg.share_prefix else chunk
        padded += len(merged) * max(len(r["input_ids"]) for r in merged)
    hw = hardware_for(cfg)
    estimate = estimate_training(
        model_config,
        n_trainable,
        n_total,
        cfg,
        train_stats.tokens,
        n_sequences=len(rows),
        longest_seq=max(lengths),
        max_trained_tokens=sum(trained[: cfg.batch_size]),
        padded_tokens=padded,
        trained_tokens=train_stats.trained_tokens,
        packed=any(_is_packed(r) for r in rows if "position_ids" in r),
        matmul_flops=matmul_peak(hw),
        device_kind=hw.kind,
        precision=hw.precision,
        quantization=hw.quantization,
    )
    if cfg.memory_budget_mb:
        budget, source = cfg.memory_budget_mb * MB, "training.memory_budget_mb"
    elif hw.kind == "cuda" and hw.memory_bytes:
        budget, source = hw.memory_bytes - GPU_RESERVE_BYTES, f"memory of {hw.name} less the CUDA context"
    else:
        budget, source = available_memory_bytes(), "memory available now"
    fingerprint = _fingerprint(base_model_dir, cfg, rows)
    return TrainingPlan(
        base_model_dir=base_model_dir,
        cfg=cfg,
        tokenizer=tokenizer,
        model_config=model_config,
        train_sequences=rows,
        val_sequences=val_seqs,
        train_stats=train_stats,
        val_stats=val_stats,
        target_modules=targets,
        n_trainable=n_trainable,
        n_total=n_total,
        batches_per_epoch=batches,
        total_steps=steps,
        warmup_steps=warmup,
        estimate=estimate,
        budget_bytes=int(budget),
        budget_source=source,
        tokenization_checked=len(sample),
        chained_from=n_examples,
        capped_from=capped_from,
        tokenization_mismatches=mismatches,
        fingerprint=fingerprint,
        hardware=hw,
    )


def matmul_peak(hw: Hardware) -> float | None:
    """Matmul FLOP/s of `hw` in its compute precision (None: the estimate measures fp32 on the CPU)."""
    if hw.kind == "cpu" and hw.precision == "bf16":
        return bf16_matmul_flops_cached(hw.threads)
    if hw.kind == "cuda":
        return gpu_matmul_flops_cached(hw.device, hw.precision)
    if hw.kind == "cpu":
        return matmul_flops_cached(hw.threads)
    return None


def batch_order(rows: list[dict[str, list[int]]], epoch: int, cfg: TrainingConfig) -> list[int]:
    """The order of `rows` in `epoch`: seeded; with `group_by_length`, batched by length (and by
    opening within each window, with `share_prefix`)."""
    if cfg.packing:
        return epoch_order(len(rows), epoch, cfg.seed)
    lengths = [len(r["input_ids"]) for r in rows]
    if cfg.group_by_length:
        keys = opening_keys(rows) if cfg.share_prefix else None
        return grouped_order(lengths, epoch, cfg.seed, cfg.batch_size, keys)
    return epoch_order(len(rows), epoch, cfg.seed)


def _is_packed(row: dict[str, list[int]]) -> bool:
    p = row["position_ids"]
    return any(b != a + 1 for a, b in zip(p, p[1:], strict=False))


def _file_digest(path: Path, h) -> None:
    """Feed the file's content to `h`: all of it up to FULL_HASH_BYTES, else its size, head and tail."""
    size = path.stat().st_size
    h.update(f"{path.name}:{size}\n".encode())
    with open(path, "rb") as f:
        if size <= FULL_HASH_BYTES:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        else:
            h.update(f.read(PARTIAL_HASH_BYTES))
            f.seek(size - PARTIAL_HASH_BYTES)
            h.update(f.read(PARTIAL_HASH_BYTES))


def _fingerprint(base_model_dir: Path, cfg: TrainingConfig, rows: list[dict[str, list[int]]]) -> str:
    """What a checkpoint must share with the run resuming it: the config that shapes the updates
    (not checkpoint_every, the memory budget, threads or the backend), the base model's files, and the
    data."""
    h = hashlib.sha256()
    shaping = cfg.model_dump(
        exclude={"checkpoint_every", "memory_budget_mb", "threads", "allow_network", "backend", "yield_when"}
    )
    h.update(json.dumps(shaping, sort_keys=True, default=str).encode())
    for p in sorted(base_model_dir.iterdir()):
        if p.is_file() and (p.suffix in (".json", ".safetensors", ".bin", ".model", ".jinja")):
            _file_digest(p, h)
    h.update(sequences_fingerprint(rows).encode())
    return h.hexdigest()


# --- training ------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    status: str  # "completed" or "cancelled"
    out_dir: Path
    adapter_dir: Path | None
    steps_done: int
    total_steps: int
    train_loss: list[float]
    val_loss: list[tuple[int, float]]
    tokens_per_s: float
    peak_rss_bytes: int
    estimated_peak_bytes: int
    estimated_tokens_per_s: float
    wall_seconds: float
    resumed_from_step: int | None
    last_checkpoint: Path | None
    model: Any = field(default=None, repr=False)  # the trained peft model, in memory

    def state(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "steps_done": self.steps_done,
            "total_steps": self.total_steps,
            "train_loss": self.train_loss,
            "val_loss": [list(x) for x in self.val_loss],
            "tokens_per_s": self.tokens_per_s,
            "peak_rss_bytes": self.peak_rss_bytes,
            "estimated_peak_bytes": self.estimated_peak_bytes,
            "estimated_tokens_per_s": self.estimated_tokens_per_s,
            "wall_seconds": self.wall_seconds,
            "resumed_from_step": self.resumed_from_step,
            "adapter_dir": str(self.adapter_dir) if self.adapter_dir else None,
            "last_checkpoint": str(self.last_checkpoint) if self.last_checkpoint else None,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], out_dir: Path) -> TrainResult:
        """The result a run wrote to its state file (a data-parallel run, read back by its launcher)."""
        return cls(
            status=state["status"],
            out_dir=Path(out_dir),
            adapter_dir=Path(state["adapter_dir"]) if state.get("adapter_dir") else None,
            steps_done=int(state["steps_done"]),
            total_steps=int(state["total_steps"]),
            train_loss=[float(x) for x in state["train_loss"]],
            val_loss=[(int(a), float(b)) for a, b in state["val_loss"]],
            tokens_per_s=float(state["tokens_per_s"]),
            peak_rss_bytes=int(state["peak_rss_bytes"]),
            estimated_peak_bytes=int(state["estimated_peak_bytes"]),
            estimated_tokens_per_s=float(state["estimated_tokens_per_s"]),
            wall_seconds=float(state["wall_seconds"]),
            resumed_from_step=state.get("resumed_from_step"),
            last_checkpoint=Path(state["last_checkpoint"]) if state.get("last_checkpoint") else None,
        )


class LRSchedule:
    """Learning-rate factor of optimizer step s (0-based): linear warmup to 1, then the decay."""

    def __init__(self, total: int, warmup: int, kind: str) -> None:
        self.total, self.warmup, self.kind = total, warmup, kind

    def __call__(self, s: int) -> float:
        if s < self.warmup:
            return (s + 1) / (self.warmup + 1)
        if self.kind == "constant":
            return 1.0
        progress = min(1.0, (s - self.warmup) / max(1, self.total - self.warmup))
        if self.kind == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))


def peak_rss_bytes() -> int:
    """This process's peak RSS. VmHWM, not ru_maxrss: after fork+exec Linux carries the parent's
    ru_maxrss into the child, so a training process started from a big one would report the parent."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_snapshot() -> dict[str, Any]:
    import numpy as np
    import torch

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }


def _rng_restore(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def save_adapter(model, out_dir: Path) -> Path:
    """Save the trained adapter as `out_dir/adapter`, atomically (staged, synced, swapped in)."""
    adapter_dir = out_dir / ADAPTER
    staged = out_dir / f".tmp-{ADAPTER}-{uuid.uuid4().hex}"
    model.save_pretrained(str(staged))
    atomic.replace_dir(staged, adapter_dir)
    return adapter_dir


def _checkpoints(root: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (their state.json is the last file written), oldest first."""
    out = []
    if root.is_dir():
        for p in root.iterdir():
            if p.is_dir() and p.name.startswith("step-") and (p / "state.json").is_file():
                try:
                    out.append((int(p.name[5:]), p))
                except ValueError:
                    continue
    return sorted(out)


def _save_checkpoint(
    root: Path, step: int, model, optimizer, scheduler, rng: dict[str, Any], state: dict[str, Any]
) -> Path:
    import torch

    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-step-{step}-{uuid.uuid4().hex}"
    tmp.mkdir()
    model.save_pretrained(str(tmp / ADAPTER))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save(rng["torch"], tmp / "rng_torch.pt")
    with open(tmp / "rng.json", "w", encoding="utf-8") as f:
        json.dump({"python": rng["python"], "numpy": rng["numpy"]}, f)
    with open(tmp / "state.json", "w", encoding="utf-8") as f:
        json.dump(state, f, indent=2)
    target = root / f"step-{step}"
    atomic.replace_dir(tmp, target)
    for _s, old in _checkpoints(root)[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-step-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return target


def _load_checkpoint(path: Path, model, optimizer, scheduler) -> dict[str, Any]:
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = load_file(str(path / ADAPTER / "adapter_model.safetensors"))
    result = set_peft_model_state_dict(model, weights)
    missing = [k for k in getattr(result, "missing_keys", []) if "lora_" in k]
    if missing:
        raise GastownFTError(
            f"checkpoint {path} lacks adapter weights: {missing[:3]}",
            hint=f"remove {path.parent} to start over, or pass resume=False",
        )
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    rng = json.loads((path / "rng.json").read_text(encoding="utf-8"))
    rng["torch"] = torch.load(path / "rng_torch.pt", weights_only=True)
    _rng_restore(rng)
    return json.loads((path / "state.json").read_text(encoding="utf-8"))


class _StopRequests:
    """Turn a first SIGINT into a stop request checked between steps (main thread only)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def _handler(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _StopRequests:
        if threading.current_thread() is threading.main_thread():
            try:
                self._previous = signal.signal(signal.SIGINT, self._handler)
                self._installed = True
            except ValueError:
                self._installed = False
        return self

    def __exit__(self, *exc) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)


def token_loss_sum(
    model, batch: dict[str, Any], autocast: Callable[[], Any] | None = None, *, weighted: bool = False
):
    """Sum of next-token cross-entropy over the labelled positions, and their count.

    `weighted` (training): each position's loss times its example's weight (the batch's loss_weights),
    and the count is the summed weight (`trained_weight`); evaluation leaves it off. `autocast` is the
    hardware's autocast (Hardware.autocast); the batch moves to the model's device."""
    import torch.nn.functional as F

    device = next(model.parameters()).device
    input_ids, labels = batch["input_ids"].to(device), batch["labels"].to(device)
    kwargs: dict[str, Any] = {"input_ids": input_ids, "use_cache": False}
    if batch["packed"]:
        kwargs["position_ids"] = batch["position_ids"].to(device)
    if batch.get("shared_mask") is not None:
        kwargs["attention_mask"] = _attention_mask_4d(model, batch["shared_mask"].to(device))
    weights = batch.get("loss_weights") if weighted else None
    if weights is not None:
        trained = batch["labels"][:, 1:] != IGNORE_INDEX
        if bool((weights[:, 1:][trained] == 1.0).all()):
            weights = None  # every trained weight 1: the plain sum, bit for bit the unweighted loss
    with autocast() if autocast is not None else nullcontext():
        return _loss_sum(model, kwargs, labels, F, None if weights is None else weights.to(device))


def _attention_mask_4d(model, allowed):
    """A custom (rows, 1, q, k) mask in the form the model's attention takes: sdpa and flex take the
    bool mask (True: attend); eager adds it to the scores, so it gets 0 / the dtype's minimum."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    impl = getattr(base.config, "_attn_implementation", None) or "eager"
    if impl in ("sdpa", "flex_attention"):
        return allowed
    if impl != "eager":
        raise ValueError(
            f"attention implementation {impl!r} takes no custom mask: set [training] share_prefix = false"
        )
    dtype = next(base.parameters()).dtype
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
        ~allowed, torch.finfo(dtype).min
    )


def _loss_sum(model, kwargs: dict[str, Any], labels, F, weights=None):
    target = labels[:, 1:]
    selected = target != IGNORE_INDEX
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings()
    plain_head = (
        head is not None
        and getattr(base.config, "final_logit_softcapping", None) is None
        and not hasattr(base, "logit_scale")
    )
    if plain_head:
        hidden = base.get_decoder()(**kwargs).last_hidden_state
        logits = head(hidden[:, :-1][selected])
    else:
        logits = model(**kwargs).logits[:, :-1][selected]
    if weights is None:
        loss = F.cross_entropy(logits.float(), target[selected], reduction="sum")
        return loss, int(selected.sum())
    # the weight of the token predicted (position t predicts t + 1), as for the labels
    w = weights[:, 1:][selected]
    loss = (F.cross_entropy(logits.float(), target[selected], reduction="none") * w).sum()
    return loss, float(w.double().sum())


def evaluate_loss(
    model,
    sequences: list[dict[str, list[int]]],
    pad_id: int,
    batch_size: int,
    autocast: Callable[[], Any] | None = None,
    share_prefix: bool = True,
) -> float | None:
    """Mean next-token loss over all trained tokens of `sequences` (dropout off, no gradients). With
    `share_prefix`, sequences with the same opening are batched together and merged
    (`share_prefixes`): the same loss for less compute."""
    import torch

    if not sequences:
        return None
    keys = opening_keys(sequences) if share_prefix else [0] * len(sequences)
    order = sorted(range(len(sequences)), key=lambda i: (keys[i], len(sequences[i]["input_ids"])))
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        with torch.no_grad():
            for k in range(0, len(order), batch_size):
                seqs = [sequences[i] for i in order[k : k + batch_size]]
                batch = collate(share_prefixes(seqs) if share_prefix else seqs, pad_id)
                loss, n = token_loss_sum(model, batch, autocast)
                total += float(loss)
                count += n
    finally:
        model.train(was_training)
    return total / count if count else None


def prepare_model(plan: TrainingPlan, hw: Hardware | None = None):
    """The base model with the plan's fresh LoRA adapter, on `hw`'s device (the CPU by default).

    On a GPU the frozen base is loaded in the compute dtype (bf16/fp16) or in 4-bit NF4 (QLoRA); the
    adapter's weights stay float32 either way (peft's autocast_adapter_dtype)."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if hw is not None and hw.kind == "cuda":
        kwargs["dtype"] = torch.bfloat16 if hw.precision == "bf16" else torch.float16
        if hw.precision == "fp32":
            kwargs["dtype"] = torch.float32
        if hw.quantization == "nf4":
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=kwargs["dtype"],
            )
        kwargs["device_map"] = {"": hw.device}
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a bar per load is noise in the trainer's own progress
    try:
        model = AutoModelForCausalLM.from_pretrained(str(plan.base_model_dir), **kwargs)
    except (OSError, ValueError) as e:
        raise GastownFTError(f"cannot load the base model at {plan.base_model_dir}: {e}") from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    model.config.use_cache = False
    if hw is not None and hw.quantization == "nf4":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=plan.cfg.gradient_checkpointing
        )
    elif plan.cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()  # the frozen embeddings give no grad otherwise
    if hw is not None and hw.kind != "cuda":
        model.to(hw.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # peft asks a deprecated transformers property
        return get_peft_model(model, plan.lora_config())


def _loss_module(model, autocast):
    """The training loss (token_loss_sum, weighted) as a module call, so DistributedDataParallel can
    wrap it."""
    import torch

    class LossOf(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, batch):
            return token_loss_sum(self.model, batch, autocast, weighted=True)

    return LossOf()


# --- one training step, the same for every backend -----------------------------------------------


class StepBatches:
    """The rows of each optimizer step of a local or data-parallel run: micro-batch m of the run is
    batch m % B of epoch m // B in `batch_order` (B batches an epoch), and step s takes the grad_accum
    micro-batches from s * grad_accum on. It depends only on s, so a resumed run takes the same ones."""

    def __init__(self, rows: list[dict[str, Any]], cfg: TrainingConfig, batches_per_epoch: int) -> None:
        self.rows, self.cfg, self.per_epoch = rows, cfg, batches_per_epoch
        self._orders: dict[int, list[int]] = {}

    def micro_batch(self, m: int) -> list[int]:
        epoch, pos = divmod(m, self.per_epoch)
        if epoch not in self._orders:
            self._orders.clear()  # steps go forward: one epoch's order is enough
            self._orders[epoch] = batch_order(self.rows, epoch, self.cfg)
        return self._orders[epoch][pos * self.cfg.batch_size : (pos + 1) * self.cfg.batch_size]

    def __call__(self, step: int) -> list[list[int]]:
        """Row indices of the micro-batches of optimizer step `step` (0-based)."""
        ga = self.cfg.grad_accum
        return [self.micro_batch(step * ga + j) for j in range(ga)]

    def epoch(self, steps_done: int) -> float:
        """Epochs done after `steps_done` steps (fractional), for the progress events."""
        return steps_done * self.cfg.grad_accum / self.per_epoch

    def position(self, steps_done: int) -> dict[str, int]:
        """Where the next step starts: its epoch and batch in that epoch (a checkpoint records it)."""
        epoch, pos = divmod(steps_done * self.cfg.grad_accum, self.per_epoch)
        return {"epoch": epoch, "batch_in_epoch": pos}


class StepRunner:
    """The work of one optimizer step, shared by the local, data-parallel and hivemind trainers:
    collate the step's micro-batches, forward and backward with the loss normalised over all of the
    step's trained tokens, weighted by their examples' weights (not a mean of means), and clip the
    gradients. The caller's optimizer then takes the update (AdamW, or hivemind's in a swarm).

    The step's loss is sum_i w_i * (token losses of example i) / sum_i w_i * (trained tokens of i), so
    an example of weight 3 counts like three copies of it, and all weights 1 give the plain mean.

    Under data parallelism (`par.world > 1`) the loss runs under DDP, each process takes its share of
    every micro-batch, and the denominator is summed over the processes, so the averaged gradient is the
    single-process one."""

    def __init__(
        self,
        model,
        rows: list[dict[str, Any]],
        pad_id: int,
        *,
        hw: Hardware | None = None,
        par: DataParallel | None = None,
        share_prefix: bool = False,
    ) -> None:
        self.rows, self.pad_id, self.share_prefix = rows, pad_id, share_prefix
        self.par = par or DataParallel()
        self.params = [p for p in model.parameters() if p.requires_grad]
        self._loss = _loss_module(model, hw.autocast if hw is not None else None)
        if self.par.world > 1:
            device, kind = (hw.device, hw.kind) if hw is not None else ("cpu", "cpu")
            self._loss = wrap(self._loss, device, kind)
        self.tokens = 0  # non-pad tokens this process trained on (for tokens/s)

    def run(self, micro: list[list[int]]) -> float:
        """Forward and backward over the micro-batches (row indices) of one step, then clip the
        gradients; the step's loss (summed over the processes). Gradients accumulate on those already
        there: the caller zeroes them after its update."""
        import torch

        par = self.par
        # Each process takes its share of every micro-batch; a share left empty by a short last batch
        # runs one row at weight 0, so every process joins the gradient sync.
        mine = [par.shard(m) for m in micro]
        shares = [share or m[:1] for share, m in zip(mine, micro, strict=True)]
        present = [1.0 if share else 0.0 for share in mine]
        batches = [collate(self._merged([self.rows[i] for i in share]), self.pad_id) for share in shares]
        total = par.all_sum(sum(p * trained_weight(b) for b, p in zip(batches, present, strict=True)))
        total = total if total > 0 else 1.0  # nothing trained (all weights 0): no gradient, no NaN
        step_loss = 0.0
        for b, p in zip(batches, present, strict=True):
            loss, _n = self._loss(b)
            loss = loss / total
            if p != 1.0:
                loss = loss * p
            # DDP averages the processes' gradients; scaled by the world size, they add up instead
            (loss * par.world).backward()
            step_loss += float(loss.detach())
            self.tokens += int(p * b["example_tokens"])
        torch.nn.utils.clip_grad_norm_(self.params, MAX_GRAD_NORM)
        return par.all_sum(step_loss)

    def _merged(self, seqs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return share_prefixes(seqs) if self.share_prefix else seqs

    def progress(
        self, step: int, total_steps: int, loss: float, lr: float, elapsed: float, steps_timed: int, **extra
    ) -> dict[str, Any]:
        """The progress callback's event after optimizer step `step`: the ETA from the pace of the
        `steps_timed` steps this session took in `elapsed` seconds; `extra` adds backend keys."""
        return {
            "step": step,
            "total_steps": total_steps,
            "loss": loss,
            "lr": lr,
            "tokens_per_s": self.tokens / elapsed if elapsed > 0 else 0.0,
            "eta_s": (total_steps - step) * elapsed / max(1, steps_timed),
            **extra,
        }


def train_lora(
    plan: TrainingPlan,
    out_dir: str | os.PathLike,
    *,
    resume: bool = True,
    progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train the adapter of `plan` into `out_dir` (see the module docstring)."""
    import torch

    plan.check_budget()
    cfg = plan.cfg
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_root = out_dir / CHECKPOINTS
    if not resume and ckpt_root.exists():
        shutil.rmtree(ckpt_root)
    hw = plan.hardware or hardware_for(cfg)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(hw.threads)
    try:
        with _StopRequests() as stops:
            return _train(plan, hw, out_dir, ckpt_root, resume, progress, should_stop, stops)
    finally:
        torch.set_num_threads(previous_threads)


def hardware_for(cfg: TrainingConfig) -> Hardware:
    """The device, precision, threads and quantization `[training]` asks for, on this machine."""
    return detect(cfg.device, cfg.precision, cfg.threads, cfg.quantization)


def _train(plan, hw: Hardware, out_dir, ckpt_root, resume, progress, should_stop, stops) -> TrainResult:
    import torch

    cfg: TrainingConfig = plan.cfg
    started = time.perf_counter()
    seed_everything(cfg.seed)
    par = from_environment(hw.kind)
    model = prepare_model(plan, hw)
    model.train()
    rows, pad_id = plan.train_sequences, plan.pad_id
    runner = StepRunner(model, rows, pad_id, hw=hw, par=par, share_prefix=plan.cfg.share_prefix)
    batches = StepBatches(rows, cfg, plan.batches_per_epoch)
    optimizer = torch.optim.AdamW(runner.params, lr=cfg.learning_rate, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, LRSchedule(plan.total_steps, plan.warmup_steps, cfg.lr_schedule)
    )

    step = 0
    train_loss: list[float] = []
    val_loss: list[tuple[int, float]] = []
    resumed_from = None
    last_ckpt: Path | None = None
    existing = _checkpoints(ckpt_root) if resume else []
    if existing:
        resumed_from, last_ckpt = existing[-1]
        saved = json.loads((last_ckpt / "state.json").read_text(encoding="utf-8"))
        if saved.get("fingerprint") != plan.fingerprint:
            raise GastownFTError(
                f"the checkpoint {last_ckpt} is of a different run (config, base model or data changed)",
                hint=f"remove {ckpt_root} to start over, or run without resuming",
            )
        state = _load_checkpoint(last_ckpt, model, optimizer, scheduler)
        step = int(state["step"])
        train_loss = [float(x) for x in state["train_loss"]]
        val_loss = [(int(s), float(v)) for s, v in state["val_loss"]]
        due = step % cfg.checkpoint_every == 0 or step == plan.total_steps
        if due and not (val_loss and val_loss[-1][0] == step):  # cut off while evaluating
            v = evaluate_loss(model, plan.val_sequences, pad_id, cfg.batch_size, hw.autocast)
            if v is not None:
                val_loss.append((step, v))

    elif plan.val_sequences:
        # The baseline: validation loss of the untouched base model, so the curve shows the drop.
        v = evaluate_loss(model, plan.val_sequences, pad_id, cfg.batch_size, hw.autocast)
        if v is not None:
            val_loss.append((0, v))

    rng_snapshot = _rng_snapshot()

    def checkpoint(s: int, *, evaluate: bool) -> Path:
        if evaluate and not (val_loss and val_loss[-1][0] == s):
            v = evaluate_loss(model, plan.val_sequences, pad_id, cfg.batch_size, hw.autocast)
            if v is not None:
                val_loss.append((s, v))
        state = {
            "step": s,
            **batches.position(s),
            "total_steps": plan.total_steps,
            "train_loss": train_loss,
            "val_loss": [list(x) for x in val_loss],
            "fingerprint": plan.fingerprint,
        }
        return _save_checkpoint(ckpt_root, s, model, optimizer, scheduler, rng_snapshot, state)

    session_steps = 0
    loop_start = time.perf_counter()
    status = "completed"
    updating = False
    try:
        while step < plan.total_steps:
            if par.any(stops.requested or (should_stop is not None and should_stop())):
                status = "cancelled"
                break
            step_loss = runner.run(batches(step))
            updating = True
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step % TRIM_EVERY == 0:  # else the heap grows with every differently shaped batch
                release_freed_memory()
            train_loss.append(step_loss)
            rng_snapshot = _rng_snapshot()
            updating = False
            session_steps += 1
            elapsed = time.perf_counter() - loop_start
            if step % cfg.checkpoint_every == 0 or step == plan.total_steps:
                if par.main:
                    last_ckpt = checkpoint(step, evaluate=True)
                par.barrier()
            if progress is not None and par.main:
                event = runner.progress(step, plan.total_steps, step_loss, lr, elapsed, session_steps)
                progress({**event, "epoch": batches.epoch(step)})
    except KeyboardInterrupt:
        status = "cancelled"
        if updating:  # the update was cut halfway: keep the last good checkpoint
            model = None
    if status == "cancelled" and model is not None:
        optimizer.zero_grad(set_to_none=True)
        if last_ckpt is None or not last_ckpt.name == f"step-{step}":
            if step > 0 and par.main:
                last_ckpt = checkpoint(step, evaluate=False)

    adapter_dir = None
    if status == "completed" and par.main:
        if not (val_loss and val_loss[-1][0] == step):
            v = evaluate_loss(model, plan.val_sequences, pad_id, cfg.batch_size, hw.autocast)
            if v is not None:
                val_loss.append((step, v))
        adapter_dir = save_adapter(model, out_dir)
    par.barrier()
    session_tokens = int(par.all_sum(runner.tokens))

    loop_seconds = time.perf_counter() - loop_start
    result = TrainResult(
        status=status,
        out_dir=out_dir,
        adapter_dir=adapter_dir,
        steps_done=step,
        total_steps=plan.total_steps,
        train_loss=train_loss,
        val_loss=val_loss,
        tokens_per_s=session_tokens / loop_seconds if session_tokens and loop_seconds > 0 else 0.0,
        peak_rss_bytes=peak_rss_bytes(),
        estimated_peak_bytes=plan.estimate.peak_bytes,
        estimated_tokens_per_s=plan.estimate.tokens_per_s,
        wall_seconds=time.perf_counter() - started,
        resumed_from_step=resumed_from,
        last_checkpoint=last_ckpt,
        model=model,
    )
    state = result.state()
    state["estimate"] = plan.estimate.as_dict()
    state["estimate_vs_measured"] = {
        "peak_bytes": [plan.estimate.peak_bytes, result.peak_rss_bytes],
        "tokens_per_s": [plan.estimate.tokens_per_s, result.tokens_per_s],
    }
    state["config"] = cfg.model_dump(mode="json")
    state["lora"] = plan.lora_kwargs()
    state["n_trainable"], state["n_total"] = plan.n_trainable, plan.n_total
    state["threads"] = torch.get_num_threads()
    state["hardware"] = hw.as_dict()
    state["processes"] = par.world
    if not par.main:
        return result
    atomic.write_json(out_dir / STATE_FILE, state, indent=2)
    return result
