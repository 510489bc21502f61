"""The embedded base model (tiny build: a few seconds), resolving base_model, and the fingerprint."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from gastown_ft.config import EmbeddedModelConfig
from gastown_ft.errors import GastownFTError
from gastown_ft.training.base_model import (
    REPORT_FILENAME,
    ResolvedModel,
    build_embedded_model,
    cpu_has_native_bf16,
    model_fingerprint,
    resolve_base_model,
)
from gastown_ft.training.chat_format import EOS, TURN_END
from gastown_ft_tests.training.test_tokenizer import demo_texts

TINY = EmbeddedModelConfig(
    vocab_size=512,
    hidden_size=64,
    intermediate_size=128,
    num_layers=2,
    num_heads=2,
    max_position_embeddings=256,
    pretrain_steps=30,
    pretrain_seq_len=64,
    pretrain_batch_size=8,
)


@pytest.fixture(scope="module")
def texts(demo_town) -> list[str]:
    return demo_texts(demo_town)


@pytest.fixture(scope="module")
def built(texts, tmp_path_factory):
    out = tmp_path_factory.mktemp("embedded") / "base_model"
    events: list[dict] = []
    report = build_embedded_model(texts, out, TINY, seed=0, progress=events.append)
    return report, events


# -- building -----------------------------------------------------------------------------------------


@pytest.mark.training
def test_build_writes_a_complete_model_and_the_loss_drops(built):
    report, events = built
    out = report.path
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (out / name).is_file(), name
    assert report.final_loss < report.initial_loss
    assert [s for s, _ in report.loss_curve] == list(range(1, TINY.pretrain_steps + 1))
    assert report.tokens_seen == TINY.pretrain_steps * TINY.pretrain_batch_size * TINY.pretrain_seq_len
    assert 50_000 < report.parameters < 500_000
    assert report.vocab_size <= TINY.vocab_size
    assert report.tokens_per_s > 0 and report.seconds >= report.train_seconds > 0
    assert report.precision == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert report.fingerprint == model_fingerprint(out)
    saved = json.loads((out / REPORT_FILENAME).read_text())
    assert saved["fingerprint"] == report.fingerprint and saved["final_loss"] == report.final_loss
    assert [e["step"] for e in events][-1] == TINY.pretrain_steps and len(events) >= 5
    assert set(events[0]) >= {"step", "loss", "tokens_per_s", "eta_s"}
    assert events[-1]["eta_s"] == 0
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["tie_word_embeddings"] is True
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left


@pytest.mark.training
def test_reloads_offline_and_generation_stops_at_end_of_turn(built, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessor, LogitsProcessorList

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = built[0].path
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    im_end, eos = tok.convert_tokens_to_ids(TURN_END), tok.convert_tokens_to_ids(EOS)
    assert model.generation_config.eos_token_id == [im_end, eos]
    assert model.generation_config.pad_token_id == tok.pad_token_id
    assert model.config.vocab_size == len(tok)

    messages = [
        {"role": "system", "content": "You are a polecat."},
        {"role": "user", "content": "Claim gt-1"},
    ]
    enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=True, return_tensors="pt")
    prompt_len = enc["input_ids"].shape[1]
    torch.manual_seed(0)
    free = model.generate(**enc, max_new_tokens=12, do_sample=False)
    assert prompt_len < free.shape[1] <= prompt_len + 12

    class EndTurnAt(LogitsProcessor):
        """Forces <|im_end|> as the n-th new token: generation must stop right there."""

        def __init__(self, n: int) -> None:
            self.n = n

        def __call__(self, input_ids, scores):
            if input_ids.shape[1] - prompt_len == self.n - 1:
                scores = torch.full_like(scores, -float("inf"))
                scores[:, im_end] = 0
            return scores

    out = model.generate(
        **enc, max_new_tokens=20, do_sample=False, logits_processor=LogitsProcessorList([EndTurnAt(3)])
    )
    new = out[0, prompt_len:].tolist()
    assert len(new) == 3 and new[-1] == im_end


@pytest.mark.training
def test_same_seed_same_weights_other_seed_differs(built, texts, tmp_path):
    first = built[0]
    same = build_embedded_model(lambda: iter(texts), tmp_path / "same", TINY, seed=0)  # a text factory
    assert same.fingerprint == first.fingerprint == model_fingerprint(tmp_path / "same")
    assert same.loss_curve == first.loss_curve

    target = tmp_path / "other"
    target.mkdir()
    (target / "stale.txt").write_text("from an earlier build")
    other = build_embedded_model(texts, target, TINY, seed=1)
    assert other.fingerprint != first.fingerprint
    assert not (target / "stale.txt").exists()  # replaced whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other", "same"]


@pytest.mark.training
def test_zero_pretrain_steps_still_builds(texts, tmp_path):
    cfg = TINY.model_copy(update={"pretrain_steps": 0})
    report = build_embedded_model(texts[:4], tmp_path / "m", cfg)
    assert report.loss_curve == [] and report.final_loss == report.initial_loss
    assert (tmp_path / "m" / "model.safetensors").is_file()


@pytest.mark.training
def test_fp32_precision(texts, tmp_path):
    cfg = TINY.model_copy(update={"pretrain_steps": 10})
    report = build_embedded_model(texts, tmp_path / "m", cfg, precision="fp32")
    assert report.precision == "fp32" and report.final_loss < report.initial_loss


def test_no_text_is_an_operator_error(tmp_path):
    with pytest.raises(GastownFTError, match="no text"):
        build_embedded_model(["", ""], tmp_path / "m", TINY)
    assert not (tmp_path / "m").exists()


def test_inconsistent_sizes_are_operator_errors(tmp_path):
    with pytest.raises(GastownFTError, match="num_heads"):
        build_embedded_model(["x"], tmp_path / "m", TINY.model_copy(update={"num_heads": 3}))
    with pytest.raises(GastownFTError, match="max_position_embeddings"):
        build_embedded_model(["x"], tmp_path / "m", TINY.model_copy(update={"pretrain_seq_len": 512}))


# -- fingerprint --------------------------------------------------------------------------------------


@pytest.mark.training
def test_fingerprint_follows_content_not_location(built, tmp_path):
    src = built[0].path
    copy = tmp_path / "copy"
    shutil.copytree(src, copy)
    (copy / "README.md").write_text("not part of the model")
    assert model_fingerprint(copy) == model_fingerprint(src)
    tok_cfg = copy / "tokenizer_config.json"
    tok_cfg.write_text(tok_cfg.read_text() + " ")
    assert model_fingerprint(copy) != model_fingerprint(src)


def test_fingerprint_needs_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(GastownFTError, match="no weight files"):
        model_fingerprint(tmp_path)


# -- resolve_base_model -------------------------------------------------------------------------------


def fake_model_dir(path: Path, architectures=("LlamaForCausalLM",), model_type="llama") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(
        json.dumps({"architectures": list(architectures), "model_type": model_type})
    )
    (path / "tokenizer.json").write_text("{}")
    (path / "model.safetensors").write_bytes(b"")
    return path


def test_embedded_not_built_says_to_materialize(tmp_path):
    with pytest.raises(GastownFTError) as e:
        resolve_base_model("embedded", allow_network=False, embedded_dir=tmp_path / "nope")
    assert "not been built" in str(e.value) and "materialize" in str(e.value)


@pytest.mark.training
def test_embedded_and_local_resolve(built):
    path = built[0].path
    r = resolve_base_model("embedded", allow_network=False, embedded_dir=path)
    assert r == ResolvedModel(path=path.resolve(), source="embedded", name="embedded", revision=None)
    r = resolve_base_model(str(path), allow_network=False, embedded_dir=Path("/unused"))
    assert r.source == "local" and r.path == path.resolve() and r.revision is None


def test_local_directory_checks(tmp_path):
    ok = fake_model_dir(tmp_path / "ok")
    assert resolve_base_model(str(ok), allow_network=False, embedded_dir=tmp_path).source == "local"

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(GastownFTError, match="config.json"):
        resolve_base_model(str(empty), allow_network=False, embedded_dir=tmp_path)

    bert = fake_model_dir(tmp_path / "bert", ["BertForMaskedLM"], "bert")
    with pytest.raises(GastownFTError, match="not a causal language model"):
        resolve_base_model(str(bert), allow_network=False, embedded_dir=tmp_path)

    no_tok = fake_model_dir(tmp_path / "notok")
    (no_tok / "tokenizer.json").unlink()
    with pytest.raises(GastownFTError, match="no tokenizer files"):
        resolve_base_model(str(no_tok), allow_network=False, embedded_dir=tmp_path)

    no_weights = fake_model_dir(tmp_path / "noweights")
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(GastownFTError, match="no weight files"):
        resolve_base_model(str(no_weights), allow_network=True, embedded_dir=tmp_path)

    broken = fake_model_dir(tmp_path / "broken")
    (broken / "config.json").write_text("{not json")
    with pytest.raises(GastownFTError, match="cannot read config.json"):
        resolve_base_model(str(broken), allow_network=False, embedded_dir=tmp_path)

    with pytest.raises(GastownFTError, match="does not exist"):
        resolve_base_model(str(tmp_path / "missing"), allow_network=True, embedded_dir=tmp_path)
    with pytest.raises(GastownFTError, match="is a file"):
        resolve_base_model(str(ok / "config.json"), allow_network=False, embedded_dir=tmp_path)


def test_unknown_hub_id_offline_fails_fast_and_says_how_to_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    name = "gastown-ft-tests/no-such-model-7f3a"
    started = time.perf_counter()
    with pytest.raises(GastownFTError) as e:
        resolve_base_model(name, allow_network=False, embedded_dir=tmp_path)
    assert time.perf_counter() - started < 10
    text = str(e.value)
    assert name in text and "allow_network = true" in text and f"huggingface-cli download {name}" in text
    assert "base_model" in e.value.hint


def test_invalid_hub_id_is_an_operator_error(tmp_path):
    with pytest.raises(GastownFTError, match="neither an existing local directory nor a valid hub"):
        resolve_base_model("not a/valid//id", allow_network=False, embedded_dir=tmp_path)


@pytest.mark.parametrize("allow_network", [True, False])
def test_hub_id_goes_through_snapshot_download(monkeypatch, tmp_path, allow_network):
    import huggingface_hub

    commit = "a" * 40
    snapshot = fake_model_dir(tmp_path / "snapshots" / commit)
    calls = []

    def fake_snapshot_download(repo_id, **kw):
        calls.append((repo_id, kw))
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    r = resolve_base_model("org/model", allow_network=allow_network, embedded_dir=tmp_path)
    assert r == ResolvedModel(path=snapshot, source="hub", name="org/model", revision=commit)
    (repo_id, kw), *_ = calls
    assert repo_id == "org/model" and kw["local_files_only"] is (not allow_network)
    assert "*.safetensors" in kw["allow_patterns"]

    resolve_base_model("org/model@v1.0", allow_network=allow_network, embedded_dir=tmp_path)
    assert calls[-1][1]["revision"] == "v1.0"


def test_hub_download_failure_is_an_operator_error(monkeypatch, tmp_path):
    import huggingface_hub

    def boom(repo_id, **kw):
        raise OSError("connection refused")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", boom)
    with pytest.raises(GastownFTError, match="could not download base model 'org/model'.*connection refused"):
        resolve_base_model("org/model", allow_network=True, embedded_dir=tmp_path)
    with pytest.raises(GastownFTError, match="not in the local Hugging Face cache"):
        resolve_base_model("org/model", allow_network=False, embedded_dir=tmp_path)
