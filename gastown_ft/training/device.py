"""Where and how training runs: the device, the precision, the CPU thread count, 4-bit loading.

- device "auto" takes CUDA, then Apple MPS, then the CPU; an explicit choice that is not there is an
  error that says so.
- precision "auto" is bf16 autocast where the hardware computes in bf16 natively (CUDA cards that
  support it, CPUs with AVX512-BF16 or AMX), fp16 autocast on older CUDA cards, fp32 elsewhere.
  Weights of the trained adapter and its optimizer state stay float32 in every case.
- threads: on the CPU the count is measured (a short matmul at each candidate count, best wins),
  because a busy machine can make more threads slower, never faster.
- quantization "nf4" (QLoRA) loads the frozen base in 4-bit NF4 through bitsandbytes: CUDA only, and a
  clear refusal elsewhere.
"""

from __future__ import annotations

import os
import re
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal

from gastown_ft.errors import GastownFTError

DeviceKind = Literal["cpu", "cuda", "mps"]
Precision = Literal["fp32", "bf16", "fp16"]


@dataclass(frozen=True)
class Hardware:
    device: str  # "cpu", "cuda", "cuda:1", "mps"
    kind: DeviceKind
    precision: Precision
    threads: int  # torch threads (CPU work)
    quantization: str  # "none" or "nf4"
    name: str  # what a person reads: "CPU (2 threads, bf16: AMX)", "NVIDIA H100 80GB HBM3"
    memory_bytes: int | None = None  # device memory on a GPU; None on the CPU (RAM is the budget)

    def autocast(self) -> AbstractContextManager:
        """The forward pass's autocast for this device and precision (nothing for fp32)."""
        import torch

        if self.precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.kind if self.kind != "mps" else "cpu", dtype=dtype)

    def as_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "precision": self.precision,
            "threads": self.threads,
            "quantization": self.quantization,
            "name": self.name,
            "memory_bytes": self.memory_bytes,
        }


def cpu_bf16_feature() -> str | None:
    """ "AMX" or "AVX512-BF16" when this x86 CPU has native bf16 instructions (Linux), else None."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    if re.search(r"\bamx_bf16\b", line):
                        return "AMX"
                    if re.search(r"\bavx512_bf16\b", line):
                        return "AVX512-BF16"
                    return None
    except OSError:
        pass
    return None


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def pick_device(preference: str = "auto") -> tuple[str, DeviceKind]:
    """(torch device string, kind) for `preference` ("auto", "cpu", "cuda", "cuda:N", "mps")."""
    pref = (preference or "auto").strip().lower()
    if pref == "auto":
        if cuda_available():
            return _local_cuda_device(), "cuda"
        if mps_available():
            return "mps", "mps"
        return "cpu", "cpu"
    if pref == "cpu":
        return "cpu", "cpu"
    if pref.startswith("cuda"):
        if not cuda_available():
            raise GastownFTError(
                f"training.device = {preference!r}, but no CUDA GPU is visible to PyTorch",
                hint='use device = "auto" or "cpu"; on a GPU machine install a CUDA build of torch',
            )
        return (pref if ":" in pref else _local_cuda_device()), "cuda"
    if pref == "mps":
        if not mps_available():
            raise GastownFTError(
                "training.device = 'mps', but Apple's Metal backend is not available here",
                hint='use device = "auto" or "cpu"',
            )
        return "mps", "mps"
    raise GastownFTError(
        f"training.device {preference!r} is not a device", hint='use "auto", "cpu", "cuda", "cuda:N" or "mps"'
    )


def _local_cuda_device() -> str:
    """Under torchrun each process takes the GPU of its LOCAL_RANK."""
    local = os.environ.get("LOCAL_RANK")
    return f"cuda:{int(local)}" if local is not None else "cuda"


def pick_precision(preference: str, kind: DeviceKind) -> Precision:
    pref = (preference or "auto").strip().lower()
    if pref == "fp32":
        return "fp32"
    if kind == "cuda":
        import torch

        bf16_ok = bool(torch.cuda.is_bf16_supported())
        if pref == "auto":
            return "bf16" if bf16_ok else "fp16"
        if pref == "bf16" and not bf16_ok:
            raise GastownFTError(
                "training.precision = 'bf16', but this GPU has no bfloat16 support",
                hint='use precision = "fp16" or "auto"',
            )
        return pref  # type: ignore[return-value]
    if kind == "mps":
        return "fp32" if pref == "auto" else _refuse_half(pref, "Apple MPS")
    # CPU: bf16 autocast pays off only with native bf16 instructions
    if pref == "auto":
        return "bf16" if cpu_bf16_feature() else "fp32"
    if pref == "fp16":
        return _refuse_half(pref, "the CPU")
    return "bf16"


def _refuse_half(pref: str, where: str) -> Precision:
    raise GastownFTError(
        f"training.precision = {pref!r} is not supported on {where}", hint='use precision = "auto" or "fp32"'
    )


_THREADS_MEMO: dict[tuple[int, ...], int] = {}


def measure_best_threads(candidates: list[int] | None = None, seconds: float = 0.25) -> int:
    """The thread count with the highest measured matmul throughput (once per process)."""
    from gastown_ft.training.estimate import measure_matmul_flops

    cores = len(os.sched_getaffinity(0)) or 1
    cands = sorted(set(candidates or {1, max(1, cores // 2), cores}))
    key = tuple(cands)
    if key not in _THREADS_MEMO:
        rates = {n: measure_matmul_flops(seconds, size=384, threads=n) for n in cands}
        _THREADS_MEMO[key] = max(rates, key=lambda n: rates[n])
    return _THREADS_MEMO[key]


def check_quantization(quantization: str, kind: DeviceKind) -> str:
    q = (quantization or "none").strip().lower()
    if q == "none":
        return q
    if q != "nf4":
        raise GastownFTError(f"training.quantization {quantization!r} is unknown", hint='use "none" or "nf4"')
    if kind != "cuda":
        raise GastownFTError(
            "training.quantization = 'nf4' (QLoRA) needs a CUDA GPU: bitsandbytes' 4-bit kernels do not "
            f"run on {'the CPU' if kind == 'cpu' else 'Apple MPS'}",
            hint='set quantization = "none" here; on a CUDA machine `pip install bitsandbytes` and keep nf4',
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise GastownFTError(
            "training.quantization = 'nf4' (QLoRA) needs the bitsandbytes package",
            hint="pip install bitsandbytes (CUDA machines only)",
        ) from None
    return q


def detect(
    device: str = "auto", precision: str = "auto", threads: int | None = None, quantization: str = "none"
) -> Hardware:
    """The hardware a run will use, from the `[training]` settings."""
    import torch

    dev, kind = pick_device(device)
    prec = pick_precision(precision, kind)
    quant = check_quantization(quantization, kind)
    if kind == "cpu":
        n = threads or measure_best_threads()
        feature = cpu_bf16_feature()
        name = f"CPU ({n} thread{'s' if n != 1 else ''}, {prec}{': ' + feature if prec == 'bf16' else ''})"
        return Hardware(dev, kind, prec, n, quant, name)
    n = threads or torch.get_num_threads()
    if kind == "cuda":
        index = torch.device(dev).index or 0
        props = torch.cuda.get_device_properties(index)
        return Hardware(dev, kind, prec, n, quant, f"{props.name} ({prec})", int(props.total_memory))
    return Hardware(dev, kind, prec, n, quant, f"Apple MPS ({prec})")
