"""`exported_model` through real Dagster after `eval_report`: a registered, promoted release whose merged
model stops generating, whose GGUF and card read back; and no export when the evaluation fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gastown_ft.config import EvaluationConfig, load_settings, render_settings_toml
from gastown_ft.export.registry import Registry, registry_root
from gastown_ft.orchestrate import materialize_assets
from gastown_ft.status import asset_status

pytestmark = [pytest.mark.training, pytest.mark.slow]

QUICK_EVAL = {"max_cases_per_task": 3, "heldout_max_per_task": 4, "guard_docstrings": 6, "max_new_tokens": 48}


def _settings_with(settings, tmp_path, **evaluation):
    cfg = settings.model_copy(update={"evaluation": EvaluationConfig(**{**QUICK_EVAL, **evaluation})})
    path = tmp_path / "gastown-ft.toml"
    path.write_text(render_settings_toml(cfg))
    return load_settings(path)


def _materialized(result) -> set[str]:
    return {ev.asset_key.to_user_string() for ev in result.get_asset_materialization_events()}


def test_a_passing_evaluation_exports_registers_and_promotes(tiny_trained, tmp_path):
    settings, instance, _ = tiny_trained
    # The tiny model is barely trained and would fail the default gate (beat the base, reach
    # suite_floor): the gate is opened explicitly (suite_min_gain -1, no floor) so that this test is
    # about the export.
    cfg = _settings_with(settings, tmp_path, suite_min_gain=-1.0, suite_floor=0.0, guard_max_ppl_ratio=100.0)
    registry = Registry(registry_root(cfg))
    before = [v.version for v in registry.versions()]
    result = materialize_assets(cfg, instance, ["eval_report", "exported_model"])
    assert result.success, [e.message for e in result.all_events if e.is_step_failure]
    assert _materialized(result) == {"eval_report", "exported_model"}

    meta = asset_status(instance)["exported_model"]["metadata"]
    version = meta["version"]
    assert version not in before and meta["promoted"] is True
    current = registry.current()
    assert current is not None and current.version == version and current.eval_passed
    assert registry.verify(version) == []  # every file matches the sha256 the registry recorded

    bundle = current.bundle_dir
    manifest = current.manifest
    adapter = Path(asset_status(instance)["eval_report"]["metadata"]["adapter_path"])
    provenance = json.loads((adapter.parent / "provenance.json").read_text())
    assert manifest["corpus_version"] == provenance["corpus_version"]
    assert manifest["base_model"]["fingerprint"] == provenance["base_model"]["fingerprint"]

    # The merged model generates and stops at the end of its turn.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(bundle / "merged")
    model = AutoModelForCausalLM.from_pretrained(bundle / "merged")
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What does the polecat do?"}],
        add_generation_prompt=True,
        return_tensors="pt",
    )
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    stop = set(model.generation_config.eos_token_id)
    assert tok.convert_tokens_to_ids("<|im_end|>") in stop
    out = model.generate(ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > ids.shape[1]

    # GGUF, Modelfile and card are there and read back.
    from huggingface_hub import ModelCard

    from gastown_ft.export.gguf import read_gguf_metadata

    gguf_meta = read_gguf_metadata(bundle / "model.gguf")
    assert gguf_meta["general.architecture"] == "llama"
    assert "FROM ./model.gguf" in (bundle / "Modelfile").read_text()
    card = ModelCard.load(bundle / "README.md")
    assert manifest["corpus_version"] in card.text
    headline = [name for name in manifest["eval"]["metrics"] if "/" not in name]
    assert headline and all(name in card.text for name in headline)

    # The base is the tiny embedded model: the export records it (manifest, merge.json beside the
    # weights, asset metadata), and status and serve say so.
    from gastown_ft.report import detail_lines
    from gastown_ft.serve.engine import ModelChoice
    from gastown_ft.serve.selection import base_notice, choose_model

    assert manifest["base_model"]["source"] == provenance["base_model"]["source"] == "embedded"
    notice = current.base_notice
    assert notice and "not a real language model" in notice
    assert meta["base_model_source"] == "embedded" and meta["base_notice"] == notice
    merge_report = json.loads((bundle / "merged" / "merge.json").read_text())
    assert merge_report["base_model"] == manifest["base_model"]
    assert f"{version}: {notice}" in "\n".join(detail_lines(asset_status(instance)))
    assert base_notice(choose_model(registry, None)[0], registry) == notice
    assert base_notice(ModelChoice(bundle / "merged")) == notice


def test_a_failing_evaluation_stops_the_export(tiny_trained, tmp_path):
    settings, instance, _ = tiny_trained
    # No tuned model keeps general-text perplexity within 1% of the base's: the guard must fail (the
    # suite gate is opened, so that the guard is what stops the export).
    cfg = _settings_with(settings, tmp_path, suite_min_gain=-1.0, suite_floor=0.0, guard_max_ppl_ratio=0.01)
    registry = Registry(registry_root(cfg))
    before = [v.version for v in registry.versions()]
    result = materialize_assets(cfg, instance, ["eval_report", "exported_model"])
    assert "exported_model" not in _materialized(result)
    checks = [
        ev.event_specific_data for ev in result.all_events if ev.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    assert checks and not any(c.passed for c in checks)
    assert [v.version for v in registry.versions()] == before

    # Asked for on its own, the export refuses too: the last evaluation did not pass.
    alone = materialize_assets(cfg, instance, ["exported_model"])
    assert not alone.success
    failures = [e.step_failure_data.error.message for e in alone.all_events if e.is_step_failure]
    assert any("did not pass" in m for m in failures), failures
    assert [v.version for v in registry.versions()] == before
