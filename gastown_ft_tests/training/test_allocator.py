"""Freed heap memory goes back to the OS between training steps (glibc's malloc_trim)."""

from __future__ import annotations

import sys

import pytest

from gastown_ft.training.allocator import release_freed_memory


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; malloc_trim is glibc's")
def test_freed_tensors_leave_the_resident_set_after_a_trim():
    import torch

    # A step's temporaries: many tensors of 4-35 KB (below glibc's mmap threshold, so from the heap)
    # between small live ones, so that freeing them leaves holes the heap keeps mapped.
    live, temporaries = [], []
    for i in range(20000):
        temporaries.append(torch.ones(1024 + (i % 13) * 600))
        live.append(torch.ones(4))
    del temporaries
    retained = _rss_mb()
    assert release_freed_memory()
    assert _rss_mb() < retained - 150, (retained, _rss_mb())  # about 300 MB were freed
    assert len(live) == 20000
