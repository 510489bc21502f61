"""Data-parallel training: two torchrun processes (gloo, on the CPU) train the same adapter as one."""

from __future__ import annotations

import pytest

from gastown_ft.config import load_settings, render_settings_toml
from gastown_ft.errors import GastownFTError

pytestmark = [pytest.mark.training, pytest.mark.slow]


def _settings(tiny_trained, tmp_path, **training):
    """The session's tiny town and embedded model (read-only), with its own output and settings."""
    settings, _instance, _town = tiny_trained
    cfg = settings.model_copy(
        update={
            "training": settings.training.model_copy(update={"precision": "fp32", "threads": 1, **training})
        }
    )
    path = tmp_path / "gastown-ft.toml"
    path.write_text(render_settings_toml(cfg))
    return load_settings(path)


def _lora_tensors(adapter_dir):
    from safetensors.torch import load_file

    return load_file(str(adapter_dir / "adapter_model.safetensors"))


def test_two_processes_train_the_same_adapter_as_one(tiny_trained, tmp_path):
    from gastown_ft.artifacts import ArtifactStore
    from gastown_ft.training.inputs import plan_for
    from gastown_ft.training.lora import train_lora
    from gastown_ft.training.parallel import launch_data_parallel

    # no LoRA dropout: its masks depend on which rows a process holds, so they would differ
    settings = _settings(tiny_trained, tmp_path, max_steps=6, checkpoint_every=3, lora_dropout=0.0)
    plan, _resolved, _version = plan_for(settings, ArtifactStore(settings.artifacts.dir))
    single = train_lora(plan, tmp_path / "single", resume=False)

    lines: list[str] = []
    state = launch_data_parallel(settings.config_path, tmp_path / "ddp", 2, log=lines.append, resume=False)
    assert state["processes"] == 2 and state["steps_done"] == 6
    assert any("step 6/6" in line for line in lines)

    a, b = _lora_tensors(single.adapter_dir), _lora_tensors(tmp_path / "ddp" / "adapter")
    assert a.keys() == b.keys()
    for name in [n for n in a if "lora_B" in n]:  # B starts at zero: all of it is what training did
        assert (a[name] - b[name]).abs().mean() <= 0.02 * a[name].abs().mean(), name
    # the same loss curve, step by step (each process saw half of every batch)
    assert state["train_loss"] == pytest.approx(single.train_loss, rel=1e-4)


def test_a_failing_launch_says_so_in_one_error(tiny_trained, tmp_path):
    from gastown_ft.training.parallel import launch_data_parallel

    settings = _settings(tiny_trained, tmp_path, base_model=str(tmp_path / "no-model"))
    with pytest.raises(GastownFTError, match="data-parallel training failed"):
        launch_data_parallel(settings.config_path, tmp_path / "out", 2, log=lambda _l: None)
