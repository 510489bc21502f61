"""One model turn from any OpenAI-compatible chat endpoint (`gastown-ft serve`, llama.cpp's server,
vLLM, Ollama), through the official `openai` client.

A server that does not parse tool calls itself (llama.cpp without `--jinja`, a bare completion
template) leaves the model's `<tool_call>` blocks in the text; they are read here with the same
parser `gastown-ft serve` uses, so such a server still drives the agent.

`ChatFn` is what the agent loop and the episode runner call: the HTTP client below, or a scripted
agent in tests and episodes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gastown_ft.agent.tools import ToolCall
from gastown_ft.errors import GastownFTError
from gastown_ft.serve.tool_calls import ToolCallParser


@dataclass
class AssistantTurn:
    content: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    seconds: float = 0.0

    def message(self) -> dict[str, Any]:
        """The turn as a chat message, to send back with the next request."""
        msg: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            msg["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls
            ]
        return msg


ChatFn = Callable[[list[dict[str, Any]], list[dict[str, Any]]], AssistantTurn]


def calls_in_text(text: str) -> tuple[str, list[ToolCall]]:
    """(remaining text, tool calls) for a reply that carries `<tool_call>` blocks as plain text."""
    parser = ToolCallParser()
    events = parser.feed(text) + parser.finish()
    content = "".join(v for k, v in events if k == "content")
    calls = [ToolCall(c.id, c.name, c.arguments) for k, c in events if k == "tool_call"]
    return content, calls


class OpenAIChat:
    """Calls `POST {base_url}/chat/completions` with the conversation and the tools."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        temperature: float = 0.0,
        max_tokens: int = 512,
        timeout: float = 600.0,
    ) -> None:
        import openai

        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.base_url = base_url
        self._openai = openai
        self.client = openai.OpenAI(
            base_url=base_url, api_key=api_key or "not-needed", timeout=timeout, max_retries=1
        )

    def __call__(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> AssistantTurn:
        openai = self._openai
        start = time.perf_counter()
        try:
            resp = self.client.chat.completions.create(
                model=self.model,
                messages=messages,
                tools=tools or None,
                temperature=self.temperature,
                max_tokens=self.max_tokens,
            )
        except openai.APIConnectionError as e:
            raise GastownFTError(
                f"cannot reach the model at {self.base_url}: {e}",
                hint="start it with `gastown-ft serve` (or point --base-url at a running server)",
            ) from e
        except openai.APIStatusError as e:
            raise GastownFTError(
                f"the model server refused the request ({e.status_code}): {e.message}"
            ) from e
        choice = resp.choices[0]
        msg = choice.message
        calls = [ToolCall(c.id, c.function.name, c.function.arguments) for c in msg.tool_calls or []]
        content = msg.content or ""
        if not calls and "<tool_call>" in content:
            content, calls = calls_in_text(content)
        usage = resp.usage
        return AssistantTurn(
            content=content,
            tool_calls=calls,
            finish_reason=choice.finish_reason,
            prompt_tokens=getattr(usage, "prompt_tokens", None),
            completion_tokens=getattr(usage, "completion_tokens", None),
            seconds=time.perf_counter() - start,
        )
