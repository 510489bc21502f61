"""The OpenAI chat-completions wire format: request validation and the response, chunk and error bodies.

Only what a text model can honour is accepted; anything else (n > 1, logprobs, images, JSON-schema
response formats) is a 400 with an OpenAI-style error body that names the parameter, rather than
being silently ignored.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

ROLES = ("system", "developer", "user", "assistant", "tool")
MAX_STOP = 4


class RequestError(Exception):
    """A request the server refuses: becomes an OpenAI error body with this HTTP status."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        param: str | None = None,
        code: str | None = None,
        type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code
        self.type = type

    def body(self) -> dict[str, Any]:
        return error_body(str(self), type=self.type, param=self.param, code=self.code)


def error_body(message: str, *, type: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


@dataclass
class ChatRequest:
    model: str
    messages: list[dict[str, Any]]  # in the shape the chat template takes
    tools: list[dict[str, Any]] | None = None
    parse_tool_calls: bool = False
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None


def _text(content: Any, where: str) -> str | None:
    """String content, or the text parts of a content list joined."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for i, part in enumerate(content):
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise RequestError(f"only text content is supported (got {kind!r})", param=f"{where}[{i}]")
            parts.append(part["text"])
        return "".join(parts)
    raise RequestError("content must be a string or a list of text parts", param=where)


def _tool_calls(calls: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(calls, list):
        raise RequestError("tool_calls must be a list", param=where)
    out = []
    for i, tc in enumerate(calls):
        fn = tc.get("function") if isinstance(tc, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise RequestError("each tool call needs function.name", param=f"{where}[{i}]")
        args = fn.get("arguments", "{}")
        if not isinstance(args, str):
            args = json.dumps(args, ensure_ascii=False)
        out.append(
            {"id": tc.get("id"), "type": "function", "function": {"name": fn["name"], "arguments": args}}
        )
    return out


def _messages(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise RequestError("messages must be a non-empty list", param="messages")
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise RequestError("each message must be an object", param=where)
        role = m.get("role")
        if role not in ROLES:
            raise RequestError(
                f"unknown role {role!r}; expected one of {', '.join(ROLES)}", param=f"{where}.role"
            )
        content = _text(m.get("content"), f"{where}.content")
        if role in ("system", "developer"):
            # The template takes one leading system turn: every system/developer message goes there.
            if content:
                system.append(content)
            continue
        msg: dict[str, Any] = {"role": role, "content": content or ""}
        if role == "assistant" and m.get("tool_calls"):
            msg["tool_calls"] = _tool_calls(m["tool_calls"], f"{where}.tool_calls")
        elif content is None and role in ("user", "tool"):
            raise RequestError(f"a {role} message needs content", param=f"{where}.content")
        turns.append(msg)
    if not turns:
        raise RequestError("messages has no user turn, only system instructions", param="messages")
    return ([{"role": "system", "content": "\n\n".join(system)}] if system else []) + turns


def _tools(raw: Any) -> list[dict[str, Any]] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise RequestError("tools must be a list", param="tools")
    for i, t in enumerate(raw):
        fn = t.get("function") if isinstance(t, dict) else None
        if (
            not isinstance(t, dict)
            or t.get("type") != "function"
            or not isinstance(fn, dict)
            or not fn.get("name")
        ):
            raise RequestError(
                'each tool must be {"type": "function", "function": {"name": ...}}', param=f"tools[{i}]"
            )
    return raw or None


def _number(body: dict, key: str, lo: float, hi: float, *, integer: bool = False) -> Any:
    v = body.get(key)
    if v is None:
        return None
    ok = isinstance(v, int) if integer else isinstance(v, int | float)
    if isinstance(v, bool) or not ok or not lo <= v <= hi:
        raise RequestError(
            f"{key} must be {'an integer' if integer else 'a number'} in [{lo}, {hi}]", param=key
        )
    return v


def parse_chat_request(body: Any) -> ChatRequest:
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("model is required", param="model")
    if body.get("n") not in (None, 1):
        raise RequestError("only n=1 is supported", param="n")
    if body.get("logprobs"):
        raise RequestError("logprobs are not supported", param="logprobs")
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") not in (None, "text"):
        raise RequestError("only the text response_format is supported", param="response_format")
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else stop or []
    if not isinstance(stop, list) or len(stop) > MAX_STOP or not all(isinstance(s, str) and s for s in stop):
        raise RequestError(f"stop must be a string or up to {MAX_STOP} non-empty strings", param="stop")
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise RequestError("stream must be true or false", param="stream")
    opts = body.get("stream_options") or {}
    tools = _tools(body.get("tools"))
    max_tokens = _number(body, "max_completion_tokens", 1, 1 << 30, integer=True)
    if max_tokens is None:
        max_tokens = _number(body, "max_tokens", 1, 1 << 30, integer=True)
    return ChatRequest(
        model=model,
        messages=_messages(body.get("messages")),
        tools=tools,
        parse_tool_calls=bool(tools) and body.get("tool_choice") != "none",
        stream=stream,
        include_usage=bool(isinstance(opts, dict) and opts.get("include_usage")),
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", 0, 2),
        top_p=_number(body, "top_p", 0, 1),
        stop=stop,
        seed=_number(body, "seed", -(1 << 63), (1 << 63) - 1, integer=True),
    )


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion_body(
    *,
    id: str,
    model: str,
    content: str | None,
    tool_calls: list[dict[str, Any]],
    finish_reason: str,
    usage: dict[str, int],
    fingerprint: str,
    created: int | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": id,
        "object": "chat.completion",
        "created": created or int(time.time()),
        "model": model,
        "system_fingerprint": fingerprint,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
        "usage": usage,
    }


def chunk_body(
    *,
    id: str,
    model: str,
    created: int,
    fingerprint: str,
    delta: dict[str, Any] | None = None,
    finish_reason: str | None = None,
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": fingerprint,
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
    }
    if usage is not None:
        body["usage"] = usage
    return body
