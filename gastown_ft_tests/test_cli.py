"""The command line as an operator uses it: clear errors without tracebacks, demo, init, status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def gft(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GASTOWN_FT_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "gastown_ft.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    "body,needle",
    [
        ("[town]\nrigz = 1\n", "town.rigz: unknown key"),
        ("[town]\nsources = 'formulas'\n", "town.sources"),
        ("not toml at all [", "is not valid TOML"),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path, body, needle):
    cfg = tmp_path / "gastown-ft.toml"
    cfg.write_text(body)
    out = gft("--config", str(cfg), "status")
    assert out.returncode == 2
    assert needle in out.stderr and "Traceback" not in out.stderr + out.stdout
    assert len(out.stderr.strip().splitlines()) <= 4


def test_debug_shows_the_traceback(tmp_path):
    out = gft("--debug", "--config", str(tmp_path / "missing.toml"), "status")
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_unknown_asset_is_a_clear_error(tmp_path):
    out = gft("init", str(tmp_path / "g.toml"), "--town", str(tmp_path))
    assert out.returncode == 0
    out = gft("--config", str(tmp_path / "g.toml"), "materialize", "-s", "raw_tweets")
    assert out.returncode == 2 and "unknown asset(s): raw_tweets" in out.stderr


def test_init_refuses_to_overwrite(tmp_path):
    assert gft("init", str(tmp_path / "g.toml")).returncode == 0
    again = gft("init", str(tmp_path / "g.toml"))
    assert again.returncode == 2 and "exists" in again.stderr


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    out = gft("demo", "--workdir", str(tmp_path / "demo"), "--until", "corpus_splits")
    assert out.returncode == 0, out.stderr[-3000:]
    for name in (
        "raw_formulas",
        "raw_beads",
        "raw_conventions",
        "raw_transcripts",
        "raw_events",
        "quarantine",
    ):
        assert name in out.stdout
    assert "succeeded" in out.stdout
    cfg = tmp_path / "demo" / "gastown-ft.toml"
    status = gft("--config", str(cfg), "status", "--json")
    assert status.returncode == 0, status.stderr
    state = json.loads(status.stdout)
    assert state["raw_beads"]["metadata"]["skipped"]["tombstone"] >= 3
    assert state["quarantine"]["metadata"]["by_reason"]["needs_cycle"] == 1


def test_scrub_command_keeps_other_fields_and_reports(tmp_path):
    src = tmp_path / "in.jsonl"
    token = "ghp_" + "Zq8" * 12
    src.write_text(
        json.dumps({"id": 1, "text": f"ping alice@example.com, token {token}", "bead": "gt-0anl"})
        + "\n"
        + "[1, 2]\n"
        + json.dumps({"id": 2, "text": "bd close gt-0anl --reason done"})
        + "\n"
    )
    out = gft("scrub", str(src), str(tmp_path / "out.jsonl"), "--report")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert rows[0] == {"id": 1, "text": "ping <EMAIL>, token <SECRET:github_token>", "bead": "gt-0anl"}
    assert rows[1]["text"] == "bd close gt-0anl --reason done"
    assert "github_token" in out.stdout and "email" in out.stdout and "dropped 1" in out.stdout


def test_scrub_command_missing_input_is_a_clear_error(tmp_path):
    out = gft("scrub", str(tmp_path / "nope.jsonl"), str(tmp_path / "o.jsonl"))
    assert out.returncode == 2 and "no such file" in out.stderr and "Traceback" not in out.stderr
