"""Run `dagster dev` as a child that stops cleanly on Ctrl-C and on SIGTERM.

Dagster maps SIGTERM to SIGINT, and a process started in the background inherits SIGINT as
ignored, so a plain exec would only die to SIGKILL. The child gets SIGINT reset to its default
before exec and its own process group; we forward SIGINT/SIGTERM to the group and escalate.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

STOP_GRACE_S = 20.0


def _child_setup() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def run_dagster_dev(host: str, port: int) -> int:
    cmd = [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "-m",
        "gastown_ft.definitions",
        "-h",
        host,
        "-p",
        str(port),
    ]
    proc = subprocess.Popen(cmd, preexec_fn=_child_setup, start_new_session=True)
    stopping = {"at": None}

    def on_stop(signum, _frame):
        if stopping["at"] is None:
            stopping["at"] = time.monotonic()
            _signal_group(proc.pid, signal.SIGINT)

    old = {s: signal.signal(s, on_stop) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        while True:
            try:
                return proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
            if stopping["at"] is not None and time.monotonic() - stopping["at"] > STOP_GRACE_S:
                _signal_group(proc.pid, signal.SIGKILL)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        # Whatever the group left behind (webserver, daemon, code servers) goes too.
        _signal_group(proc.pid, signal.SIGTERM)
