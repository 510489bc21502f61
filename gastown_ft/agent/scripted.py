"""Scripted agents: a fixed list of turns played through the same `ChatFn` interface a model has.

A turn is a list of shell commands (one Bash tool call each) or a plain text reply (no tool call).
A command may be a function of the previous tool result, for ids the town hands out at run time
(`lambda out: f"gt sling {created_id(out)} ledger"`). When the script runs out, the agent replies in
words, which ends the session after the loop's nudge.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from gastown_ft.agent.client import AssistantTurn
from gastown_ft.agent.tools import ToolCall

Command = str | Callable[[str], str]
Turn = Sequence[Command] | str


def created_id(output: str) -> str:
    """The id in `✓ Created issue: <id>` (or the bare id `--silent` prints)."""
    m = re.search(r"Created issue:\s*(\S+)", output)
    return m.group(1) if m else output.strip().split()[0] if output.strip() else "unknown"


class ScriptedAgent:
    def __init__(self, turns: Sequence[Turn], *, done_text: str = "I have nothing more to do.") -> None:
        self.turns = list(turns)
        self.done_text = done_text

    def __call__(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> AssistantTurn:
        k = sum(1 for m in messages if m["role"] == "assistant")
        last = next((m["content"] for m in reversed(messages) if m["role"] == "tool"), "")
        if k >= len(self.turns):
            return AssistantTurn(self.done_text, finish_reason="stop")
        turn = self.turns[k]
        if isinstance(turn, str):
            return AssistantTurn(turn, finish_reason="stop")
        calls = []
        for j, cmd in enumerate(turn):
            text = cmd(last) if callable(cmd) else cmd
            calls.append(ToolCall(f"call_{k}_{j}", "Bash", json.dumps({"command": text})))
        return AssistantTurn("", calls, finish_reason="tool_calls")
