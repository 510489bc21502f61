"""The generalization cases: valid references, phrasings no corpus template uses, and a scorer that fails."""

from __future__ import annotations

import json

from gastown_ft.corpus.grammar import validate_command
from gastown_ft.evaluation.generate import Generation, parse_tool_calls
from gastown_ft.evaluation.paraphrase import paraphrase_cases
from gastown_ft.evaluation.tasks import score_case, summarize


def _answer(command: str) -> Generation:
    text = (
        "On it.\n<tool_call>\n"
        + json.dumps({"name": "Bash", "arguments": {"command": command}})
        + "\n</tool_call>"
    )
    return Generation(text, 20, 100, False, True, 0.1, parse_tool_calls(text))


def _reference_command(case) -> str:
    return json.loads(case.reference["tool_calls"][0]["function"]["arguments"])["command"]


def test_every_reference_command_parses_and_passes_its_own_check():
    cases = paraphrase_cases()
    assert len(cases) >= 12 and {c.task for c in cases} >= {"bead_create", "bead_update", "bead_close"}
    for case in cases:
        cmd = _reference_command(case)
        assert validate_command(cmd).ok, cmd
        assert score_case(case, _answer(cmd)).passed, cmd


def test_wrong_answers_fail():
    cases = {c.task: c for c in paraphrase_cases()}
    create = cases["bead_create"]  # a P1 bug
    assert not score_case(create, _answer('bd create "Payee matcher" -t feature -p 1')).passed
    assert not score_case(create, _answer('bd create "Payee matcher" -t bug -p 3')).passed
    assert not score_case(create, _answer("bd make bug")).passed
    assert not score_case(cases["bead_update"], _answer("bd update le-9fz --priority 1")).passed
    scores = [score_case(c, _answer("gt done")) for c in paraphrase_cases()]
    assert summarize(scores)["suite_score"] == 0.0


def test_no_request_uses_a_corpus_template_opener():
    from gastown_ft.corpus.pairs_beads import create_request

    spec = {
        "type": "bug",
        "priority": 1,
        "title": "X",
        "description": "",
        "labels": [],
        "parent": None,
        "deps": [],
    }
    openers = {create_request(spec, f"k{i}").split("X")[0].strip().lower() for i in range(200)}
    for case in paraphrase_cases():
        request = case.prompt.messages[-1]["content"].lower()
        assert not any(o and request.startswith(o) for o in openers), request


def test_a_right_answer_with_the_corpus_opening_line_fits_its_budget():
    """The tuned model opens a tool call with a line like "Adding the dependency: `a` depends on `b`
    (parent-child)." The budget of a bare-tool-call reference leaves room for it (measured in the
    tokenizer's tokens: a word piece or more per 3-4 characters, so characters / 2 is an upper bound)."""
    from gastown_ft.evaluation.run import answer_budget

    for case in paraphrase_cases():
        cmd = _reference_command(case)
        opening = "Adding the dependency: `co-8m2` depends on `co-8m0` (parent-child).\n"
        answer = _answer(cmd).text.replace("On it.\n", opening)
        ref_tokens = len(case.reference["tool_calls"][0]["function"]["arguments"]) // 2 + 12
        assert answer_budget(case.reference, ref_tokens) >= len(answer) // 2 - 8, cmd
    with_content = {"content": "Filing it.", "tool_calls": [{"function": {"arguments": "{}"}}]}
    assert answer_budget(with_content, 80) == 108  # its own opening line is in its length
