"""Write a merged LLaMA model as a GGUF file that llama.cpp (and Ollama) can load and run.

The `gguf` package writes the container; what makes the file usable is what this module puts in it,
following llama.cpp's own converter (convert_hf_to_gguf.py, `LlamaModel`):

- `llama.*` hyperparameters (context and embedding length, blocks, heads, RoPE, RMS-norm epsilon);
- tensors under llama.cpp's names (gguf's own HF-to-GGUF name map), with the q/k projection rows
  permuted from Hugging Face's rotate-half RoPE layout to llama.cpp's interleaved one; a tied output
  head (SmolLM2) is written once, as `token_embd`, with no `output` tensor: llama.cpp then computes
  the logits with the embedding matrix, as its own converter arranges;
- the tokenizer: every token with its type, the BPE merges, the pre-tokenizer named the way
  llama.cpp names the same split regex, special ids (BOS, EOS, end of turn, pad, unknown), whether
  BOS is added, and the chat template. The ids come from the tokenizer itself, never assumed: the
  embedded model's are `<s>`/`</s>`/`<pad>`, SmolLM2's `<|im_start|>` (BOS) and `<|im_end|>` (EOS,
  end of turn and pad). Whether llama.cpp adds BOS follows the Hugging Face tokenizer: neither of
  those adds it (the chat template writes the sequence prefix itself), so `add_bos_token` is false
  and a rendered prompt is never given a second one.

Anything this cannot represent faithfully (another architecture, RoPE scaling, biases, another kind
of tokenizer) is refused with a GastownFTError that names it, rather than written as a file that
loads but produces garbage.

`read_gguf_tensors` reads a file back into Hugging Face names and layout, for checking a round trip.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from gastown_ft import atomic
from gastown_ft.errors import GastownFTError
from gastown_ft.training.chat_format import TURN_END

GGUFDtype = Literal["f16", "f32"]
GGUF_DTYPES: tuple[str, ...] = ("f16", "f32")
SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM",)
ARCH = "llama"

# Tensors a checkpoint may hold that are recomputed at load time, not weights.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)

# Split regexes of HF byte-level pre-tokenizers and the llama.cpp pre-tokenizer with the same regex.
# "gpt-2" in llama.cpp: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)
# (HF's ByteLevel regex ends in an extra |\s+, which only takes whitespace llama.cpp's splitter
# also leaves as its own piece). "smollm" in llama.cpp: \p{N} first, then the same regex.
_BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
_DIGITS = {"type": "Digits", "individual_digits": True}


@dataclass(frozen=True)
class GGUFResult:
    path: Path
    dtype: str
    architecture: str
    tensors: int
    parameters: int
    bytes: int
    sha256: str
    vocab_size: int
    tokenizer_pre: str
    bos_token_id: int | None
    eos_token_id: int
    eot_token_id: int | None
    add_bos_token: bool  # whether llama.cpp prepends BOS itself (then a prompt must not start with it)
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["path"] = str(self.path)
        d["seconds"] = round(self.seconds, 3)
        return d


# -- q/k layout -------------------------------------------------------------------------------------------


def permute_qk(weights: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """HF q/k projection rows -> llama.cpp's layout; exactly `LlamaModel.permute` of convert_hf_to_gguf.py.

    Hugging Face's RoPE rotates the two halves of each head; llama.cpp rotates adjacent pairs. Per head
    the rows [0..d/2) and [d/2..d) are interleaved. For k, pass the number of key/value heads.
    """
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def unpermute_qk(weights: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """The inverse of `permute_qk`: llama.cpp's q/k rows back to Hugging Face's layout."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (
        weights.reshape(n_head, weights.shape[0] // n_head // 2, 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


# -- reading the merged model -----------------------------------------------------------------------------


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GastownFTError(
            f"{path.parent} is not a merged model directory ({path.name} is missing)",
            hint="merge the adapter first: `gastown-ft materialize --select merged_model`",
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GastownFTError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise GastownFTError(f"{path} is not a JSON object")
    return data


def _check_architecture(config: dict[str, Any], where: Path) -> None:
    archs = config.get("architectures") or []
    if config.get("model_type") != ARCH or not any(a in SUPPORTED_ARCHITECTURES for a in archs):
        raise GastownFTError(
            f"GGUF export supports the LLaMA architecture only; the model at {where} is "
            f"{', '.join(archs) or config.get('model_type') or 'unknown'} (model_type {config.get('model_type')!r})",
            hint="set [export] gguf = false to export safetensors only, or convert it with llama.cpp's "
            "convert_hf_to_gguf.py",
        )
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else "default"
    if rope_type not in (None, "default"):
        raise GastownFTError(
            f"GGUF export does not support RoPE scaling {rope_type!r} (model at {where})",
            hint="set [export] gguf = false, or convert it with llama.cpp's convert_hf_to_gguf.py",
        )
    for key in ("attention_bias", "mlp_bias"):
        if config.get(key):
            raise GastownFTError(
                f"GGUF export does not support LLaMA models with {key} = true (model at {where})",
                hint="set [export] gguf = false, or convert it with llama.cpp's convert_hf_to_gguf.py",
            )


def _rope_theta(config: dict[str, Any]) -> float:
    rope = config.get("rope_parameters")
    if isinstance(rope, dict) and "rope_theta" in rope:
        return float(rope["rope_theta"])
    return float(config.get("rope_theta", 10000.0))


def _weight_files(model_dir: Path) -> list[Path]:
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(_load_json(index)["weight_map"].values()))
        return [model_dir / n for n in names]
    single = model_dir / "model.safetensors"
    if single.is_file():
        return [single]
    raise GastownFTError(
        f"no safetensors weights in {model_dir} (model.safetensors or model.safetensors.index.json)",
        hint="export from the merged model directory that merge_adapter wrote",
    )


def _hf_tensors(model_dir: Path) -> Iterator[tuple[str, np.ndarray]]:
    """(name, float32 array) for every weight of the model, streamed one tensor at a time."""
    import torch
    from safetensors import safe_open

    for path in _weight_files(model_dir):
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                yield name, f.get_tensor(name).to(torch.float32).numpy()


# -- tokenizer ---------------------------------------------------------------------------------------------


def tokenizer_pre_name(tokenizer_json: dict[str, Any]) -> str:
    """llama.cpp's name for this tokenizer's pre-tokenizer; GastownFTError for a tokenizer it cannot match.

    Only byte-level BPE tokenizers whose split regex llama.cpp implements identically are accepted:
    llama.cpp re-implements each pre-tokenizer by name, so a near miss would tokenize differently.
    """
    model = tokenizer_json.get("model") or {}
    pre = tokenizer_json.get("pre_tokenizer")
    decoder = tokenizer_json.get("decoder") or {}

    def describe() -> str:
        return (
            f"model {model.get('type')!r}, normalizer {json.dumps(tokenizer_json.get('normalizer'))}, "
            f"pre-tokenizer {json.dumps(pre)}, decoder {decoder.get('type')!r}"
        )

    if (
        model.get("type") != "BPE"
        or model.get("byte_fallback")
        or tokenizer_json.get("normalizer") is not None
        or decoder.get("type") != "ByteLevel"
    ):
        raise GastownFTError(
            f"GGUF export supports byte-level BPE tokenizers only; this one is: {describe()}",
            hint="set [export] gguf = false to export safetensors only",
        )

    def is_(node: Any, want: dict[str, Any]) -> bool:
        return isinstance(node, dict) and all(node.get(k) == v for k, v in want.items())

    if is_(pre, _BYTE_LEVEL):
        return "gpt-2"
    if is_(pre, {"type": "Sequence"}):
        steps = pre.get("pretokenizers") or []
        if len(steps) == 2 and is_(steps[0], _DIGITS) and is_(steps[1], _BYTE_LEVEL):
            return "smollm"
    raise GastownFTError(
        f"GGUF export does not know llama.cpp's equivalent of this tokenizer's pre-tokenizer: {describe()}",
        hint="set [export] gguf = false to export safetensors only, or convert it with llama.cpp's "
        "convert_hf_to_gguf.py",
    )


@dataclass(frozen=True)
class _Vocab:
    tokens: list[str]
    types: list[int]
    merges: list[str]
    pre: str
    bos: int | None
    eos: int
    eot: int | None
    pad: int | None
    unk: int | None
    add_bos: bool
    add_eos: bool
    chat_template: str | None


def _vocab(model_dir: Path, vocab_size: int) -> _Vocab:
    import gguf
    from transformers import AutoTokenizer

    tokenizer_file = model_dir / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise GastownFTError(
            f"{model_dir} has no tokenizer.json: GGUF export needs a fast (tokenizers) byte-level BPE tokenizer",
            hint="set [export] gguf = false to export safetensors only",
        )
    pre = tokenizer_pre_name(_load_json(tokenizer_file))
    tok = AutoTokenizer.from_pretrained(str(model_dir))

    by_id = {i: t for t, i in tok.get_vocab().items()}
    if len(by_id) > vocab_size or max(by_id) >= vocab_size:
        raise GastownFTError(
            f"the tokenizer in {model_dir} has {len(by_id)} tokens but the model only {vocab_size} embeddings"
        )
    added = tok.added_tokens_decoder  # id -> AddedToken
    tokens: list[str] = []
    types: list[int] = []
    for i in range(vocab_size):
        if i not in by_id:  # embedding rows the tokenizer never produces (padded vocabularies)
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(added[i].content)
            types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)

    merges = gguf.SpecialVocab(model_dir, load_merges=True, special_token_types=()).merges
    if not merges:
        raise GastownFTError(f"the tokenizer in {model_dir} has no BPE merges")

    eos = tok.eos_token_id
    if eos is None:
        raise GastownFTError(f"the tokenizer in {model_dir} has no EOS token")
    turn_end = tok(TURN_END, add_special_tokens=False)["input_ids"]
    probe = tok("a", add_special_tokens=True)["input_ids"]
    return _Vocab(
        tokens=tokens,
        types=[int(t) for t in types],
        merges=merges,
        pre=pre,
        bos=tok.bos_token_id,
        eos=int(eos),
        eot=int(turn_end[0]) if len(turn_end) == 1 else None,
        pad=tok.pad_token_id,
        unk=tok.unk_token_id,
        add_bos=bool(tok.bos_token_id is not None and probe[:1] == [tok.bos_token_id]),
        add_eos=bool(probe[-1:] == [eos] and len(probe) > 1),
        chat_template=tok.chat_template if isinstance(tok.chat_template, str) else None,
    )


# -- writing -----------------------------------------------------------------------------------------------


def write_gguf(
    merged_dir: Path | str,
    out_path: Path | str,
    dtype: GGUFDtype = "f16",
    *,
    name: str | None = None,
) -> GGUFResult:
    """Write the merged Hugging Face LLaMA model at `merged_dir` as one GGUF file at `out_path`.

    `dtype` "f16" stores matrices as float16 and norms as float32 (as llama.cpp's converter does);
    "f32" stores everything as float32 (exact). The file is written beside `out_path` and renamed
    into place, so a reader never sees a partial file.
    """
    import gguf

    started = time.perf_counter()
    merged_dir, out_path = Path(merged_dir), Path(out_path)
    if dtype not in GGUF_DTYPES:
        raise GastownFTError(f"GGUF dtype must be one of {', '.join(GGUF_DTYPES)} (got {dtype!r})")
    config = _load_json(merged_dir / "config.json")
    _check_architecture(config, merged_dir)

    n_embd = int(config["hidden_size"])
    n_head = int(config["num_attention_heads"])
    n_head_kv = int(config.get("num_key_value_heads") or n_head)
    n_layer = int(config["num_hidden_layers"])
    head_dim = int(config.get("head_dim") or n_embd // n_head)
    vocab_size = int(config["vocab_size"])
    tied = bool(config.get("tie_word_embeddings", False))
    vocab = _vocab(merged_dir, vocab_size)

    with atomic.atomic_path(out_path) as tmp:
        writer = gguf.GGUFWriter(str(tmp), ARCH)
        try:
            file_type = gguf.LlamaFileType.MOSTLY_F16 if dtype == "f16" else gguf.LlamaFileType.ALL_F32
            writer.add_name(name or merged_dir.name)
            writer.add_file_type(file_type)
            writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
            writer.add_context_length(int(config["max_position_embeddings"]))
            writer.add_embedding_length(n_embd)
            writer.add_block_count(n_layer)
            writer.add_feed_forward_length(int(config["intermediate_size"]))
            writer.add_head_count(n_head)
            writer.add_head_count_kv(n_head_kv)
            writer.add_rope_dimension_count(head_dim)
            if head_dim != n_embd // n_head:
                writer.add_key_length(head_dim)
                writer.add_value_length(head_dim)
            writer.add_rope_freq_base(_rope_theta(config))
            writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
            writer.add_vocab_size(vocab_size)

            writer.add_tokenizer_model("gpt2")
            writer.add_tokenizer_pre(vocab.pre)
            writer.add_token_list(vocab.tokens)
            writer.add_token_types(vocab.types)
            writer.add_token_merges(vocab.merges)
            writer.add_eos_token_id(vocab.eos)
            for add, value in (
                (writer.add_bos_token_id, vocab.bos),
                (writer.add_eot_token_id, vocab.eot),
                (writer.add_pad_token_id, vocab.pad),
                (writer.add_unk_token_id, vocab.unk),
            ):
                if value is not None:
                    add(int(value))
            writer.add_add_bos_token(vocab.add_bos)
            writer.add_add_eos_token(vocab.add_eos)
            if vocab.chat_template:
                writer.add_chat_template(vocab.chat_template)

            names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layer)
            n_tensors = n_params = 0
            for hf_name, data in _hf_tensors(merged_dir):
                if hf_name.endswith(_IGNORED_SUFFIXES) or (tied and hf_name == "lm_head.weight"):
                    continue
                gg_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
                if gg_name is None:
                    raise GastownFTError(
                        f"GGUF export does not know where tensor {hf_name!r} of {merged_dir} goes in llama.cpp's layout",
                        hint="set [export] gguf = false, or convert it with llama.cpp's convert_hf_to_gguf.py",
                    )
                if hf_name.endswith("q_proj.weight"):
                    data = permute_qk(data, n_head, n_head)
                elif hf_name.endswith("k_proj.weight"):
                    data = permute_qk(data, n_head, n_head_kv)
                # Norm vectors stay float32 in an f16 file, as llama.cpp's converter keeps them.
                store = np.float16 if dtype == "f16" and data.ndim > 1 else np.float32
                writer.add_tensor(gg_name, np.ascontiguousarray(data.astype(store)))
                n_tensors += 1
                n_params += int(data.size)

            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
            writer.close()
            digest = _sha256(tmp)
            size = tmp.stat().st_size
        except BaseException:
            writer.close()
            raise
    return GGUFResult(
        path=out_path,
        dtype=dtype,
        architecture=ARCH,
        tensors=n_tensors,
        parameters=n_params,
        bytes=size,
        sha256=digest,
        vocab_size=vocab_size,
        tokenizer_pre=vocab.pre,
        bos_token_id=vocab.bos,
        eos_token_id=vocab.eos,
        eot_token_id=vocab.eot,
        add_bos_token=vocab.add_bos,
        seconds=time.perf_counter() - started,
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


# -- reading back ------------------------------------------------------------------------------------------


def read_gguf_metadata(path: Path | str) -> dict[str, Any]:
    """The file's key/value metadata: strings, numbers, and lists of them (tokens, merges, ...)."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    return {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}


def read_gguf_tensors(path: Path | str) -> dict[str, np.ndarray]:
    """The file's LLaMA tensors under Hugging Face names, in Hugging Face layout, as float32.

    The inverse of `write_gguf` for the weights: names mapped back, q/k rows un-permuted. A tied
    model has no `lm_head.weight` here (as in its safetensors).
    """
    import gguf

    reader = gguf.GGUFReader(str(path))
    # Only the scalars needed here: reading every field (the token list, the merges) costs seconds.
    meta = {
        k: reader.fields[k].contents()
        for k in (
            "general.architecture",
            f"{ARCH}.block_count",
            f"{ARCH}.attention.head_count",
            f"{ARCH}.attention.head_count_kv",
        )
        if k in reader.fields
    }
    arch = meta.get("general.architecture")
    if arch != ARCH:
        raise GastownFTError(f"{path} is a GGUF of architecture {arch!r}, not {ARCH!r}")
    n_layer = int(meta[f"{ARCH}.block_count"])
    n_head = int(meta[f"{ARCH}.attention.head_count"])
    n_head_kv = int(meta.get(f"{ARCH}.attention.head_count_kv", n_head))

    # gguf's name map goes HF -> GGUF; invert it for the names this architecture can have.
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layer)
    hf_for: dict[str, str] = {}
    candidates = ["model.embed_tokens", "model.norm", "lm_head"] + [
        f"model.layers.{i}.{part}"
        for i in range(n_layer)
        for part in (
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
            "input_layernorm",
            "post_attention_layernorm",
        )
    ]
    for hf in candidates:
        gg = names.get_name(hf)
        if gg is not None:
            hf_for[gg + ".weight"] = hf + ".weight"

    out: dict[str, np.ndarray] = {}
    for t in reader.tensors:
        hf_name = hf_for.get(t.name)
        if hf_name is None:
            raise GastownFTError(f"{path} has a tensor {t.name!r} that is not part of a LLaMA model")
        data = np.array(t.data, dtype=np.float32).reshape([int(d) for d in reversed(t.shape)])
        if hf_name.endswith("q_proj.weight"):
            data = unpermute_qk(data, n_head, n_head)
        elif hf_name.endswith("k_proj.weight"):
            data = unpermute_qk(data, n_head, n_head_kv)
        out[hf_name] = data
    return out
