"""Merge a LoRA adapter into its base model: one standalone Hugging Face model directory.

The result is what any Hugging Face tool (and `gguf.write_gguf`) can load without peft:
safetensors weights, the tokenizer carrying the project's chat template, and a generation config
whose end-of-sequence ids include `<|im_end|>` (the end of an assistant turn), so generation stops
where training taught the model to stop.

Written to a staging directory next to `out_dir` and renamed into place at the end: a failed or
interrupted merge never leaves a half-written model where a loader would find it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gastown_ft import atomic
from gastown_ft.errors import GastownFTError
from gastown_ft.training.chat_format import CHAT_TEMPLATE, EOS, PAD, TURN_END

MERGE_REPORT = "merge.json"
MERGED_DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class MergeResult:
    path: Path
    parameters: int
    changed_tensors: int  # weight matrices the adapter changes (0: an untrained adapter, a no-op)
    eos_token_ids: list[int]  # generation stops at any of these
    pad_token_id: int
    dtype: str
    seconds: float
    fingerprint: str
    base_dir: Path
    adapter_dir: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "parameters": self.parameters,
            "changed_tensors": self.changed_tensors,
            "eos_token_ids": self.eos_token_ids,
            "pad_token_id": self.pad_token_id,
            "dtype": self.dtype,
            "seconds": round(self.seconds, 3),
            "fingerprint": self.fingerprint,
            "base_dir": str(self.base_dir),
            "adapter_dir": str(self.adapter_dir),
            **self.extra,
        }


def stop_token_ids(tokenizer) -> list[int]:
    """The ids that end generation: `<|im_end|>` first (end of turn), then the tokenizer's EOS, and `</s>`
    where it is one of the tokenizer's special tokens (the embedded model's; SmolLM2 has none).

    GastownFTError when `<|im_end|>` is not one token of this tokenizer: the model could then never
    emit it as one step, and nothing would stop generation at the end of its turn.
    """
    im_end = _single_token_id(tokenizer, TURN_END)
    if im_end is None:
        raise GastownFTError(
            f"the tokenizer has no single token for {TURN_END!r}, so generation could not stop at the end "
            "of a turn",
            hint="fine-tune a base model whose tokenizer has the ChatML tokens (the embedded model, "
            "SmolLM2, Qwen) or add them as special tokens before training",
        )
    ids = [im_end]
    for candidate in (tokenizer.eos_token_id, _special_token_id(tokenizer, EOS)):
        if candidate is not None and int(candidate) not in ids:
            ids.append(int(candidate))
    return ids


def _single_token_id(tokenizer, text: str) -> int | None:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return int(ids[0]) if len(ids) == 1 else None


def _special_token_id(tokenizer, text: str) -> int | None:
    """The id of `text` when it is one of the tokenizer's special (added) tokens, else None.

    A plain vocabulary entry that happens to spell `</s>` or `<pad>` in a byte-level BPE vocabulary is
    ordinary text the model may write, never a stop or padding token."""
    for i, token in tokenizer.added_tokens_decoder.items():
        if token.content == text and token.special:
            return int(i)
    return None


def _pad_token_id(tokenizer, eos_ids: list[int]) -> int:
    """The tokenizer's pad token; else a special `<pad>`; else the last stop id (SmolLM2 pads with
    `<|im_end|>` itself)."""
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    pad = _special_token_id(tokenizer, PAD)
    return pad if pad is not None else eos_ids[-1]


def _check_inputs(base_dir: Path, adapter_dir: Path) -> None:
    if not (base_dir / "config.json").is_file():
        raise GastownFTError(
            f"no base model at {base_dir} (config.json is missing)",
            hint="materialize the base_model asset first: `gastown-ft materialize --select base_model`",
        )
    if not (adapter_dir / "adapter_config.json").is_file():
        raise GastownFTError(
            f"no LoRA adapter at {adapter_dir} (adapter_config.json is missing)",
            hint="train one first: `gastown-ft materialize --select lora_adapter`",
        )


def merge_adapter(
    base_dir: Path | str,
    adapter_dir: Path | str,
    out_dir: Path | str,
    *,
    dtype: str | None = None,
    extra: dict[str, Any] | None = None,
) -> MergeResult:
    """Merge the LoRA adapter at `adapter_dir` into the model at `base_dir`; save under `out_dir`.

    The merge itself runs in float32 (no rounding of the low-rank update); the saved weights take
    `dtype` ("float32", "bfloat16", "float16"; None or "auto": the base model's own dtype). `out_dir` is
    replaced as a whole. `extra` goes into the report file `merge.json` beside the weights.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gastown_ft.training.base_model import _no_progress_bars, model_fingerprint

    started = time.perf_counter()
    base_dir, adapter_dir, out_dir = Path(base_dir), Path(adapter_dir), Path(out_dir)
    if dtype not in (None, "auto", *MERGED_DTYPES):
        raise GastownFTError(
            f"merged dtype must be auto or one of {', '.join(MERGED_DTYPES)} (got {dtype!r})"
        )
    _check_inputs(base_dir, adapter_dir)

    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    eos_ids = stop_token_ids(tokenizer)
    pad_id = _pad_token_id(tokenizer, eos_ids)
    # The chat format the adapter was trained on, whatever template the base model shipped with.
    tokenizer.chat_template = CHAT_TEMPLATE

    with _no_progress_bars():
        base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    saved_dtype = _config_dtype(base_dir) if dtype in (None, "auto") else dtype
    try:
        peft_model = PeftModel.from_pretrained(base, str(adapter_dir))
    except (ValueError, KeyError, RuntimeError) as e:
        raise GastownFTError(
            f"the adapter at {adapter_dir} does not fit the base model at {base_dir}: {e}",
            hint="merge an adapter with the base model it was trained on (see provenance.json beside it)",
        ) from None
    changed = _changed_layers(peft_model)
    merged = peft_model.merge_and_unload()

    merged.generation_config.eos_token_id = eos_ids
    merged.generation_config.pad_token_id = pad_id
    if tokenizer.bos_token_id is not None:
        merged.generation_config.bos_token_id = int(tokenizer.bos_token_id)
    merged.config.pad_token_id = pad_id
    merged = merged.to(getattr(torch, saved_dtype))
    n_params = sum(p.numel() for p in merged.parameters())

    with atomic.staged_dir(out_dir) as tmp:
        with _no_progress_bars():
            merged.save_pretrained(str(tmp))
            tokenizer.save_pretrained(str(tmp))
        result = MergeResult(
            path=out_dir,
            parameters=n_params,
            changed_tensors=changed,
            eos_token_ids=eos_ids,
            pad_token_id=pad_id,
            dtype=saved_dtype,
            seconds=time.perf_counter() - started,
            fingerprint=model_fingerprint(tmp),
            base_dir=base_dir,
            adapter_dir=adapter_dir,
            extra=dict(extra or {}),
        )
        (tmp / MERGE_REPORT).write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return result


def _changed_layers(peft_model) -> int:
    """Layers whose LoRA update is non-zero (an untrained adapter has B = 0 and changes nothing)."""
    from peft.tuners.lora import LoraLayer

    return sum(
        1
        for module in peft_model.modules()
        if isinstance(module, LoraLayer) and any(bool(b.weight.any()) for b in module.lora_B.values())
    )


def _config_dtype(base_dir: Path) -> str:
    """The dtype the base model was saved in (loading it as float32 overwrote the in-memory config)."""
    config = json.loads((base_dir / "config.json").read_text(encoding="utf-8"))
    name = str(config.get("dtype") or config.get("torch_dtype") or "float32").removeprefix("torch.")
    return name if name in MERGED_DTYPES else "float32"
