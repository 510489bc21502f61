"""Tool calls out of generated text: `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>` blocks.

The model writes tool calls the way the chat template renders them (gastown_ft.training.chat_format).
`ToolCallParser` takes the text as it streams and gives back plain content and complete calls, so a
streaming reply and a whole one come out the same. A block that is not valid JSON stays content.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

OPEN = "<tool_call>"
CLOSE = "</tool_call>"


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # a JSON object as text, as OpenAI clients expect

    def to_openai(self) -> dict:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


def parse_call(body: str) -> ToolCall | None:
    try:
        obj = json.loads(body)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
        return None
    args = obj.get("arguments", {})
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            return None
    if not isinstance(args, dict):
        return None
    return ToolCall(id=f"call_{uuid.uuid4().hex[:24]}", name=obj["name"], arguments=json.dumps(args))


def _held_prefix(text: str, marker: str) -> int:
    """Length of the longest end of `text` that could be the start of `marker`."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-n:]):
            return n
    return 0


class ToolCallParser:
    """Feed generated text piece by piece; get ("content", str) and ("tool_call", ToolCall) events."""

    def __init__(self) -> None:
        self._buf = ""
        self._inside = False
        self._pending_space = ""  # whitespace that separates content from a following call is dropped
        self._space_before_call = ""  # ... unless the call turns out not to be one
        self.calls: list[ToolCall] = []

    def _content(self, text: str, out: list) -> None:
        if not text:
            return
        stripped = text.rstrip()
        if stripped:
            out.append(("content", self._pending_space + stripped))
            self._pending_space = ""
        self._pending_space += text[len(stripped) :]

    def feed(self, text: str) -> list[tuple[str, object]]:
        out: list[tuple[str, object]] = []
        self._buf += text
        while True:
            if not self._inside:
                i = self._buf.find(OPEN)
                if i < 0:
                    keep = _held_prefix(self._buf, OPEN)
                    self._content(self._buf[: len(self._buf) - keep], out)
                    self._buf = self._buf[len(self._buf) - keep :]
                    return out
                self._content(self._buf[:i], out)
                self._space_before_call, self._pending_space = self._pending_space, ""
                self._buf = self._buf[i + len(OPEN) :]
                self._inside = True
            else:
                j = self._buf.find(CLOSE)
                if j < 0:
                    return out
                body, self._buf = self._buf[:j], self._buf[j + len(CLOSE) :]
                self._inside = False
                call = parse_call(body.strip())
                if call is None:
                    self._pending_space = self._space_before_call
                    self._content(OPEN + body + CLOSE, out)
                else:
                    self.calls.append(call)
                    out.append(("tool_call", call))

    def finish(self) -> list[tuple[str, object]]:
        """The rest: an unclosed block is content; trailing whitespace is kept unless a call came."""
        out: list[tuple[str, object]] = []
        rest = self._buf
        if self._inside:
            self._pending_space = self._space_before_call
            rest = OPEN + rest
        self._buf, self._inside = "", False
        self._content(rest, out)
        if self._pending_space and not self.calls:
            out.append(("content", self._pending_space))
        self._pending_space = ""
        return out
