"""The agent end to end against the project's own OpenAI-compatible server, over real HTTP.

`gastown-ft serve`'s app runs in this process on a loopback port with the tiny chat model of the serve
tests (a 2-layer LLaMA that memorized one tool call). It cannot do a Gas Town task; the loop, the
policy, the decision log and the scorer must work all the same, and where the tiny model does call a
tool, the call must travel: model -> server's tool-call parser -> client -> policy -> simulated town.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.request

import pytest
from typer.testing import CliRunner

from gastown_ft.agent.audit import DecisionLog, read_log
from gastown_ft.agent.client import OpenAIChat
from gastown_ft.agent.episodes import POLECAT_CYCLE
from gastown_ft.agent.loop import run_agent
from gastown_ft.agent.policy import Policy
from gastown_ft.agent.scoring import run_episodes
from gastown_ft.agent.tools import ToolRunner
from gastown_ft.cli import app
from gastown_ft_tests.serve.tiny_chat_model import (
    SMALL_BASH_TOOL,
    TOOL_COMMAND,
    TOOL_QUESTION,
    build_tiny_chat_model,
)

pytestmark = pytest.mark.slow  # builds the tiny model (about 10 s on a busy 2-core machine), once

MODEL = "gastown-ft"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    """Base URL (…/v1) of `gastown-ft serve`'s app serving the tiny chat model."""
    import uvicorn

    from gastown_ft.serve.app import create_app
    from gastown_ft.serve.engine import Engine, ModelChoice

    path = build_tiny_chat_model(tmp_path_factory.mktemp("agent-tiny") / "merged", steps=80, context=4096)
    engine = Engine(ModelChoice(path, "v1"), device="cpu", engine="transformers", max_tokens=48, threads=1)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(engine, MODEL), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
            break
        except OSError:
            if time.monotonic() > deadline or not thread.is_alive():
                pytest.fail("the in-process server did not start")
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(timeout=10)


def test_a_tool_call_travels_from_the_model_through_the_policy_into_the_town(endpoint, tmp_path):
    town = POLECAT_CYCLE.setup()
    log = DecisionLog(tmp_path / "d.jsonl", role="polecat")
    runner = ToolRunner(
        town, Policy(role="polecat", workdir=town.workdir, current_branch=town.current_branch), log
    )
    chat = OpenAIChat(endpoint, MODEL, max_tokens=48)
    # The one conversation the tiny model memorized: it answers with a Bash call.
    result = run_agent(chat, runner, [{"role": "user", "content": TOOL_QUESTION}], max_steps=2, nudges=0,
                       tools=[SMALL_BASH_TOOL])  # fmt: skip
    first = result.outcomes[0]
    assert (first.call.name, first.display, first.outcome, first.exit_code) == (
        "Bash",
        TOOL_COMMAND,
        "ran",
        0,
    )
    assert first.output == "No issues found."  # the town's answer: its one live bead is hooked, not open
    assert result.messages[2]["role"] == "tool" and result.messages[2]["tool_call_id"] == first.call.id
    records = read_log(tmp_path / "d.jsonl")
    assert records[0]["command"] == TOOL_COMMAND and records[0]["decision"] == "allow"
    assert len(records) == len(result.outcomes) and result.turns[0].completion_tokens


def test_the_polecat_episode_runs_end_to_end_and_is_scored_even_when_the_model_fails(endpoint, tmp_path):
    metrics = run_episodes(
        endpoint, model=MODEL, episodes=[POLECAT_CYCLE], max_steps=2, max_tokens=32, log_dir=tmp_path
    )
    (row,) = metrics["per_episode"]
    assert row["error"] is None and row["steps"] >= 1
    assert row["stop_reason"] in ("done", "budget", "no_tool_call")
    assert metrics["success_rate"] in (0.0, 1.0) and row["success"] == (not row["unmet"])
    logged = read_log(tmp_path / "polecat-cycle.jsonl") if (tmp_path / "polecat-cycle.jsonl").exists() else []
    assert len(logged) == row["tool_calls"]  # every call the model made was decided and logged


def test_agent_command_in_a_simulated_town(endpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    log = tmp_path / "cli.jsonl"
    result = CliRunner().invoke(
        app,
        ["agent", "--base-url", endpoint, "--model", MODEL, "--sim", "polecat-cycle", "--max-steps", "1",
         "--max-tokens", "24", "--no-confirm", "--no-repl", "--log", str(log)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "role polecat, rig ledger; context: gt prime" in result.output
    assert "stopped: " in result.output and "step 1" in result.output
