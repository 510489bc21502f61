"""Agent turns of session transcripts as tool-use training examples.

Each thread (main or sidechain segment) becomes chat messages: user text, assistant text with
`tool_calls`, and `tool` results. The conversation is cut into windows that fit a token budget;
every window starts with the system prompt and the session's opening request (trimmed), never
separates a tool call from its result, and ends on an assistant turn.

Text no person wrote (context blocks and messages from the reader: system reminders, meta lines,
hook output, command echoes) is never a user's words: context the model saw before anything was said
in a segment (primed context, the compaction summary and the turns kept through a compaction) goes
into the system message; context seen later stays at that point, wrapped in `<context kind=...>`.
Queued steering messages are user turns placed after the tool results they arrived with. A sub-agent
gets its own system prompt (its task) and its parent session's split group. Sessions that ended in an
error, an interrupt or an abandoned hook are labelled low quality and left out unless asked for.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from gastown_ft.corpus.examples import BASH_TOOL, estimate_tokens, make_example, system_prompt

TASK = "agent_turns"
LOW_QUALITY = 0.2
OPENING_SHARE = 0.25  # of the budget, at most, for the session's opening request


def _message_tokens(msg: dict[str, Any], count: Callable[[str], int]) -> int:
    n = count(msg.get("content") or "") + 4
    for call in msg.get("tool_calls") or []:
        n += count(call["function"]["arguments"]) + count(call["function"]["name"]) + 4
    return n


def _tool_schema(name: str, example_input: dict[str, Any]) -> dict[str, Any]:
    if name == "Bash":
        return BASH_TOOL
    props = {k: {"type": _json_type(v)} for k, v in sorted(example_input.items())}
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": f"The agent's {name} tool.",
            "parameters": {"type": "object", "properties": props},
        },
    }


def _json_type(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "string"


def _trim(text: str, max_tokens: int, count: Callable[[str], int]) -> str:
    if count(text) <= max_tokens:
        return text
    keep = max(0, max_tokens * 4 - 20)
    return text[:keep] + "\n[... trimmed ...]"


def wrap_context(kind: str, text: str) -> str:
    return f'<context kind="{kind}">\n{text}\n</context>'


def _block_texts(blocks: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(person text, wrapped context) of a message's blocks."""
    texts, context = [], []
    for b in blocks:
        if b.get("type") == "text" and b.get("text"):
            texts.append(b["text"])
        elif b.get("type") == "context" and b.get("text"):
            context.append(wrap_context(str(b.get("kind")), b["text"]))
    return texts, context


def to_chat(
    messages: list[dict[str, Any]], lead: list[str] | None = None
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Transcript messages to chat messages; returns them and the tool schemas they use.

    Context seen before the first user or assistant turn is appended to `lead` (for the system
    message) when a list is given; later context is wrapped and kept where the model saw it."""
    chat: list[dict[str, Any]] = []
    tools: dict[str, dict[str, Any]] = {}
    for m in messages:
        blocks = m.get("content") or []
        if isinstance(blocks, str):
            blocks = [{"type": "text", "text": blocks}]
        texts, context = _block_texts(blocks)
        role = m.get("role")
        if role == "assistant":
            calls = []
            for b in blocks:
                if b.get("type") == "tool_use":
                    args = b.get("input") if isinstance(b.get("input"), dict) else {"input": b.get("input")}
                    calls.append(
                        {
                            "id": b.get("id") or f"call_{len(calls)}",
                            "type": "function",
                            "function": {
                                "name": b.get("name") or "tool",
                                "arguments": json.dumps(args, ensure_ascii=False, sort_keys=True),
                            },
                        }
                    )
                    tools.setdefault(b.get("name") or "tool", _tool_schema(b.get("name") or "tool", args))
            if not texts and not calls:
                continue
            msg: dict[str, Any] = {"role": "assistant", "content": "\n\n".join(texts)}
            if calls:
                msg["tool_calls"] = calls
            chat.append(msg)
        elif role in ("user", "context"):
            for b in blocks:
                if b.get("type") == "tool_result":
                    content = b.get("content")
                    if not isinstance(content, str):
                        content = json.dumps(content, ensure_ascii=False)
                    if b.get("is_error"):
                        content = f"[error] {content}"
                    for c in b.get("context") or []:
                        content += "\n\n" + wrap_context(str(c.get("kind")), c.get("text", ""))
                    chat.append(
                        {"role": "tool", "tool_call_id": b.get("tool_use_id") or "", "content": content}
                    )
            if context and lead is not None and not chat:
                lead.extend(context)
                context = []
            if texts or context:
                chat.append({"role": "user", "content": "\n\n".join(context + texts)})
    return _merge_users(_after_results(_repair(chat))), tools


def _after_results(chat: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A user turn that arrived while tool calls ran (steering, hook output) goes after their results:
    the agent saw it with them, and a call must stay next to its results."""
    out: list[dict[str, Any]] = []
    held: list[dict[str, Any]] = []
    waiting: set[str] = set()
    for m in chat:
        if m["role"] == "assistant":
            out.extend(held)
            held = []
            out.append(m)
            waiting = {c["id"] for c in m.get("tool_calls") or []}
        elif m["role"] == "tool":
            out.append(m)
            waiting.discard(m["tool_call_id"])
            if not waiting:
                out.extend(held)
                held = []
        elif waiting:
            held.append(m)
        else:
            out.append(m)
    return out + held


def _merge_users(chat: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in chat:
        if m["role"] == "user" and out and out[-1]["role"] == "user":
            out[-1] = {"role": "user", "content": out[-1]["content"] + "\n\n" + m["content"]}
        else:
            out.append(m)
    return out


def _repair(chat: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep only tool results whose call is in the conversation, and calls that got results."""
    answered = {m["tool_call_id"] for m in chat if m["role"] == "tool"}
    called = {c["id"] for m in chat for c in m.get("tool_calls") or []}
    out = []
    for m in chat:
        if m["role"] == "tool" and m["tool_call_id"] not in called:
            continue
        if m.get("tool_calls"):
            calls = [c for c in m["tool_calls"] if c["id"] in answered]
            m = {**m, "tool_calls": calls} if calls else {k: v for k, v in m.items() if k != "tool_calls"}
            if not m.get("content") and not m.get("tool_calls"):
                continue
        out.append(m)
    return out


def _render_kept(m: dict[str, Any]) -> str:
    parts = []
    for b in m.get("content") or []:
        t = b.get("type")
        if t == "text":
            parts.append(b.get("text", ""))
        elif t == "tool_use":
            parts.append(
                f"[{b.get('name')}] {json.dumps(b.get('input'), ensure_ascii=False, sort_keys=True)}"
            )
        elif t == "tool_result":
            parts.append(f"[result] {b.get('content', '')}")
    return f"{m.get('role')}: " + "\n".join(p for p in parts if p)


def segment_context(meta: dict[str, Any], lead: list[str]) -> str:
    """The context that opens a segment: what the model saw before its first turn."""
    pieces = list(lead)
    kept = (meta.get("context") or {}).get("preserved") or []
    if kept:
        pieces.append(wrap_context("preserved_turns", "\n\n".join(_render_kept(m) for m in kept)))
    return "\n\n".join(pieces)


def subagent_system_prompt(sub: dict[str, Any], parent_role: str | None) -> str:
    """A sub-agent's own system prompt: its task, not the role of the agent that started it."""
    kind = sub.get("agent_type") or "general-purpose"
    who = f"a {parent_role}" if parent_role else "another agent"
    task = sub.get("description")
    return (
        f"You are a {kind} sub-agent, started by {who} in a Gas Town multi-agent workspace"
        + (f" for one task: {task}." if task else " for one task, given in the first message.")
        + " Work only on that task with your tools; your final message is the report the calling "
        "agent receives."
    )


def system_message(row: dict[str, Any], meta: dict[str, Any], context: str) -> str:
    sub = meta.get("subagent")
    base = (
        subagent_system_prompt(sub, row.get("role"))
        if sub
        else system_prompt(row.get("role"), row.get("rig"))
    )
    if not context:
        return base
    return f"{base}\n\nContext you were given before this conversation:\n{context}"


def _units(chat: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Indivisible runs: a user message, or an assistant message with all its tool results."""
    units: list[list[dict[str, Any]]] = []
    for m in chat:
        if m["role"] == "tool" and units and units[-1][0]["role"] == "assistant":
            units[-1].append(m)
        else:
            units.append([m])
    return units


def windows(
    chat: list[dict[str, Any]], budget: int, count: Callable[[str], int] = estimate_tokens
) -> Iterator[tuple[dict[str, Any] | None, list[dict[str, Any]]]]:
    """(opening user message, window) pairs; each window ends on an assistant turn."""
    if not chat:
        return
    opening = chat[0] if chat[0]["role"] == "user" else None
    rest = chat[1:] if opening else chat
    if opening:
        opening = {"role": "user", "content": _trim(opening["content"], int(budget * OPENING_SHARE), count)}
    room = budget - (_message_tokens(opening, count) if opening else 0)
    current: list[dict[str, Any]] = []
    used = 0
    for unit in _units(rest):
        size = sum(_message_tokens(m, count) for m in unit)
        if size > room:  # a single oversized unit: trim its contents to fit on its own
            unit = [
                {**m, "content": _trim(m.get("content") or "", max(1, room // len(unit)), count)}
                for m in unit
            ]
            size = sum(_message_tokens(m, count) for m in unit)
        if current and used + size > room:
            yield from _emit(opening, current)
            current, used = [], 0
        current.extend(unit)
        used += size
    yield from _emit(opening, current)


def _emit(opening: dict[str, Any] | None, current: list[dict[str, Any]]):
    # End on the last assistant message; a window with no assistant turn teaches nothing. When that
    # message calls tools, the window ends on the call: the model learns to choose the next action.
    last = max((i for i, m in enumerate(current) if m["role"] == "assistant"), default=None)
    if last is None:
        return
    body = current[: last + 1]
    if body[0]["role"] == "user":
        if opening is not None:  # one user turn: the opening request, then where the window starts
            body = [{"role": "user", "content": opening["content"] + "\n\n" + body[0]["content"]}, *body[1:]]
    else:
        body = [opening or {"role": "user", "content": "Continue the session."}, *body]
    yield opening, body


def build_transcript_examples(
    rows: Iterable[dict[str, Any]],
    *,
    max_tokens: int = 2048,
    include_low_quality: bool = False,
    count: Callable[[str], int] = estimate_tokens,
    weight: float = 1.0,
) -> Iterator[dict[str, Any]]:
    for row in rows:
        meta = json.loads(row["meta"]) if isinstance(row.get("meta"), str) else row.get("meta") or {}
        outcome = meta.get("outcome", "ok")
        quality = 1.0 if outcome == "ok" else LOW_QUALITY
        if quality < 1.0 and not include_low_quality:
            continue
        lead: list[str] = []
        chat, tools = to_chat(meta.get("messages") or [], lead)
        if not any(m["role"] == "assistant" for m in chat):
            continue
        # A sub-agent trains in its parent session's group, so a session never spans two splits.
        session = meta.get("group_session") or meta.get("session_id") or row["key"]
        budget_share = max(16, int(max_tokens * OPENING_SHARE))
        system = system_message(row, meta, _trim(segment_context(meta, lead), budget_share, count))
        # The window budget leaves room for the system prompt and the tool schemas.
        overhead = count(system) + 8
        overhead += sum(count(json.dumps(t, sort_keys=True)) for t in tools.values())
        for _, window in windows(chat, max(64, max_tokens - overhead), count):
            used = {c["function"]["name"] for m in window for c in m.get("tool_calls") or []}
            yield make_example(
                task=TASK,
                messages=[{"role": "system", "content": system}, *window],
                group_id=f"session:{session}",
                source_ids=[row["doc_id"]],
                rig=row.get("rig"),
                role=row.get("role"),
                quality=quality,
                weight=weight,
                tools=[tools[n] for n in sorted(used) if n in tools],
                source_time=row.get("mtime") or 0.0,
            )
