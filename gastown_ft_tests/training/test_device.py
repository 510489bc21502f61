"""Device, precision, thread and quantization selection for training."""

from __future__ import annotations

import pytest
import torch

from gastown_ft.errors import GastownFTError
from gastown_ft.training.device import (
    check_quantization,
    cpu_bf16_feature,
    detect,
    measure_best_threads,
    pick_device,
    pick_precision,
)


def test_auto_takes_cuda_then_mps_then_the_cpu():
    dev, kind = pick_device("auto")
    if torch.cuda.is_available():
        assert kind == "cuda"
    elif torch.backends.mps.is_available():
        assert kind == "mps"
    else:
        assert (dev, kind) == ("cpu", "cpu")
    assert pick_device("cpu") == ("cpu", "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_asking_for_a_missing_gpu_is_a_clear_error():
    with pytest.raises(GastownFTError, match="no CUDA GPU"):
        pick_device("cuda")
    with pytest.raises(GastownFTError, match="not a device"):
        pick_device("tpu")


def test_cpu_precision_follows_the_cpus_bf16_instructions():
    expected = "bf16" if cpu_bf16_feature() else "fp32"
    assert pick_precision("auto", "cpu") == expected
    assert pick_precision("fp32", "cpu") == "fp32"
    assert pick_precision("bf16", "cpu") == "bf16"  # asked for explicitly: allowed, if slow
    with pytest.raises(GastownFTError, match="fp16"):
        pick_precision("fp16", "cpu")


def test_bf16_autocast_really_computes_in_bf16():
    hw = detect("cpu", "bf16", threads=1)
    a, b = torch.randn(8, 8), torch.randn(8, 8)
    with hw.autocast():
        assert torch.mm(a, b).dtype == torch.bfloat16
    with detect("cpu", "fp32", threads=1).autocast():
        assert torch.mm(a, b).dtype == torch.float32
    assert "bf16" in hw.name and hw.threads == 1


def test_qlora_is_refused_without_cuda():
    with pytest.raises(GastownFTError, match="needs a CUDA GPU") as err:
        check_quantization("nf4", "cpu")
    assert "quantization" in err.value.hint
    assert check_quantization("none", "cpu") == "none"
    with pytest.raises(GastownFTError, match="unknown"):
        check_quantization("int3", "cpu")


def test_the_thread_count_is_measured_among_the_candidates():
    n = measure_best_threads([1, 2], seconds=0.05)
    assert n in (1, 2)
    assert detect("cpu", "fp32").threads in (1, 2, *range(1, 65))
