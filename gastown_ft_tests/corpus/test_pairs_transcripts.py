from __future__ import annotations

import json

import pytest

from gastown_ft.config import TownConfig
from gastown_ft.corpus.documents import ReadLog, documents_to_table
from gastown_ft.corpus.examples import estimate_tokens
from gastown_ft.corpus.pairs_transcripts import build_transcript_examples, to_chat, windows
from gastown_ft.corpus.scan import TownScan
from gastown_ft.corpus.transcripts import read_transcripts


def msg(role, *blocks):
    return {"role": role, "content": list(blocks)}


def text(t):
    return {"type": "text", "text": t}


def use(i, cmd):
    return {"type": "tool_use", "id": i, "name": "Bash", "input": {"command": cmd}}


def result(i, out, err=False):
    return {"type": "tool_result", "tool_use_id": i, "content": out, "is_error": err}


SESSION = [
    msg("user", text("# Polecat Context\nYou are polecat nux. Work on your hook.")),
    msg(
        "assistant", {"type": "thinking", "thinking": "hmm"}, text("Checking my hook."), use("t1", "gt hook")
    ),
    msg("user", result("t1", "hooked: le-abc")),
    msg("assistant", use("t2", "bd show le-abc")),
    msg("user", result("t2", "le-abc: fix importer")),
    msg("assistant", text("Fixed and tested."), use("t3", "gt done")),
    msg("user", result("t3", "done")),
    msg("assistant", text("Submitted.")),
]


def row(messages, outcome="ok", role="polecat", rig="ledger"):
    return {
        "doc_id": "d1",
        "key": "s:main:0",
        "rig": rig,
        "role": role,
        "mtime": 1.0,
        "meta": json.dumps({"messages": messages, "outcome": outcome, "session_id": "sess-1"}),
    }


def test_to_chat_keeps_tool_calls_structured_and_drops_thinking():
    chat, tools = to_chat(SESSION)
    assert [m["role"] for m in chat] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
        "assistant",
        "tool",
        "assistant",
    ]
    assert chat[1]["content"] == "Checking my hook." and "hmm" not in json.dumps(chat)
    call = chat[1]["tool_calls"][0]
    assert call["function"]["name"] == "Bash" and json.loads(call["function"]["arguments"]) == {
        "command": "gt hook"
    }
    assert chat[2] == {"role": "tool", "tool_call_id": "t1", "content": "hooked: le-abc"}
    assert set(tools) == {"Bash"}


def test_orphan_tool_results_and_unanswered_calls_are_dropped():
    chat, _ = to_chat(
        [
            msg("user", text("go")),
            msg("user", result("zz", "orphan")),
            msg("assistant", text("trying"), use("t9", "gt hook")),
        ]
    )
    assert [m["role"] for m in chat] == ["user", "assistant"] and "tool_calls" not in chat[1]


def roles_ok(messages):
    assert messages[0]["role"] == "system" and messages[1]["role"] == "user"
    assert messages[-1]["role"] == "assistant"
    for prev, cur in zip(messages, messages[1:], strict=False):
        if cur["role"] == "tool":
            assert prev["role"] in ("assistant", "tool")
        assert not (prev["role"] == "user" and cur["role"] == "user")
    called = {c["id"] for m in messages for c in m.get("tool_calls") or []}
    assert all(m["tool_call_id"] in called for m in messages if m["role"] == "tool")


@pytest.mark.parametrize("budget", [60, 90, 400, 4000])
def test_windows_fit_the_budget_and_keep_roles_in_order(budget):
    examples = list(build_transcript_examples([row(SESSION)], max_tokens=budget))
    assert examples
    for e in examples:
        roles_ok(e["messages"])
        body = e["messages"][1:]
        assert (
            sum(
                estimate_tokens(m.get("content") or "")
                + 4
                + sum(estimate_tokens(c["function"]["arguments"]) + 6 for c in m.get("tool_calls") or [])
                for m in body
            )
            <= budget * 1.3
        )
        assert "polecat" in e["messages"][0]["content"] and "`ledger`" in e["messages"][0]["content"]
        assert e["group_id"] == "session:sess-1" and e["task"] == "agent_turns"
    if budget >= 4000:
        assert len(examples) == 1
    if budget <= 90:
        assert len(examples) > 1


def test_low_quality_sessions_are_left_out_by_default():
    assert not list(build_transcript_examples([row(SESSION, outcome="interrupted")]))
    kept = list(build_transcript_examples([row(SESSION, outcome="error")], include_low_quality=True))
    assert kept and all(e["quality"] < 1 for e in kept)


def test_windows_never_split_a_call_from_its_result():
    chat, _ = to_chat(SESSION)
    for _, w in windows(chat, 50):
        for i, m in enumerate(w):
            if m.get("tool_calls") and i < len(w) - 1:
                assert w[i + 1]["role"] == "tool"


def test_demo_transcripts(demo_town):
    scan = TownScan(TownConfig(root=demo_town.root, claude_projects_dir=demo_town.claude_projects_dir))
    rows = documents_to_table(list(read_transcripts(scan, ReadLog()))).to_pylist()
    examples = list(build_transcript_examples(rows))
    assert examples and {e["role"] for e in examples} >= {"polecat", "witness", "refinery", "mayor"}
    for e in examples:
        roles_ok(e["messages"])
    again = list(build_transcript_examples(rows))
    assert [e["example_id"] for e in again] == [e["example_id"] for e in examples]
