"""Training through real Dagster on the demo town, with a tiny embedded model: the adapter, its loss
curves, provenance, the dry run and the memory refusal."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from dagster import DagsterInstance

from gastown_ft.config import (
    load_settings,
)
from gastown_ft.orchestrate import asset_names_through, materialize_assets
from gastown_ft.status import asset_status
from gastown_ft_tests.tiny import tiny_settings


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from gastown_ft.demo.town import build_demo_town

    work = tmp_path_factory.mktemp("train")
    town = build_demo_town(work / "demo", seed=7)
    settings = tiny_settings(work, town)
    with DagsterInstance.local_temp(str(settings.dagster.home)) as instance:
        result = materialize_assets(settings, instance, asset_names_through("lora_adapter"))
        assert result.success, [e.message for e in result.all_events if e.is_step_failure]
        yield settings, instance, town, result


@pytest.mark.training
def test_adapter_metadata_provenance_and_plot(trained):
    settings, instance, _, result = trained
    assert result.dagster_run.tags["gastown-ft/stage"] == "training"
    meta = asset_status(instance)["lora_adapter"]["metadata"]
    assert meta["status"] == "completed" and meta["steps"] == 16
    assert len(meta["train_loss_curve"]) == 16 and meta["val_loss_curve"]
    assert meta["peak_rss_mb"] > 0 and meta["estimated_peak_mb"] > 0
    prov = meta["provenance"]
    assert prov["corpus_version"] == meta["corpus_version"]
    assert prov["base_model"]["fingerprint"].startswith("sha256:")
    assert prov["config"]["lora_rank"] == 4 and prov["seed"] == 0
    assert prov["project"]["version"]
    plot = meta["loss_plot_path"]
    assert open(plot, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    base = asset_status(instance)["base_model"]["metadata"]
    assert base["source"] == "embedded" and base["pretrain_final_loss"] < base["pretrain_initial_loss"]


@pytest.mark.training
def test_adapter_loads_back_with_peft_and_generates(trained):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, instance, _, _ = trained
    state = asset_status(instance)
    base_dir = state["base_model"]["metadata"]["path"]
    adapter_dir = state["lora_adapter"]["metadata"]["path"]
    tok = AutoTokenizer.from_pretrained(base_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), adapter_dir)
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "Claim le-393a"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > prompt["input_ids"].shape[1]


@pytest.mark.training
def test_dry_run_prints_the_plan(trained):
    settings, _, _, _ = trained
    env = {**os.environ, "GASTOWN_FT_CONFIG": str(settings.config_path)}
    out = subprocess.run(
        [sys.executable, "-m", "gastown_ft.cli", "train", "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    for needle in (
        "train corpus",
        "tokens",
        "estimated peak",
        "estimated time",
        "memory budget",
        "corpus version",
    ):
        assert needle in out.stdout


@pytest.mark.training
def test_over_budget_is_refused_with_suggestions(trained, tmp_path):
    settings, _, town, _ = trained
    text = settings.config_path.read_text().replace("[training]\n", "[training]\nmemory_budget_mb = 64\n", 1)
    settings.config_path.write_text(text)
    try:
        env = {**os.environ, "GASTOWN_FT_CONFIG": str(settings.config_path)}
        out = subprocess.run(
            [sys.executable, "-m", "gastown_ft.cli", "train", "--dry-run"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 2
        assert "OVER BUDGET" in out.stdout and "batch_size" in out.stdout and "Traceback" not in out.stderr
        with DagsterInstance.local_temp(str(tmp_path)) as instance:
            result = materialize_assets(load_settings(settings.config_path), instance, ["lora_adapter"])
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure)
        assert "budget" in json.dumps(
            failure.step_failure_data.error.to_string()
            if failure.step_failure_data.error
            else failure.message
        )
    finally:
        settings.config_path.write_text(text.replace("memory_budget_mb = 64\n", ""))
