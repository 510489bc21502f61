from __future__ import annotations

import pytest

from gastown_ft.corpus.examples import BASH_TOOL, assistant, tool_call, tool_result, user
from gastown_ft.training.chat_format import (
    TURN_END,
    TURN_START,
    render,
    render_segments,
)
from gastown_ft.training.tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(["gt done bd create polecat"] * 10, 300)


CONVERSATIONS = [
    [user("hi"), assistant("yo")],
    [
        {"role": "system", "content": "You are a polecat in rig `ledger`."},
        user("Claim gt-1"),
        assistant("Claiming.", [tool_call("c1", "Bash", {"command": "bd update gt-1 --claim"})]),
        tool_result("c1", "ok ünïcode"),
        assistant("Done."),
    ],
    [
        user("two calls"),
        assistant(
            "",
            [tool_call("a", "Bash", {"command": "gt hook"}), tool_call("b", "Read", {"file_path": "/tmp/x"})],
        ),
        tool_result("a", "hooked"),
        tool_result("b", "text"),
        assistant("ok"),
    ],
]


@pytest.mark.parametrize("messages", CONVERSATIONS)
@pytest.mark.parametrize("tools", [None, [BASH_TOOL]])
@pytest.mark.parametrize("gen", [False, True])
def test_python_rendering_equals_the_jinja_template(tokenizer, messages, tools, gen):
    expected = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=gen)
    assert render(messages, tools, add_generation_prompt=gen) == expected


def test_only_assistant_output_and_its_end_of_turn_are_trained():
    segs = render_segments(CONVERSATIONS[1], [BASH_TOOL])
    trained = [t for t, on in segs if on]
    assert trained == [
        'Claiming.\n<tool_call>\n{"name": "Bash", "arguments": {"command": "bd update gt-1 --claim"}}\n</tool_call>'
        + TURN_END,
        "Done." + TURN_END,
    ]
    assert not any(on for t, on in segs if TURN_START + "assistant" in t)
