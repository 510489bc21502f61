"""Lower the training's CPU and IO priority, so that the town's agents on the same box come first.

On Linux the nice value and the IO priority belong to each thread, and torch's worker threads may
already exist when training starts (the base model was built in the same process): every thread of
the process is lowered, and threads started later inherit it. An unprivileged process can lower its
priority but never raise it back, so this is done once, to a level, not by an increment.
"""

from __future__ import annotations

import os
from typing import Any

NICE = 10  # CPU: below everything at the default 0, above `nice -n 19` batch work
IO_LEVEL = 7  # the lowest best-effort IO priority (the idle class could starve the training outright)


def _thread_ids() -> list[int]:
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return [0]  # not Linux: the calling process


def lower_priority(nice: int = NICE) -> dict[str, Any]:
    """Set every thread to at least `nice` and the best-effort IO class at its lowest level; returns
    what was set (for the log and the metadata). Never raises."""
    out: dict[str, Any] = {}
    for tid in _thread_ids():
        try:
            current = os.getpriority(os.PRIO_PROCESS, tid)
            if current < nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
        except OSError:
            continue
    try:
        out["nice"] = os.getpriority(os.PRIO_PROCESS, 0)
    except OSError:
        pass
    try:
        import psutil

        if hasattr(psutil, "IOPRIO_CLASS_BE"):  # Linux
            for tid in _thread_ids():
                try:
                    psutil.Process(tid or os.getpid()).ionice(psutil.IOPRIO_CLASS_BE, value=IO_LEVEL)
                except (psutil.Error, OSError, ValueError):
                    continue
            out["ionice"] = f"best-effort {IO_LEVEL}"
    except ImportError:
        pass
    return out
