"""Data-parallel training: two torchrun processes (gloo, on the CPU) train the same adapter as one."""

from __future__ import annotations

import pytest
import torch

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


WEIGHTED_MICRO = [[0, 1, 2], [3]]  # the second micro-batch leaves process 1 an empty share


def _weighted_step(base, world: int, rank: int = 0, init_file: str | None = None):
    """One StepRunner step over weighted rows as process `rank` of `world` (gloo); loss and gradients."""
    from gastown_ft.config import TrainingConfig
    from gastown_ft.training.lora import StepRunner, plan_training, prepare_model, seed_everything
    from gastown_ft.training.parallel import DataParallel
    from gastown_ft_tests.training.test_data import chat

    torch.set_num_threads(1)
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    train = [{**chat(i), "weight": w} for i, w in enumerate([3.0, 1.0, 0.5, 2.0])]
    cfg = TrainingConfig(lora_rank=4, lora_alpha=8, lora_dropout=0.0, max_seq_len=320, seed=3, threads=1)
    plan = plan_training(base, train, [], cfg)
    seed_everything(cfg.seed)
    model = prepare_model(plan).train()
    runner = StepRunner(model, plan.train_sequences, plan.pad_id, par=DataParallel(world=world, rank=rank))
    loss = runner.run(WEIGHTED_MICRO)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return loss, grads


def _weighted_worker(rank: int, world: int, base, init_file: str, out) -> None:
    loss, grads = _weighted_step(base, world, rank, init_file)
    if rank == 0:
        torch.save({"loss": loss, "grads": grads}, out)


def test_two_processes_take_the_weighted_step_of_one(tmp_path):
    """The loss's denominator is the weighted count of trained tokens summed over the processes."""
    import torch.multiprocessing as mp

    from gastown_ft_tests.training.test_data import make_tokenizer, save_tiny_model

    base = save_tiny_model(tmp_path / "base", make_tokenizer(), hidden=32, layers=2, init_range=0.3)
    single_loss, single_grads = _weighted_step(base, 1)
    out = tmp_path / "ddp.pt"
    mp.spawn(_weighted_worker, args=(2, base, str(tmp_path / "init"), out), nprocs=2)
    ddp = torch.load(out, weights_only=True)
    assert ddp["loss"] == pytest.approx(single_loss, rel=1e-5)
    for name, g in single_grads.items():
        assert torch.allclose(ddp["grads"][name], g, rtol=1e-4, atol=1e-7), name
