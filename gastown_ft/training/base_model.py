"""The base model: build the embedded one, resolve the configured one, fingerprint either.

`build_embedded_model` trains a byte-level BPE tokenizer on the scrubbed documents, builds a small
LLaMA-architecture causal LM, pretrains it briefly on packed windows of those documents and saves a
complete Hugging Face model directory (safetensors weights, tokenizer with the chat template, and a
generation config that stops at the end of a turn). Offline, seeded and deterministic.

`resolve_base_model` turns `[training] base_model` into a directory: "embedded", a local model
directory, or a hub id (downloaded only with `allow_network = true`; otherwise only the local HF cache
is read, so it never waits on the network).

`model_fingerprint` is a content hash of the weights, config and tokenizer files, for provenance.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from gastown_ft import atomic
from gastown_ft.config import EmbeddedModelConfig
from gastown_ft.errors import GastownFTError
from gastown_ft.training.chat_format import EOS, PAD, TURN_END

REPORT_FILENAME = "embedded_model.json"
MATERIALIZE_HINT = "materialize the base_model asset first: `gastown-ft materialize --select base_model`"

# Files that make up a model for fingerprinting (top level of the model directory only).
_FINGERPRINT_NAMES = {
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
}
_WEIGHT_RE = re.compile(r"^(model.*\.safetensors|pytorch_model.*\.bin)$")
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken", "tokenizer*"]


# -- the embedded model ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbeddedModelReport:
    path: Path
    parameters: int
    vocab_size: int  # ids the tokenizer really has (a small corpus can give fewer than configured)
    corpus_tokens: int  # tokens of text the pretraining windows were drawn from
    tokens_seen: int  # steps x batch x seq_len
    loss_curve: list[tuple[int, float]]  # (step, training loss)
    initial_loss: float  # loss on a fixed sample of the corpus before pretraining
    final_loss: float  # ... and after
    seconds: float  # the whole build: tokenizer, pretraining, saving
    train_seconds: float
    tokens_per_s: float  # pretraining throughput
    seed: int
    precision: str  # of the pretraining forward pass: "bf16" (autocast) or "fp32"
    fingerprint: str
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        d["loss_curve"] = [[s, loss] for s, loss in self.loss_curve]
        return d


def _text_source(texts: Callable[[], Iterable[str]] | Iterable[str]) -> Callable[[], Iterable[str]]:
    if callable(texts):
        return texts
    if not isinstance(texts, (list, tuple)):
        texts = list(texts)  # a one-shot iterator: it is read twice (tokenizer, then pretraining)
    return lambda: texts


def _token_stream(tok, texts: Iterable[str], cap: int, batch_docs: int = 256) -> list[int]:
    """`<s> doc </s>` for each document, concatenated, until `cap` tokens."""
    backend = tok.backend_tokenizer
    bos, eos = tok.bos_token_id, tok.eos_token_id
    out: list[int] = []
    pending: list[str] = []

    def flush() -> None:
        for enc in backend.encode_batch(pending, add_special_tokens=False):
            out.append(bos)
            out.extend(enc.ids)
            out.append(eos)
        pending.clear()

    for t in texts:
        if not t:
            continue
        pending.append(t)
        if len(pending) >= batch_docs:
            flush()
            if len(out) >= cap:
                break
    if pending and len(out) < cap:
        flush()
    return out[:cap]


def _lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warmup, then cosine decay to 10% of the peak."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class _Counter:
    docs: int = 0
    chars: int = 0

    def wrap(self, texts: Iterable[str]) -> Iterator[str]:
        for t in texts:
            if t:
                self.docs += 1
                self.chars += len(t)
                yield t


def build_embedded_model(
    texts: Callable[[], Iterable[str]] | list[str],
    out_dir: Path,
    cfg: EmbeddedModelConfig,
    *,
    seed: int = 0,
    progress: Callable[[dict], None] | None = None,
    progress_every: int = 5,
    precision: Literal["auto", "fp32", "bf16"] = "auto",
) -> EmbeddedModelReport:
    """Train the tokenizer, build and briefly pretrain a small LLaMA, and save it under `out_dir`.

    `texts` is a list of document texts or a function returning a fresh iterable of them (it is
    read twice). The directory is written next to `out_dir` and swapped in at the end, so a failed
    build never leaves a half-written model behind. Same texts + config + seed -> same weights
    (on the same kind of CPU).

    `precision` "auto" runs the forward pass under bfloat16 autocast when the CPU has native bf16
    instructions (AVX512-BF16 or AMX: about 1.6x faster here), else in float32. Weights, optimizer
    state and the reported initial/final losses are always float32.
    """
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM

    from gastown_ft.training.tokenizer import train_tokenizer

    if cfg.hidden_size % cfg.num_heads:
        raise GastownFTError(
            f"[training.embedded] hidden_size {cfg.hidden_size} is not a multiple of num_heads {cfg.num_heads}"
        )
    if cfg.pretrain_seq_len > cfg.max_position_embeddings:
        raise GastownFTError(
            f"[training.embedded] pretrain_seq_len {cfg.pretrain_seq_len} is longer than "
            f"max_position_embeddings {cfg.max_position_embeddings}"
        )
    started = time.perf_counter()
    source = _text_source(texts)
    out_dir = Path(out_dir)

    counter = _Counter()
    tok = train_tokenizer(
        counter.wrap(source()), cfg.vocab_size, model_max_length=cfg.max_position_embeddings
    )
    if counter.chars == 0:
        raise GastownFTError(
            "no text to build the embedded base model from: the scrubbed documents are empty",
            hint="check [town] root and sources, or set [training] base_model to a local model directory",
        )

    seq_len, batch, steps = cfg.pretrain_seq_len, cfg.pretrain_batch_size, cfg.pretrain_steps
    need = steps * batch * seq_len
    stream = _token_stream(tok, source(), cap=max(2 * need, 1 << 20))
    while len(stream) < seq_len + 1:  # a tiny corpus: repeat it to fill one window
        stream = stream + stream
    data = torch.tensor(stream, dtype=torch.long)
    n_windows = len(data) - seq_len + 1
    window = torch.arange(seq_len)

    use_bf16 = precision == "bf16" or (precision == "auto" and cpu_has_native_bf16())
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if use_bf16 else nullcontext

    torch.manual_seed(seed)
    im_end = tok.convert_tokens_to_ids(TURN_END)
    config = embedded_config(
        cfg,
        len(tok),
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    n_params = sum(p.numel() for p in model.parameters())

    # A fixed sample, evenly spread over the corpus, measures the loss before and after.
    n_eval = min(8, batch)
    eval_offsets = torch.linspace(0, n_windows - 1, n_eval).long()
    eval_x = data[eval_offsets[:, None] + window]

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            loss = model(input_ids=eval_x, labels=eval_x, use_cache=False).loss.item()
        model.train()
        return float(loss)

    initial = eval_loss()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.pretrain_learning_rate,
        betas=(0.9, 0.95),
    )
    warmup = max(1, min(steps, round(0.05 * steps)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, steps, warmup))
    gen = torch.Generator().manual_seed(seed)

    curve: list[tuple[int, float]] = []
    t0 = time.perf_counter()
    model.train()
    for step in range(1, steps + 1):
        offsets = torch.randint(0, n_windows, (batch,), generator=gen)
        x = data[offsets[:, None] + window]
        with autocast():
            loss = model(input_ids=x, labels=x, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        value = float(loss.item())
        if not math.isfinite(value):
            raise GastownFTError(
                f"embedded model pretraining diverged at step {step} (loss {value})",
                hint="lower [training.embedded] pretrain_learning_rate",
            )
        curve.append((step, value))
        if progress and (step % progress_every == 0 or step == steps):
            elapsed = time.perf_counter() - t0
            progress(
                {
                    "step": step,
                    "steps": steps,
                    "loss": value,
                    "tokens_per_s": step * batch * seq_len / max(elapsed, 1e-9),
                    "eta_s": elapsed / step * (steps - step),
                }
            )
    train_seconds = time.perf_counter() - t0
    final = eval_loss() if steps else initial
    model.eval()

    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id,
        eos_token_id=[im_end, tok.convert_tokens_to_ids(EOS)],
        pad_token_id=tok.convert_tokens_to_ids(PAD),
    )
    with atomic.staged_dir(out_dir) as tmp:
        with _no_progress_bars():
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
        fingerprint = model_fingerprint(tmp)
        report = EmbeddedModelReport(
            path=out_dir,
            parameters=n_params,
            vocab_size=len(tok),
            corpus_tokens=len(stream),
            tokens_seen=need,
            loss_curve=curve,
            initial_loss=initial,
            final_loss=final,
            seconds=0.0,
            train_seconds=train_seconds,
            tokens_per_s=need / train_seconds if steps and train_seconds > 0 else 0.0,
            seed=seed,
            precision="bf16" if use_bf16 else "fp32",
            fingerprint=fingerprint,
            config=cfg.model_dump(),
        )
        report = replace(report, seconds=time.perf_counter() - started)
        (tmp / REPORT_FILENAME).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def embedded_config(cfg, vocab_size: int, **tokens: Any):
    """The LlamaConfig of the embedded base model `[training.embedded]` describes (`tokens`: its special
    token ids, once the tokenizer exists)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        **tokens,
    )


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bfloat16 instructions (x86 AVX512-BF16 or AMX-BF16; Linux only)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", line))
    except OSError:
        pass
    return False


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """No tqdm bars from transformers while saving (they would clutter run logs)."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


# -- resolving the configured base model ----------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedModel:
    path: Path
    source: Literal["embedded", "preset", "local", "hub"]
    name: str
    revision: str | None = None


def _has_tokenizer(path: Path) -> bool:
    return (
        (path / "tokenizer.json").is_file()
        or (path / "tokenizer.model").is_file()
        or ((path / "vocab.json").is_file() and (path / "merges.txt").is_file())
        or any(path.glob("*.tiktoken"))
    )


def _has_weights(path: Path) -> bool:
    return any(_WEIGHT_RE.match(p.name) for p in path.iterdir() if p.is_file())


def _check_model_dir(path: Path, what: str) -> None:
    """Raise GastownFTError unless `path` holds a causal LM with config, weights and tokenizer."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise GastownFTError(
            f"{what} {path} has no config.json: it is not a Hugging Face model directory",
            hint="point [training] base_model at the directory save_pretrained wrote (config.json, weights, tokenizer)",
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GastownFTError(f"{what} {path}: cannot read config.json: {e}") from None
    if not isinstance(config, dict):
        raise GastownFTError(f"{what} {path}: config.json is not a JSON object")
    if not _is_causal_lm(config):
        archs = config.get("architectures") or []
        raise GastownFTError(
            f"{what} {path} is not a causal language model "
            f"(model_type {config.get('model_type')!r}, architectures {archs})",
            hint="fine-tuning needs a decoder-only model (a *ForCausalLM architecture), e.g. a LLaMA, Qwen or SmolLM",
        )
    if not _has_tokenizer(path):
        raise GastownFTError(
            f"{what} {path} has no tokenizer files (tokenizer.json, tokenizer.model or vocab.json + merges.txt)",
            hint="save the tokenizer next to the model (tokenizer.save_pretrained(dir))",
        )
    if not _has_weights(path):
        raise GastownFTError(
            f"{what} {path} has no weight files (model*.safetensors or pytorch_model*.bin)",
            hint="save the model with model.save_pretrained(dir)",
        )


def _is_causal_lm(config: dict[str, Any]) -> bool:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES as CAUSAL

    archs = config.get("architectures") or []
    if archs:
        known = set(CAUSAL.values())
        return any(a in known or a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)
    return config.get("model_type") in CAUSAL


def resolve_base_model(
    spec: str, *, allow_network: bool, embedded_dir: Path, cache_dir: Path | None = None
) -> ResolvedModel:
    """The model directory `[training] base_model` names; GastownFTError if it is not usable.

    A preset name (`smollm2-135m-instruct`) is converted from its installed wheel into `cache_dir`
    (default: the user's model cache) on first use and reused after."""
    from gastown_ft.training.presets import PRESETS, is_preset, resolve_preset

    spec = (spec or "").strip()
    if is_preset(spec):
        path = resolve_preset(spec, cache_dir)
        _check_model_dir(path, f"the {spec} preset at")
        return ResolvedModel(
            path=path, source="preset", name=PRESETS[spec.lower()].display, revision=path.name
        )
    if spec == "embedded":
        path = Path(embedded_dir)
        if not path.is_dir() or not (path / "config.json").is_file():
            raise GastownFTError(
                f"the embedded base model has not been built yet (nothing at {path})", hint=MATERIALIZE_HINT
            )
        _check_model_dir(path, "the embedded base model at")
        return ResolvedModel(path=path.resolve(), source="embedded", name="embedded", revision=None)

    local = Path(os.path.expanduser(spec))
    if local.is_dir():
        _check_model_dir(local, "base_model directory")
        return ResolvedModel(path=local.resolve(), source="local", name=str(local.resolve()), revision=None)
    refuse_missing_path(spec, local)
    return _resolve_hub(spec, allow_network)


def refuse_missing_path(spec: str, local: Path) -> None:
    """A base_model that is a file, or a path that does not exist, is an error: only a name without a
    path shape is taken for a hub id."""
    if local.exists():
        raise GastownFTError(f"base_model {spec!r} is a file, not a model directory")
    if not spec or spec.startswith(("/", "./", "../", "~", ".\\")) or os.path.isabs(spec):
        raise GastownFTError(
            f"base_model directory {spec!r} does not exist",
            hint='set [training] base_model to "smollm2-135m-instruct", "embedded", an existing model '
            "directory, or a hub id",
        )


def _offline_hint(repo_id: str) -> str:
    return (
        "set `[training] allow_network = true` to download it, or download it on a machine with "
        f"network (`huggingface-cli download {repo_id}`) and copy the HF cache here or set "
        "`[training] base_model` to the downloaded directory"
    )


def _resolve_hub(spec: str, allow_network: bool) -> ResolvedModel:
    import huggingface_hub
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    repo_id, _, revision = spec.partition("@")
    revision = revision or None
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise GastownFTError(
            f"base_model {spec!r} is neither an existing local directory nor a valid hub model id",
            hint='use "embedded", a local model directory, or an id like "HuggingFaceTB/SmolLM2-135M-Instruct"',
        ) from None
    try:
        path = huggingface_hub.snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=_HUB_PATTERNS,
            local_files_only=not allow_network,
        )
    except Exception as e:  # every failure here is the operator's to fix
        if allow_network:
            raise GastownFTError(
                f"could not download base model {repo_id!r} from the hub: {type(e).__name__}: {e}",
                hint="check the id, the network and HF_TOKEN (gated models), or download it elsewhere "
                "and set `[training] base_model` to the local directory",
            ) from None
        raise GastownFTError(
            f"base model {repo_id!r} is not in the local Hugging Face cache, and network access is off",
            hint=_offline_hint(repo_id),
        ) from None
    path = Path(path)
    _check_model_dir(path, f"hub model {repo_id!r} at")
    commit = path.name if re.fullmatch(r"[0-9a-f]{40}", path.name) else revision
    return ResolvedModel(path=path, source="hub", name=repo_id, revision=commit)


# -- fingerprint ------------------------------------------------------------------------------------------


def _fingerprint_files(path: Path) -> list[Path]:
    files = []
    for p in path.iterdir():
        if not p.is_file():
            continue
        if p.name in _FINGERPRINT_NAMES or _WEIGHT_RE.match(p.name) or p.name.endswith(".tiktoken"):
            files.append(p)
    return sorted(files, key=lambda p: p.name)


def model_fingerprint(path: Path) -> str:
    """`sha256:<hex>` over the names and contents of the weight, config and tokenizer files.

    Independent of the directory's location and of file times; equal for byte-identical models.
    """
    path = Path(path)
    if not path.is_dir():
        raise GastownFTError(f"cannot fingerprint {path}: not a directory")
    files = _fingerprint_files(path)
    if not any(_WEIGHT_RE.match(p.name) for p in files):
        raise GastownFTError(
            f"cannot fingerprint {path}: no weight files (model*.safetensors, pytorch_model*.bin)"
        )
    total = hashlib.sha256()
    for p in files:
        h = hashlib.sha256()
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        total.update(p.name.encode("utf-8") + b"\0" + h.digest())
    return "sha256:" + total.hexdigest()
