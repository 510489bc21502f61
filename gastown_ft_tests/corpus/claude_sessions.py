"""Claude Code sessions written in the shapes real files have (written here, not copied).

Shapes: the envelope of every line (parentUuid, isSidechain, userType, cwd, sessionId, version,
gitBranch, type, uuid, timestamp), assistant `message` objects with id / model / stop_reason / usage,
compact boundaries (`logicalParentUuid`, `compactMetadata` with `preservedSegment` and
`preservedMessages`), compaction summaries (`isCompactSummary`), meta lines (`isMeta`), slash-command
echoes, hook attachments, `queue-operation` lines, `queued_command` attachments, and sub-agent files
under `<session>/subagents/` with their `.meta.json` and a workflow `journal.jsonl`.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

VERSION = "2.1.42"
MODEL = "claude-sonnet-4-5-20250929"
T0 = datetime(2026, 3, 2, 9, 0, 0)


class SessionWriter:
    """Lines of one session file; `at` advances a clock so timestamps increase like real ones."""

    def __init__(self, session: str, cwd: Path | str, *, side: bool = False, agent_id: str | None = None):
        self.session, self.cwd, self.side, self.agent_id = session, str(cwd), side, agent_id
        self.lines: list[dict[str, Any]] = []
        self.t = T0

    def _ts(self) -> str:
        self.t += timedelta(seconds=7)
        return self.t.strftime("%Y-%m-%dT%H:%M:%S.000Z")

    def envelope(self, kind: str, uuid: str | None, parent: str | None, **extra: Any) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "parentUuid": parent,
            "isSidechain": self.side,
            "userType": "external",
            "cwd": self.cwd,
            "sessionId": self.session,
            "version": VERSION,
            "gitBranch": "main",
            "type": kind,
        }
        if self.agent_id:
            obj["agentId"] = self.agent_id
        if uuid is not None:
            obj["uuid"] = uuid
        obj["timestamp"] = self._ts()
        obj.update(extra)
        self.lines.append(obj)
        return obj

    def user(self, uuid: str, parent: str | None, content: Any, **extra: Any) -> dict[str, Any]:
        return self.envelope("user", uuid, parent, message={"role": "user", "content": content}, **extra)

    def assistant(self, uuid: str, parent: str | None, blocks: list[dict], stop: str = "end_turn"):
        message = {
            "id": f"msg_{uuid}",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": blocks,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": 4, "cache_read_input_tokens": 12000, "output_tokens": 40},
        }
        return self.envelope("assistant", uuid, parent, requestId=f"req_{uuid}", message=message)

    def say(self, uuid: str, parent: str | None, text: str) -> dict[str, Any]:
        return self.assistant(uuid, parent, [{"type": "text", "text": text}])

    def call(self, uuid: str, parent: str | None, tid: str, name: str, inp: dict, say: str | None = None):
        blocks = ([{"type": "text", "text": say}] if say else []) + [
            {"type": "tool_use", "id": tid, "name": name, "input": inp}
        ]
        return self.assistant(uuid, parent, blocks, stop="tool_use")

    def result(self, uuid: str, parent: str, tid: str, content: Any, **extra: Any) -> dict[str, Any]:
        block = {"tool_use_id": tid, "type": "tool_result", "content": content, "is_error": False}
        return self.user(uuid, parent, [block], **extra)

    def boundary(self, uuid: str, logical: str, **metadata: Any) -> dict[str, Any]:
        return self.envelope(
            "system",
            uuid,
            None,
            subtype="compact_boundary",
            content="Conversation compacted",
            isMeta=False,
            level="info",
            logicalParentUuid=logical,
            compactMetadata={"trigger": "auto", "preTokens": 155210, **metadata},
        )

    def summary(self, uuid: str, parent: str, text: str) -> dict[str, Any]:
        body = "This session is being continued from a previous conversation that ran out of context. " + text
        return self.user(uuid, parent, body, isCompactSummary=True, isVisibleInTranscriptOnly=True)

    def queue(self, operation: str, content: str | None = None) -> dict[str, Any]:
        obj: dict[str, Any] = {"type": "queue-operation", "operation": operation, "timestamp": self._ts()}
        obj["sessionId"] = self.session
        if content is not None:
            obj["content"] = content
        self.lines.append(obj)
        return obj

    def attachment(self, uuid: str, parent: str, attachment: dict[str, Any]) -> dict[str, Any]:
        return self.envelope("attachment", uuid, parent, attachment=attachment)

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(obj) + "\n" for obj in self.lines), encoding="utf-8")
        return path


def rewind_then_compact(session: str, cwd: Path | str, shape: str) -> SessionWriter:
    """A rewind (the first attempt abandoned), then a compaction keeping the last three turns.

    shape "tail_rewritten": the preserved tail is written after the summary (its parent is the
    summary), so the boundary's logical parent points forward; "tail_continues": the conversation goes
    on from the preserved tail and the boundary and summary hang off it; "plain": no preserved
    segment; "loop_without_metadata": the tail_rewritten shape with no compactMetadata to resolve it."""
    s = SessionWriter(session, cwd)
    s.user("u1", None, "Fix the importer bug on your hook.")
    s.say("a1", "u1", "Reading the hook.")
    s.user("b1u", "a1", "First attempt: patch the parser.")  # rewound
    s.say("b1a", "b1u", "Patched the parser (abandoned).")
    s.user("b2u", "a1", "Second attempt: write a failing test first.")
    s.say("b2a", "b2u", "Wrote test_quoted_payee; it fails as expected.")
    s.user("b2u2", "b2a", "Keep going")
    preserved = {
        "preservedSegment": {"headUuid": "b2a", "anchorUuid": "cs", "tailUuid": "b2a2"},
        "preservedMessages": {"anchorUuid": "cs", "uuids": ["b2a", "b2u2", "b2a2"]},
    }
    if shape == "plain":
        s.say("b2a2", "b2u2", "Kept going: the fix passes the new test.")
        s.boundary("cb", "b2a2")
        s.summary("cs", "cb", "Summary: the importer fix is written and tested.")
        s.user("p1u", "cs", "After compaction: submit it.")
    elif shape == "tail_continues":
        s.say("b2a2", "b2u2", "Kept going: the fix passes the new test.")
        s.boundary("cb", "b2a2", **preserved)
        s.summary("cs", "cb", "Summary: the importer fix is written and tested.")
        s.user("p1u", "b2a2", "After compaction: submit it.")
    else:
        meta = preserved if shape == "tail_rewritten" else {}
        s.boundary("cb", "b2a2", **meta)
        s.summary("cs", "cb", "Summary: the importer fix is written and tested.")
        s.say("b2a2", "cs", "Kept going: the fix passes the new test.")
        s.user("p1u", "b2a2", "After compaction: submit it.")
    s.say("p1a", "p1u", "Submitted with gt done.")
    return s


def null_parents(session: str, cwd: Path | str) -> SessionWriter:
    """An older / converted session: every parentUuid is null."""
    s = SessionWriter(session, cwd)
    s.user("n1", None, "Check the merge queue.")
    s.say("n2", None, "Two MRs are waiting.")
    s.user("n3", None, "Merge the first.")
    s.say("n4", None, "Merged le-mr1.")
    return s


def meta_text(session: str, cwd: Path | str) -> SessionWriter:
    """Harness text in user turns: reminders, a caveat, a command echo and output, hook output, thinking."""
    s = SessionWriter(session, cwd)
    s.user(
        "m1",
        None,
        [
            {
                "type": "text",
                "text": "Please review the convoy.\n<system-reminder>\nAs you answer, use the todo "
                "list.\n</system-reminder>",
            }
        ],
    )
    s.assistant(
        "m2",
        "m1",
        [
            {"type": "thinking", "thinking": "SECRET-THOUGHT about the convoy", "signature": "c2ln"},
            {"type": "text", "text": "Looking at it."},
            {"type": "tool_use", "id": "toolu_r1", "name": "Read", "input": {"file_path": "convoy.md"}},
        ],
        stop="tool_use",
    )
    s.result(
        "m3",
        "m2",
        "toolu_r1",
        "     1\tconvoy: three beads\n\n<system-reminder>\nWhenever you read a file, consider whether "
        "it is malicious.\n</system-reminder>\n",
    )
    s.say("m4", "m3", "The convoy tracks three beads.")
    s.user(
        "m5",
        "m4",
        "Caveat: The messages below were generated by the user while running local commands. DO NOT "
        "respond to these messages or otherwise consider them in your response unless the user "
        "explicitly asks you to.",
        isMeta=True,
    )
    s.user(
        "m6",
        "m5",
        "<command-name>/cost</command-name>\n            <command-message>cost</command-message>\n"
        "            <command-args></command-args>",
    )
    s.user("m7", "m6", "<local-command-stdout>Total cost: $0.12</local-command-stdout>")
    s.attachment(
        "m8",
        "m7",
        {
            "type": "hook_additional_context",
            "hookName": "UserPromptSubmit",
            "content": ["gt: 2 unread mail for mayor"],
        },
    )
    s.user("m9", "m8", "Now sling the first bead.")
    s.say("m10", "m9", "Slung le-abc to nux.")
    return s


def steering(session: str, cwd: Path | str) -> SessionWriter:
    """Messages typed while the agent worked: a legacy `remove`, a modern `queued_command` (with its
    duplicate `remove`), and one enqueued then popped back for editing (never delivered)."""
    s = SessionWriter(session, cwd)
    s.user("s1", None, "Run the tests.")
    s.call("s2", "s1", "toolu_t1", "Bash", {"command": "go test ./..."})
    s.queue("enqueue", "also check lint")
    s.queue("remove", "also check lint")
    s.result("s3", "s2", "toolu_t1", "ok  all packages")
    s.call("s4", "s3", "toolu_t2", "Bash", {"command": "golangci-lint run"}, say="Tests pass; linting too.")
    s.queue("enqueue", "then push")
    s.queue("remove", "then push")
    s.result("s5", "s4", "toolu_t2", "no issues")
    s.attachment("s6", "s5", {"type": "queued_command", "prompt": "then push", "commandMode": "prompt"})
    s.call("s7", "s6", "toolu_t3", "Bash", {"command": "git push"})
    s.result("s8", "s7", "toolu_t3", "pushed")
    s.queue("enqueue", "never mind")
    s.queue("popAll")
    s.say("s9", "s8", "Tests and lint pass; pushed.")
    return s


def parent_with_subagents(session: str, cwd: Path | str) -> SessionWriter:
    """A parent session that starts an Agent sub-agent and a Workflow run."""
    s = SessionWriter(session, cwd)
    s.user("p1", None, "Find where payees are parsed, then sweep the docs.")
    s.call(
        "p2",
        "p1",
        "toolu_agent1",
        "Agent",
        {
            "description": "Find payee parsing",
            "subagent_type": "Explore",
            "prompt": "Find every place that splits CSV payees. Report file:line.",
        },
    )
    s.result(
        "p3",
        "p2",
        "toolu_agent1",
        [
            {"type": "text", "text": "ledger/importer.py:23 splits on commas."},
            {
                "type": "text",
                "text": "agentId: ab12cd (use SendMessage with to: 'ab12cd' to continue this agent)",
            },
        ],
        toolUseResult={"agentId": "ab12cd", "status": "completed"},
    )
    s.call("p4", "p3", "toolu_wf1", "Workflow", {"scriptPath": "/home/u/docs-sweep.workflow.js"})
    s.result(
        "p5",
        "p4",
        "toolu_wf1",
        f"Workflow launched in background. Task ID: task_1\nTranscript dir: {session}/subagents/workflows/wf_1",
        toolUseResult={"isAsync": True, "status": "async_launched", "runId": "wf_1", "taskId": "task_1"},
    )
    s.say("p6", "p5", "The parser is at ledger/importer.py:23; the docs sweep runs in the background.")
    return s


def subagent(
    session: str, cwd: Path | str, agent_id: str, prompt: str, answer: str, *, workflow: bool = False
):
    sid = f"{session}#agent-{agent_id}" if workflow else session
    s = SessionWriter(sid, cwd, side=True, agent_id=agent_id)
    s.user(f"{agent_id}-u1", None, prompt)
    s.call(f"{agent_id}-a1", f"{agent_id}-u1", f"toolu_{agent_id}_g", "Grep", {"pattern": "split"})
    s.result(f"{agent_id}-r1", f"{agent_id}-a1", f"toolu_{agent_id}_g", "ledger/importer.py:23")
    s.say(f"{agent_id}-a2", f"{agent_id}-r1", answer)
    return s
