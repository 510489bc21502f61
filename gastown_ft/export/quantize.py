"""Quantized copies of the exported GGUF, made by llama.cpp's own quantizer (llama-cpp-python).

    model.gguf          what `write_gguf` wrote (f16 or f32)
    model.Q8_0.gguf     8-bit, about half of f16; nearly lossless
    model.Q4_K_M.gguf   4-bit k-quants (mixed), about a third of f16; for small boxes

llama.cpp picks a fallback type by itself for tensors whose rows do not fit a type's blocks (k-quants
need rows that are a multiple of 256: SmolLM2's 576-wide rows get Q5_0/Q8_0 there), so the file is
always loadable; `quantize_gguf` reports the size it got.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gastown_ft import atomic
from gastown_ft.errors import GastownFTError

# name -> (file suffix, llama.cpp's LLAMA_FTYPE_* constant name)
QUANTIZATIONS: dict[str, tuple[str, str]] = {
    "q8_0": ("Q8_0", "LLAMA_FTYPE_MOSTLY_Q8_0"),
    "q4_k_m": ("Q4_K_M", "LLAMA_FTYPE_MOSTLY_Q4_K_M"),
}


def quantized_name(gguf_name: str, quant: str) -> str:
    """model.gguf + q4_k_m -> model.Q4_K_M.gguf"""
    if quant not in QUANTIZATIONS:
        raise GastownFTError(
            f"unknown GGUF quantization {quant!r}", hint=f"one of: {', '.join(QUANTIZATIONS)}"
        )
    stem = gguf_name[: -len(".gguf")] if gguf_name.endswith(".gguf") else gguf_name
    return f"{stem}.{QUANTIZATIONS[quant][0]}.gguf"


@dataclass(frozen=True)
class QuantizeResult:
    quant: str
    path: Path
    bytes: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "quant": self.quant,
            "path": str(self.path),
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
        }


_QUANTIZE = """
import sys
import llama_cpp
params = llama_cpp.llama_model_quantize_default_params()
params.ftype = getattr(llama_cpp, sys.argv[3])
params.nthread = int(sys.argv[4])
sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), params))
"""


def quantize_gguf(
    src: Path | str, quant: str, out: Path | str | None = None, *, threads: int = 0
) -> QuantizeResult:
    """Write `src` quantized as `quant` beside it (or at `out`); returns what was written.

    llama.cpp runs in a child process: it prints a line per tensor straight to the C streams, and a
    crash in it must not take the pipeline's process with it."""
    from gastown_ft.llamacpp.runtime import INSTALL_HINT, unavailable

    reason = unavailable()
    if reason:
        raise GastownFTError(f"cannot quantize the GGUF: {reason}", hint=INSTALL_HINT)
    src = Path(src)
    dst = Path(out) if out else src.with_name(quantized_name(src.name, quant))
    started = time.perf_counter()
    with atomic.atomic_path(dst) as tmp:
        run = subprocess.run(
            [sys.executable, "-c", _QUANTIZE, str(src), str(tmp), QUANTIZATIONS[quant][1], str(threads)],
            capture_output=True,
            text=True,
            errors="replace",
        )
        if run.returncode != 0 or not tmp.is_file():
            tail = "\n".join((run.stderr or run.stdout).strip().splitlines()[-5:])
            raise GastownFTError(
                f"llama.cpp could not quantize {src} to {quant} (exit {run.returncode}): {tail}"
            )
    return QuantizeResult(quant, dst, dst.stat().st_size, time.perf_counter() - started)
