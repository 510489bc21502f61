"""Sub-agent transcripts and the tool calls that started them.

Claude Code (2.1+) writes each sub-agent to `<project>/<session>/subagents/agent-<id>.jsonl`, with
`agent-<id>.meta.json` beside it (`agentType`, `description`, sometimes `toolUseId`); workflow agents
go to `<session>/subagents/workflows/<run id>/agent-<id>.jsonl` with a `journal.jsonl` of
`started` / `result` records. Older versions wrote `<project>/agent-<id>.jsonl`. The parent session
starts one with a `Task` / `Agent` tool call (a `Workflow` call for a run); the tool result's line
carries `toolUseResult.agentId` (or `runId`), and its text ends with `agentId: <id>`.

`SessionLinks` collects, while the parent file is indexed, which call started which agent, so that a
sub-agent's documents name that call, share the parent's split group and get a system prompt of their
own: the task they were given, not the parent's role (pairs_transcripts.py writes it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SPAWN_TOOLS = frozenset({"Task", "Agent"})
WORKFLOW_TOOLS = frozenset({"Workflow"})
PROMPT_CHARS = 4_000
MAX_CALLS = 10_000  # spawning calls remembered per session
MAX_JOURNAL_BYTES = 4 * 1024 * 1024
_AGENT_FILE = re.compile(r"^agent-([A-Za-z0-9_.-]+)\.jsonl$")
_AGENT_ID_IN_TEXT = re.compile(r"agentId: ([A-Za-z0-9_-]+)")


@dataclass
class SubagentPlace:
    """Where a sub-agent file sits: the parent session (folder name), agent id and workflow run."""

    agent_id: str
    parent_session: str | None  # None for the old flat layout (read it from the lines)
    run_id: str | None = None


def subagent_place(path: Path) -> SubagentPlace | None:
    m = _AGENT_FILE.match(path.name)
    if not m:
        return None
    parts = path.parts
    if "subagents" in parts:
        k = len(parts) - 1 - parts[::-1].index("subagents")
        session = parts[k - 1] if k >= 1 else None
        rest = parts[k + 1 : -1]
        run = rest[1] if len(rest) >= 2 and rest[0] == "workflows" else None
        return SubagentPlace(m.group(1), session, run)
    return SubagentPlace(m.group(1), None)


@dataclass
class SpawnCall:
    tool_use_id: str
    tool: str
    description: str | None = None
    agent_type: str | None = None
    prompt: str | None = None


@dataclass
class SessionLinks:
    """What a parent session says about the agents it started."""

    role: str | None = None
    rig: str | None = None
    agent: str | None = None
    in_town: bool | None = None
    calls: dict[str, SpawnCall] = field(default_factory=dict)  # tool_use id -> call
    agents: dict[str, str] = field(default_factory=dict)  # agent id -> tool_use id
    runs: dict[str, str] = field(default_factory=dict)  # workflow run id -> tool_use id
    prompts: dict[int, str] = field(default_factory=dict)  # hash of a spawn prompt -> tool_use id

    def note_line(self, obj: dict[str, Any]) -> None:
        """Record spawning calls (assistant lines) and the agent ids their results name (user lines)."""
        msg = obj.get("message") if isinstance(obj.get("message"), dict) else {}
        content = msg.get("content")
        if not isinstance(content, list) or obj.get("isSidechain") is True:
            return
        if obj.get("type") == "assistant":
            for b in content:
                if not isinstance(b, dict) or b.get("type") != "tool_use" or len(self.calls) >= MAX_CALLS:
                    continue
                name = b.get("name")
                if name not in SPAWN_TOOLS and name not in WORKFLOW_TOOLS:
                    continue
                inp = b.get("input") if isinstance(b.get("input"), dict) else {}
                tid = str(b.get("id") or "")
                prompt = inp.get("prompt") if isinstance(inp.get("prompt"), str) else None
                self.calls[tid] = SpawnCall(
                    tid,
                    str(name),
                    _str(inp.get("description")),
                    _str(inp.get("subagent_type")),
                    prompt[:PROMPT_CHARS] if prompt else None,
                )
                if prompt:
                    self.prompts[hash(prompt.strip())] = tid
            return
        results = [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
        if not results:
            return
        tur = obj.get("toolUseResult") if isinstance(obj.get("toolUseResult"), dict) else {}
        for b in results:
            tid = str(b.get("tool_use_id") or "")
            if tid not in self.calls:
                continue
            agent = _str(tur.get("agentId")) if len(results) == 1 else None
            if agent is None:
                text = b.get("content")
                text = json.dumps(text) if not isinstance(text, str) else text
                m = _AGENT_ID_IN_TEXT.search(text[-4000:])
                agent = m.group(1) if m else None
            if agent:
                self.agents.setdefault(agent, tid)
            run = _str(tur.get("runId"))
            if run:
                self.runs.setdefault(run, tid)

    def call_for(self, place: SubagentPlace, meta: dict[str, Any]) -> tuple[SpawnCall | None, str | None]:
        """The call that started an agent, and how it was found."""
        tid = _str(meta.get("toolUseId"))
        if tid and tid in self.calls:
            return self.calls[tid], "meta.json toolUseId"
        if place.agent_id in self.agents:
            return self.calls[self.agents[place.agent_id]], "tool result agentId"
        if place.run_id and place.run_id in self.runs:
            return self.calls[self.runs[place.run_id]], "workflow runId"
        if tid:
            return SpawnCall(tid, "Agent"), "meta.json toolUseId (parent not read)"
        return None, None


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def read_agent_meta(path: Path) -> dict[str, Any]:
    """`agent-<id>.meta.json` beside a sub-agent file, or {} when absent or unreadable."""
    side = path.with_name(path.name[: -len(".jsonl")] + ".meta.json")
    try:
        if side.stat().st_size > 1024 * 1024:
            return {}
        obj = json.loads(side.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def read_journal(path: Path) -> tuple[dict[str, list[dict[str, Any]]], int]:
    """A workflow's `journal.jsonl`: its records by agent id, and the count of lines not understood."""
    by_agent: dict[str, list[dict[str, Any]]] = {}
    bad = 0
    try:
        if path.stat().st_size > MAX_JOURNAL_BYTES:
            return {}, -1
        raw = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}, -1
    for line in raw.splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("agentId"), str):
            bad += 1
            continue
        rec = {k: obj[k] for k in ("type", "key", "result") if k in obj}
        if isinstance(rec.get("result"), str):
            rec["result"] = rec["result"][:PROMPT_CHARS]
        by_agent.setdefault(obj["agentId"], []).append(rec)
    return by_agent, bad
