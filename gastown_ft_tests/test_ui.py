"""`gastown-ft ui` serves the Dagster UI and stops cleanly on SIGTERM, even started in the background."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from gastown_ft.config import ArtifactsConfig, DagsterConfig, Settings, TownConfig, render_settings_toml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def _background_like() -> None:
    # What a shell does to a background job without job control: SIGINT ignored.
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_ui_serves_and_stops_cleanly(tmp_path: Path, stop_signal):
    cfg = tmp_path / "gastown-ft.toml"
    cfg.write_text(
        render_settings_toml(
            Settings(
                town=TownConfig(root=tmp_path / "town"),
                artifacts=ArtifactsConfig(dir=tmp_path / "a"),
                dagster=DagsterConfig(home=tmp_path / "dh"),
            )
        )
    )
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gastown_ft.cli", "--config", str(cfg), "ui", "--port", str(port)],
        preexec_fn=_background_like,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        info = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as r:
                    info = json.loads(r.read())
                    break
            except OSError:
                time.sleep(1)
        assert info is not None, (
            proc.stdout.read().decode(errors="replace") if proc.poll() is not None else "no UI"
        )
        assert "dagster_webserver_version" in info
        assert (tmp_path / "dh" / "dagster.yaml").exists()

        # SIGTERM from a supervisor, or Ctrl-C (SIGINT to the whole foreground group).
        if stop_signal == signal.SIGINT:
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=40)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) != 0:
                    break
            time.sleep(0.5)
        else:
            pytest.fail("the UI port is still open after stop")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
