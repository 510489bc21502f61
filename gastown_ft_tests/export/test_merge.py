"""merge_adapter: the merged model computes what base + adapter computed, and stops at the end of a turn."""

from __future__ import annotations

import json

import pytest

from gastown_ft.errors import GastownFTError
from gastown_ft.export.merge import MERGE_REPORT, merge_adapter
from gastown_ft.training.chat_format import CHAT_TEMPLATE, EOS, TURN_END, render
from gastown_ft_tests.export.models import PROMPT, conversations, one_torch_thread, tiny_export_models


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return tiny_export_models(tmp_path_factory)


@pytest.fixture(scope="module")
def merged(models, tmp_path_factory):
    out = tmp_path_factory.mktemp("merge") / "merged"
    result = merge_adapter(models.base_dir, models.adapter_dir, out)
    return result


def _batch(tok, texts):
    return tok(texts, add_special_tokens=False, return_tensors="pt", padding=True)


def test_merged_logits_equal_base_plus_adapter(models, merged):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(models.base_dir))
    enc = _batch(tok, conversations(4, seed=3))
    with torch.no_grad():
        base = AutoModelForCausalLM.from_pretrained(str(models.base_dir), dtype=torch.float32)
        base_logits = base(**enc).logits
        peft_logits = PeftModel.from_pretrained(base, str(models.adapter_dir))(**enc).logits
        merged_model = AutoModelForCausalLM.from_pretrained(str(merged.path), dtype=torch.float32)
        merged_logits = merged_model(**enc).logits

    mask = enc["attention_mask"].bool()
    # The adapter really changes the model (else equality below would prove nothing) ...
    assert merged.changed_tensors > 0
    assert (peft_logits - base_logits)[mask].abs().max() > 1e-2
    # ... and the merged weights reproduce base + adapter.
    torch.testing.assert_close(merged_logits[mask], peft_logits[mask], atol=1e-4, rtol=1e-4)


def test_merged_dir_is_a_standalone_hf_model(merged):
    from transformers import AutoTokenizer, GenerationConfig

    files = {p.name for p in merged.path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= files
    assert not any(n.startswith("adapter") for n in files)

    tok = AutoTokenizer.from_pretrained(str(merged.path))
    assert tok.chat_template == CHAT_TEMPLATE
    assert tok.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True) == render(
        PROMPT, add_generation_prompt=True
    )
    im_end, eos = tok.convert_tokens_to_ids(TURN_END), tok.convert_tokens_to_ids(EOS)
    gen = GenerationConfig.from_pretrained(str(merged.path))
    assert gen.eos_token_id == [im_end, eos] == merged.eos_token_ids
    assert gen.pad_token_id == tok.pad_token_id == merged.pad_token_id

    report = json.loads((merged.path / MERGE_REPORT).read_text())
    assert report["fingerprint"] == merged.fingerprint
    assert report["eos_token_ids"] == [im_end, eos]


def test_merged_model_stops_at_end_of_turn(merged):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(merged.path))
    model = AutoModelForCausalLM.from_pretrained(str(merged.path), dtype=torch.float32)
    prompt = tok.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    max_new = 48
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=max_new, do_sample=False)[0, ids.shape[1] :].tolist()
    im_end = tok.convert_tokens_to_ids(TURN_END)
    # Stopped by its own generation config: ends on <|im_end|> well before the token limit,
    # having written a reply first.
    assert out[-1] == im_end, tok.decode(out)
    assert 1 < len(out) < max_new
    assert im_end not in out[:-1]
    assert tok.decode(out[:-1]).startswith("bd ")


def test_merge_replaces_out_dir_whole_and_leaves_no_staging(models, tmp_path):
    out = tmp_path / "merged"
    out.mkdir()
    (out / "stale.bin").write_text("from an older export")
    merge_adapter(models.base_dir, models.adapter_dir, out)
    assert not (out / "stale.bin").exists()
    assert (out / "model.safetensors").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["merged"]


def test_merge_saves_the_requested_dtype(models, tmp_path):
    from safetensors import safe_open

    result = merge_adapter(models.base_dir, models.adapter_dir, tmp_path / "m16", dtype="bfloat16")
    assert result.dtype == "bfloat16"
    with safe_open(str(tmp_path / "m16" / "model.safetensors"), framework="pt") as f:
        assert {str(f.get_tensor(k).dtype) for k in f.keys()} == {"torch.bfloat16"}  # noqa: SIM118


def test_missing_adapter_is_an_operator_error_and_touches_nothing(models, tmp_path):
    out = tmp_path / "merged"
    out.mkdir()
    (out / "keep.txt").write_text("previous export")
    with pytest.raises(GastownFTError, match="no LoRA adapter"):
        merge_adapter(models.base_dir, tmp_path / "nowhere", out)
    with pytest.raises(GastownFTError, match="merged dtype"):
        merge_adapter(models.base_dir, models.adapter_dir, out, dtype="int8")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_an_untrained_adapter_is_reported_as_changing_nothing(models, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(models.base_dir))
    untrained = get_peft_model(
        base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    )
    untrained.save_pretrained(str(tmp_path / "adapter"))
    assert merge_adapter(models.base_dir, tmp_path / "adapter", tmp_path / "merged").changed_tensors == 0
