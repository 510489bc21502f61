"""Chat examples: the one shape every pair builder produces.

The format is the one TRL, the OpenAI fine-tuning API and Hugging Face chat templates share:
`messages` with roles system / user / assistant / tool, `tool_calls` on assistant turns, and
`tools` as JSON schema. Each example also carries what the later stages need: task, rig, role,
source ids, quality, sampling weight, group id (the split unit) and the newest source time.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

ROLE_DESCRIPTIONS = {
    "mayor": "the Mayor, the town's chief of staff: you turn the overseer's goals into beads and convoys "
    "and sling work to polecats",
    "deacon": "the Deacon, the town's watchdog: you patrol agent health, feed stranded convoys and "
    "redispatch stuck work",
    "witness": "the Witness of this rig: you watch the rig's polecats, nudge the stuck and escalate",
    "refinery": "the Refinery of this rig: you process the merge queue, rebase, test and merge",
    "polecat": "a polecat: a worker with one hooked bead, which you finish and hand back with `gt done`",
    "crew": "a crew member: a long-lived worker directed by a human in your own clone of the rig",
    "dog": "a dog: an infrastructure helper of the Deacon that runs mol-dog-* formulas",
    "boot": "Boot, the Deacon's watchdog, who triages the Deacon every daemon tick",
    None: "a Gas Town agent",
}

# Tool schema for agents that act through the shell, as Claude Code's Bash tool does.
BASH_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "Bash",
        "description": "Run a shell command in the agent's working directory and return its output.",
        "parameters": {
            "type": "object",
            "properties": {
                "command": {"type": "string", "description": "The command line to run."},
                "description": {"type": "string", "description": "What the command is for, in a few words."},
            },
            "required": ["command"],
        },
    },
}


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate (about 4 characters a token for English and code); the training
    stage counts with the real tokenizer."""
    return len(text) // 4 + 1


def example_tokens(example: dict[str, Any]) -> int:
    """Estimated tokens of a whole example: every message, its tool calls, and the tool schemas."""
    n = sum(estimate_tokens(json.dumps(t, sort_keys=True)) for t in example.get("tools") or [])
    for m in example["messages"]:
        n += estimate_tokens(m.get("content") or "") + 4
        for c in m.get("tool_calls") or []:
            n += estimate_tokens(c["function"]["arguments"]) + estimate_tokens(c["function"]["name"]) + 4
    return n


def system_prompt(role: str | None, rig: str | None) -> str:
    """Names the role and the rig, so behaviour learnt for one is not applied to another."""
    who = ROLE_DESCRIPTIONS.get(role, ROLE_DESCRIPTIONS[None])
    where = f" You work in the rig `{rig}`." if rig else " You work at the town level."
    return (
        f"You are {who}, in a Gas Town multi-agent workspace.{where} "
        "Use the `gt` and `bd` command lines exactly as documented; track all work as beads."
    )


def example_id(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
    payload = json.dumps({"m": messages, "t": tools or []}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:24]


def make_example(
    *,
    task: str,
    messages: list[dict[str, Any]],
    group_id: str,
    source_ids: list[str],
    rig: str | None = None,
    role: str | None = None,
    quality: float = 1.0,
    weight: float = 1.0,
    tools: list[dict[str, Any]] | None = None,
    source_time: float = 0.0,
    system: bool = True,
) -> dict[str, Any]:
    """One example row; prepends the role/rig system prompt unless the messages bring their own."""
    if system and (not messages or messages[0]["role"] != "system"):
        messages = [{"role": "system", "content": system_prompt(role, rig)}, *messages]
    tools = tools or []
    return {
        "example_id": example_id(messages, tools),
        "messages": messages,
        "tools": tools,
        "task": task,
        "rig": rig,
        "role": role,
        "source_ids": sorted(set(source_ids)),
        "quality": float(quality),
        "weight": float(weight),
        "group_id": group_id,
        "source_time": float(source_time or 0.0),
    }


def user(content: str) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: str, tool_calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        msg["tool_calls"] = tool_calls
    return msg


def tool_call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False, sort_keys=True)},
    }


def tool_result(call_id: str, content: str, name: str | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "tool", "tool_call_id": call_id, "content": content}
    if name:
        msg["name"] = name
    return msg
