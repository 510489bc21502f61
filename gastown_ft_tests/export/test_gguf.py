"""write_gguf: llama.cpp's layout, tokenizer metadata, and weights that round-trip to the merged model.

Where `llama_cpp` (llama-cpp-python) is importable, llama.cpp itself loads the files, tokenizes like
the Hugging Face tokenizer, computes the same logits and stops at the end of a turn.
"""

from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest

from gastown_ft.errors import GastownFTError
from gastown_ft.export.gguf import (
    permute_qk,
    read_gguf_metadata,
    read_gguf_tensors,
    tokenizer_pre_name,
    unpermute_qk,
    write_gguf,
)
from gastown_ft.export.merge import merge_adapter
from gastown_ft.training.chat_format import CHAT_TEMPLATE, TURN_END
from gastown_ft_tests.export.models import PROMPT, conversations, one_torch_thread, tiny_export_models

HAVE_LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None
needs_llama_cpp = pytest.mark.skipif(
    not HAVE_LLAMA_CPP,
    reason="llama_cpp is not importable: install llama-cpp-python==0.3.36 to check the GGUF with llama.cpp",
)

TEXTS = [
    "bd create --title 'hook bug' --type bug",
    "  leading spaces,\ttabs and\n\nblank lines   ",
    "don't won't they're I'll we've 12345 3.14 x=y+z; café naïve 日本語 🙂",
    "<|im_start|>user\nsling gt-42<|im_end|>\n<|im_start|>assistant\n",
]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_export_models(tmp_path_factory)


@pytest.fixture(scope="module")
def exported(models, tmp_path_factory):
    """The merged tiny model and GGUF files: {"merged": dir, "f32", "f16", "gqa_f32", "smollm": path}."""
    root = tmp_path_factory.mktemp("gguf")
    merged = merge_adapter(models.base_dir, models.adapter_dir, root / "merged").path
    out = {"merged": merged}
    for dtype in ("f32", "f16"):
        out[dtype] = write_gguf(merged, root / f"model-{dtype}.gguf", dtype).path
    out["gqa_f32"] = write_gguf(models.gqa_dir, root / "gqa-f32.gguf", "f32").path
    out["smollm"] = write_gguf(models.smollm_dir, root / "smollm.gguf", "f16").path
    return out


def _safetensors(model_dir):
    from safetensors.numpy import load_file

    return {k: v.astype(np.float32) for k, v in load_file(str(model_dir / "model.safetensors")).items()}


# -- q/k layout ---------------------------------------------------------------------------------------------


def test_permute_interleaves_the_rope_halves_of_each_head():
    # One head of dim 4: HF rotates rows (0, 2) and (1, 3) together; llama.cpp wants each pair adjacent.
    w = np.arange(4 * 3, dtype=np.float32).reshape(4, 3)
    assert permute_qk(w, 1).tolist() == w[[0, 2, 1, 3]].tolist()
    # Two heads of dim 4, and k with fewer heads than q: each head is permuted on its own.
    w = np.arange(8 * 2, dtype=np.float32).reshape(8, 2)
    assert permute_qk(w, 4, 2).tolist() == w[[0, 2, 1, 3, 4, 6, 5, 7]].tolist()
    assert unpermute_qk(permute_qk(w, 4, 2), 4, 2).tolist() == w.tolist()
    w = np.random.default_rng(0).normal(size=(64, 16)).astype(np.float32)
    assert np.array_equal(unpermute_qk(permute_qk(w, 4), 4), w)


# -- round trip and metadata ----------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["f32", "f16", "gqa_f32"])
def test_gguf_tensors_round_trip_to_the_merged_weights(models, exported, which):
    model_dir = models.gqa_dir if which == "gqa_f32" else exported["merged"]
    config = json.loads((model_dir / "config.json").read_text())
    want = _safetensors(model_dir)
    got = read_gguf_tensors(exported[which])
    assert set(got) == set(want)
    assert ("lm_head.weight" in got) == (not config["tie_word_embeddings"])
    for name, w in want.items():
        assert got[name].shape == w.shape, name
        if which.endswith("f32"):
            assert np.array_equal(got[name], w), name
        else:
            np.testing.assert_allclose(got[name], w, rtol=1e-3, atol=1e-4, err_msg=name)


def test_gguf_holds_llama_metadata_and_the_tokenizer(models, exported):
    from transformers import AutoTokenizer

    merged = exported["merged"]
    config = json.loads((merged / "config.json").read_text())
    tok = AutoTokenizer.from_pretrained(str(merged))
    meta = read_gguf_metadata(exported["f16"])

    assert meta["general.architecture"] == "llama"
    assert meta["general.file_type"] == 1  # mostly f16
    assert meta["llama.context_length"] == config["max_position_embeddings"]
    assert meta["llama.embedding_length"] == config["hidden_size"]
    assert meta["llama.block_count"] == config["num_hidden_layers"]
    assert meta["llama.feed_forward_length"] == config["intermediate_size"]
    assert meta["llama.attention.head_count"] == config["num_attention_heads"]
    assert meta["llama.attention.head_count_kv"] == config["num_key_value_heads"]
    assert meta["llama.rope.dimension_count"] == config["hidden_size"] // config["num_attention_heads"]
    assert meta["llama.rope.freq_base"] == pytest.approx(config["rope_parameters"]["rope_theta"])
    assert meta["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(config["rms_norm_eps"])
    assert meta["llama.vocab_size"] == config["vocab_size"]

    assert meta["tokenizer.ggml.model"] == "gpt2"
    assert meta["tokenizer.ggml.pre"] == "gpt-2"
    vocab = tok.get_vocab()
    assert meta["tokenizer.ggml.tokens"] == sorted(vocab, key=vocab.get)
    special = set(tok.all_special_ids)
    types = meta["tokenizer.ggml.token_type"]
    assert {i for i, t in enumerate(types) if t == 3} == special  # CONTROL
    assert all(t == 1 for i, t in enumerate(types) if i not in special)  # NORMAL
    merges = json.loads((merged / "tokenizer.json").read_text())["model"]["merges"]
    assert meta["tokenizer.ggml.merges"] == [" ".join(m) if isinstance(m, list) else m for m in merges]
    assert meta["tokenizer.ggml.bos_token_id"] == tok.bos_token_id
    assert meta["tokenizer.ggml.eos_token_id"] == tok.eos_token_id
    assert meta["tokenizer.ggml.eot_token_id"] == tok.convert_tokens_to_ids(TURN_END)
    assert meta["tokenizer.ggml.padding_token_id"] == tok.pad_token_id
    assert meta["tokenizer.ggml.add_bos_token"] is False  # the chat template writes <s> itself
    assert meta["tokenizer.chat_template"] == CHAT_TEMPLATE


def test_padded_vocabulary_gets_unused_tokens(models, exported):
    config = json.loads((models.gqa_dir / "config.json").read_text())
    meta = read_gguf_metadata(exported["gqa_f32"])
    tokens, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
    assert len(tokens) == len(types) == config["vocab_size"]
    assert tokens[-1] == f"[PAD{config['vocab_size'] - 1}]" and types[-3:] == [5, 5, 5]  # UNUSED
    assert meta["llama.attention.head_count_kv"] == 2


# -- the pre-tokenizer llama.cpp is told to use splits like ours -----------------------------------------------

# llama.cpp's split regexes for the names write_gguf emits (llama-vocab.cpp).
_LLAMA_CPP_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_LLAMA_CPP_REGEXES = {"gpt-2": [_LLAMA_CPP_GPT2], "smollm": [r"\p{N}", _LLAMA_CPP_GPT2]}


def _llama_cpp_split(text: str, regexes: list[str]) -> list[str]:
    """llama.cpp's unicode_regex_split: each regex splits every piece; text between matches is kept."""
    import regex

    pieces = [text]
    for rx in regexes:
        out = []
        for piece in pieces:
            pos = 0
            for m in regex.finditer(rx, piece):
                if m.start() > pos:
                    out.append(piece[pos : m.start()])
                out.append(m.group())
                pos = m.end()
            if pos < len(piece):
                out.append(piece[pos:])
        pieces = out
    return pieces


@pytest.mark.parametrize("pre", ["gpt-2", "smollm"])
def test_llama_cpp_pre_tokenizer_splits_text_like_the_hf_one(pre):
    from tokenizers import pre_tokenizers

    hf = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre == "smollm":
        hf = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), hf])
    as_bytes = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    texts = TEXTS + conversations(30, seed=5) + ["a  b", "x \n y", "end   ", "\n\nz", " 'tis", "1 22 333"]
    for text in texts:
        want = [p for p, _ in hf.pre_tokenize_str(text)]
        got = [as_bytes.pre_tokenize_str(p)[0][0] for p in _llama_cpp_split(text, _LLAMA_CPP_REGEXES[pre])]
        assert got == want, text


# -- refusals ------------------------------------------------------------------------------------------------


def test_unsupported_architecture_is_refused_by_name(exported, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(exported["merged"], model)
    config = json.loads((model / "config.json").read_text())
    config.update(model_type="qwen2", architectures=["Qwen2ForCausalLM"])
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(GastownFTError, match="Qwen2ForCausalLM"):
        write_gguf(model, tmp_path / "out.gguf")
    config.update(
        model_type="llama", architectures=["LlamaForCausalLM"], rope_parameters={"rope_type": "yarn"}
    )
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(GastownFTError, match="yarn"):
        write_gguf(model, tmp_path / "out.gguf")
    assert not any(tmp_path.glob("*.gguf")) and not any(tmp_path.glob(".*"))


def test_unsupported_tokenizers_are_refused_by_name(exported):
    base = json.loads((exported["merged"] / "tokenizer.json").read_text())
    assert tokenizer_pre_name(base) == "gpt-2"
    metaspace = {**base, "pre_tokenizer": {"type": "Metaspace", "replacement": "▁"}}
    with pytest.raises(GastownFTError, match="Metaspace"):
        tokenizer_pre_name(metaspace)
    prefix = {**base, "pre_tokenizer": {**base["pre_tokenizer"], "add_prefix_space": True}}
    with pytest.raises(GastownFTError, match="add_prefix_space"):
        tokenizer_pre_name(prefix)
    sentencepiece = {**base, "model": {**base["model"], "type": "Unigram"}}
    with pytest.raises(GastownFTError, match="Unigram"):
        tokenizer_pre_name(sentencepiece)


def test_bad_dtype_is_refused(exported, tmp_path):
    with pytest.raises(GastownFTError, match="q4_0"):
        write_gguf(exported["merged"], tmp_path / "x.gguf", "q4_0")


# -- llama.cpp itself ------------------------------------------------------------------------------------------


def _llama(path, **kw):
    import llama_cpp

    return llama_cpp.Llama(model_path=str(path), n_ctx=256, n_threads=2, seed=0, verbose=False, **kw)


def test_smollm_style_tokenizer_is_named_for_llama_cpp(exported):
    assert read_gguf_metadata(exported["smollm"])["tokenizer.ggml.pre"] == "smollm"
    assert read_gguf_metadata(exported["f16"])["tokenizer.ggml.pre"] == "gpt-2"


@needs_llama_cpp
@pytest.mark.parametrize("which", ["f16", "smollm"])
def test_llama_cpp_tokenizes_like_the_hf_tokenizer(models, exported, which):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(models.smollm_dir if which == "smollm" else exported["merged"]))
    llm = _llama(exported[which], vocab_only=True)
    for text in TEXTS + conversations(10, seed=7):
        want = tok(text, add_special_tokens=False)["input_ids"]
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == want, text
        assert llm.detokenize(want, special=True).decode() == text


@needs_llama_cpp
@pytest.mark.parametrize("which", ["f32", "gqa_f32"])
def test_llama_cpp_computes_the_hf_logits(models, exported, which):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = models.gqa_dir if which == "gqa_f32" else exported["merged"]
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    ids = tok(conversations(1, seed=11)[0], add_special_tokens=False)["input_ids"][:96]
    with torch.no_grad():
        hf = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
        want = hf(torch.tensor([ids])).logits[0].numpy()
    llm = _llama(exported[which], logits_all=True)
    llm.eval(ids)
    got = np.array(llm.scores[: len(ids)], dtype=np.float32)
    # A wrong q/k layout, norm or RoPE setting moves logits by whole units, not by float noise.
    assert np.abs(got - want).max() < 2e-2 * max(1.0, np.abs(want).max())
    assert (got.argmax(-1) == want.argmax(-1)).mean() > 0.98


@needs_llama_cpp
@pytest.mark.parametrize("which", ["f32", "f16"])
def test_llama_cpp_generates_the_hf_reply_and_stops(exported, which):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(exported["merged"]))
    prompt = tok.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        hf = AutoModelForCausalLM.from_pretrained(str(exported["merged"]), dtype=torch.float32)
        want = hf.generate(ids, max_new_tokens=48, do_sample=False)[0, ids.shape[1] :].tolist()
    assert want[-1] == tok.convert_tokens_to_ids(TURN_END)

    llm = _llama(exported[which])
    out = llm.create_completion(prompt, max_tokens=48, temperature=0.0, top_k=1)
    choice = out["choices"][0]
    # llama.cpp stops on its own at <|im_end|> (not at the token limit) with the same reply.
    assert choice["finish_reason"] == "stop"
    assert choice["text"] == tok.decode(want[:-1])


def test_modelfile_takes_the_sequence_prefix_and_stops_from_the_gguf(exported, tmp_path):
    """The embedded model's GGUF: BOS `<s>` (not added by llama.cpp) starts the template; EOS `</s>` stops."""
    from gastown_ft.export.ollama import gguf_chat_tokens, ollama_template, write_modelfile

    assert gguf_chat_tokens(exported["f16"]) == ("<s>", ("<|im_end|>", "<|im_start|>", "</s>"))
    (tmp_path / "model.gguf").symlink_to(exported["f16"])
    text = write_modelfile(tmp_path, num_ctx=256).read_text()
    assert f'TEMPLATE """{ollama_template()}"""' in text and ollama_template().startswith("<s>")
    assert gguf_chat_tokens(tmp_path / "Modelfile") is None  # not a GGUF
