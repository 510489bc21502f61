"""Data-parallel training across processes (one per GPU) with torchrun and PyTorch DDP.

The same loop as a single process (`training/lora.py`): every optimizer step takes the same global
batch of `batch_size` rows; under `torchrun --nproc_per_node N` process r takes rows r, r+N, ... of
each micro-batch, DDP averages the adapter's gradients, and the loss is scaled so that the averaged
gradient equals the single-process one. So N processes train the same adapter as one, N times faster
per step (up to communication). Process 0 writes checkpoints, the adapter and the state file; the
others wait at a barrier.

`launch_data_parallel` is how the `lora_adapter` asset and `gastown-ft train` start it: a `torchrun`
subprocess running `python -m gastown_ft.training.parallel --config FILE --out DIR`, whose output is
passed through, and whose result is read back from the state file it writes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gastown_ft.errors import GastownFTError


@dataclass
class DataParallel:
    world: int = 1
    rank: int = 0
    group: Any = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_sum(self, value: float) -> float:
        if self.world == 1:
            return value
        import torch
        import torch.distributed as dist

        t = torch.tensor([float(value)], dtype=torch.float64)
        dist.all_reduce(t, group=self.group)
        return float(t.item())

    def any(self, flag: bool) -> bool:
        return self.all_sum(1.0 if flag else 0.0) > 0 if self.world > 1 else flag

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier(group=self.group)

    def shard(self, rows: list[int]) -> list[int]:
        """This process's rows of one micro-batch."""
        return rows[self.rank :: self.world]


def from_environment(device_kind: str) -> DataParallel:
    """The process group torchrun describes (WORLD_SIZE, RANK), joined once; one process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return DataParallel()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    # Counts and flags travel on the CPU (gloo) whatever the gradients use.
    group = dist.new_group(backend="gloo") if device_kind == "cuda" else None
    return DataParallel(world=dist.get_world_size(), rank=dist.get_rank(), group=group)


def wrap(module, device: str, device_kind: str):
    """`module` under DistributedDataParallel (only the adapter's parameters need gradients)."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    if device_kind == "cuda":
        import torch

        index = torch.device(device).index or 0
        return DDP(module, device_ids=[index], output_device=index)
    return DDP(module)


def launch_data_parallel(
    config_path: Path,
    out_dir: Path,
    processes: int,
    *,
    log: Callable[[str], None] = print,
    resume: bool = True,
    torchrun: list[str] | None = None,
) -> dict[str, Any]:
    """Run training under `torchrun --nproc_per_node processes`; the state file process 0 wrote."""
    from gastown_ft.training.lora import STATE_FILE

    cmd = [
        *(torchrun or [sys.executable, "-m", "torch.distributed.run"]),
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        "gastown_ft.training.parallel",
        "--config",
        str(config_path),
        "--out",
        str(out_dir),
    ]
    if not resume:
        cmd.append("--fresh")
    log("data-parallel training: " + " ".join(cmd))
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        tail = (tail + [line])[-20:]
        log(line)
    if proc.wait() != 0:
        raise GastownFTError(
            f"data-parallel training failed (torchrun exit {proc.returncode}); its last lines:\n  "
            + "\n  ".join(tail[-8:]),
            hint="rerun with [training] processes = 1 to see the error in one process",
        )
    state = json.loads((out_dir / STATE_FILE).read_text(encoding="utf-8"))
    if state.get("status") != "completed":
        raise GastownFTError(f"data-parallel training ended {state.get('status')}")
    return state


def _worker(argv: list[str] | None = None) -> int:
    """One torchrun process: plan from the config, train, process 0 writes the results."""
    parser = argparse.ArgumentParser(prog="python -m gastown_ft.training.parallel")
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--fresh", action="store_true")
    args = parser.parse_args(argv)

    from gastown_ft.artifacts import ArtifactStore
    from gastown_ft.config import load_settings
    from gastown_ft.training.inputs import plan_for
    from gastown_ft.training.lora import train_lora

    settings = load_settings(args.config)
    plan, _resolved, _version = plan_for(settings, ArtifactStore(settings.artifacts.dir))
    rank = int(os.environ.get("RANK", "0"))

    def progress(ev: dict) -> None:
        if rank == 0:
            print(
                f"step {ev['step']}/{ev['total_steps']} loss {ev['loss']:.4f} "
                f"{ev['tokens_per_s']:,.0f} tokens/s",
                flush=True,
            )

    result = train_lora(plan, Path(args.out), resume=not args.fresh, progress=progress)
    if rank == 0:
        print(f"{result.status}: {result.steps_done}/{result.total_steps} steps", flush=True)
    return 0 if result.status == "completed" else 1


if __name__ == "__main__":
    raise SystemExit(_worker())
