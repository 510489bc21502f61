"""Tool calls parsed out of streamed text: the same result however the text is cut into pieces."""

from __future__ import annotations

import json

import pytest

from gastown_ft.serve.tool_calls import ToolCallParser
from gastown_ft.training.chat_format import render

CALL = {"id": "c", "type": "function", "function": {"name": "Bash", "arguments": '{"command": "gt hook"}'}}


def _reply(content: str, calls: list[dict]) -> str:
    """What the model writes for an assistant turn: exactly what the chat template renders for it."""
    text = render(
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": content, "tool_calls": calls}]
    )
    start = text.index("<|im_start|>assistant\n") + len("<|im_start|>assistant\n")
    return text[start : text.rindex("<|im_end|>")]


def _parse(text: str, cuts: list[int]) -> tuple[str, list[tuple[str, dict]]]:
    parser = ToolCallParser()
    events = []
    for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True):
        events += parser.feed(text[a:b])
    events += parser.finish()
    content = "".join(v for k, v in events if k == "content")
    calls = [(v.name, json.loads(v.arguments)) for k, v in events if k == "tool_call"]
    return content, calls


@pytest.mark.parametrize(
    "content,calls",
    [
        ("", [CALL]),
        ("Checking the hook first.", [CALL]),
        ("Two at once.", [CALL, {**CALL, "function": {"name": "Read", "arguments": '{"path": "a.md"}'}}]),
        ("No tools needed: `gt done` and a <tag> or < sign.", []),
    ],
)
def test_every_way_of_cutting_the_stream_gives_the_same_result(content, calls):
    text = _reply(content, calls)
    expected = (content, [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls])
    assert _parse(text, []) == expected
    for step in (1, 2, 3, 7):
        assert _parse(text, list(range(step, len(text), step))) == expected


def test_a_broken_call_stays_text_and_an_unclosed_one_too():
    broken = 'x\n<tool_call>\n{"name": "Bash", "arguments": {oops}\n</tool_call>'
    assert _parse(broken, [5, 20]) == (broken, [])
    unclosed = 'y\n<tool_call>\n{"name": "Bash"'
    assert _parse(unclosed, [3]) == (unclosed, [])
    no_name = '<tool_call>\n{"arguments": {}}\n</tool_call>'
    assert _parse(no_name, []) == (no_name, [])
