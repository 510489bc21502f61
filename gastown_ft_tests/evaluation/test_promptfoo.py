"""promptfoo suites: loading (configs, test files, vars, prompts) and scoring, on the real gt-model-eval."""

from __future__ import annotations

import json
import re

import pytest

from gastown_ft.errors import GastownFTError
from gastown_ft.evaluation.promptfoo import JavaScript, load_suite, score_output, summarize


@pytest.fixture(scope="module")
def gt_model_eval(shared_samples):
    return shared_samples / "gastown" / "gt-model-eval"


@pytest.fixture(scope="module")
def js():
    return JavaScript()


def _expected_action(case) -> str | None:
    for a in case.asserts:
        m = re.search(r'd\.action === "([^"]+)"', str(a.get("value")))
        if m:
            return m.group(1)
    return None


@pytest.mark.shared
def test_real_suite_loads_with_prompt_default_test_and_missing_files_reported(gt_model_eval):
    suite = load_suite(gt_model_eval)
    sources = {c.source for c in suite.cases}
    assert "tests/class-a-deacon.yaml" in sources and len(sources) == 9
    # The config names three files the sample does not ship: reported, not silently dropped.
    assert sorted(w.split("file://")[1] for w in suite.warnings) == [
        "tests/class-a-refinery.yaml",
        "tests/class-a-witness.yaml",
        "tests/deacon-zombie.yaml",
    ]
    case = next(c for c in suite.cases if c.source == "tests/class-a-deacon.yaml")
    text = case.messages[0]["content"]
    assert case.messages[0]["role"] == "user" and len(case.messages) == 1
    assert "Gas Town deacon patrol agent" in text and '"zombie-scan" step' in text
    assert "tmux has-session -t bd-polecat-Toast" in text and "{{" not in text
    assert "**Config: target_branch:**" not in text  # `{% if target_branch is defined %}` left out
    # defaultTest's asserts come first, then the test's own.
    assert [a["type"] for a in case.asserts[:6]] == [
        "is-json",
        "javascript",
        "javascript",
        "javascript",
        "cost",
        "latency",
    ]
    assert case.transform and "replace" in case.transform


@pytest.mark.shared
def test_single_test_file_takes_prompt_from_the_config_above(gt_model_eval):
    suite = load_suite(gt_model_eval / "tests" / "dog-orphan.yaml")
    assert suite.cases and all(c.source == "tests/dog-orphan.yaml" for c in suite.cases)
    assert suite.prompts == ["patrol-decision.txt"]
    with_target = [
        c
        for c in load_suite(gt_model_eval / "tests" / "refinery-conflict.yaml").cases
        if "target_branch" in c.vars
    ]
    assert (
        with_target
        and f"**Config: target_branch:** {with_target[0].vars['target_branch']}" in with_target[0].prompt_text
    )


@pytest.mark.shared
def test_right_action_passes_wrong_fails_rubric_unsupported(gt_model_eval, js):
    suite = load_suite(gt_model_eval)
    expected = {c.case_id: _expected_action(c) for c in suite.cases}
    case = next(c for c in suite.cases if c.case_id == "tests/class-a-deacon.yaml#1")
    assert expected[case.case_id] == "file-warrant"
    right = json.dumps({"action": "file-warrant", "reason": "dead session, stale running state"})
    status, asserts, score, _ = score_output(case, "```json\n" + right + "\n```", 120.0, js)
    assert status == "pass" and score == 1.0  # the transform strips the code fence first
    status, asserts, _, _ = score_output(case, json.dumps({"action": "nudge", "reason": "x"}), 120.0, js)
    assert status == "fail"
    failing = [a for a in asserts if a.status == "fail"]
    assert len(failing) == 1 and failing[0].type == "javascript"
    status, asserts, _, _ = score_output(case, "I think we should file a warrant.", 120.0, js)
    assert status == "fail" and any("threw" in a.reason for a in asserts)
    # `||` forms and a `!==` form
    either = next(
        c
        for c in suite.cases
        if any('"no-op" || d.action === "log-and-watch"' in str(a.get("value")) for a in c.asserts)
    )
    allowed = json.loads(either.vars["allowed_actions"])
    for action in ("no-op", "log-and-watch"):
        if action in allowed:
            assert score_output(either, json.dumps({"action": action, "reason": "r"}), 1.0, js)[0] == "pass"
    # A case with an llm-rubric: the rubric is unsupported, not passed or failed.
    rubric = next(c for c in suite.cases if any(a["type"] == "llm-rubric" for a in c.asserts))
    _, asserts, _, _ = score_output(
        rubric, json.dumps({"action": _expected_action(rubric) or "x", "reason": "r"}), 1.0, js
    )
    kinds = {a.type: a.status for a in asserts}
    assert kinds["llm-rubric"] == "unsupported"


@pytest.mark.shared
def test_every_case_passes_with_its_expected_action_and_fails_without(gt_model_eval, js):
    """The oracle answer (the action each case's `===` assert names) passes nearly all cases; a fixed wrong
    action passes almost none: the scorer separates right from wrong on the real suite."""
    suite = load_suite(gt_model_eval)
    right = wrong = 0
    cases = [c for c in suite.cases if _expected_action(c)]
    for c in cases:
        reason = "target integration main branch caused introduced conflict config.json manual"
        good = json.dumps({"action": _expected_action(c), "reason": reason, "urgency": "high"})
        right += score_output(c, good, 10.0, js)[0] == "pass"
        bad = json.dumps({"action": "definitely-not-an-action", "reason": reason})
        wrong += score_output(c, bad, 10.0, js)[0] == "pass"
    assert len(cases) > 60
    assert right >= 0.9 * len(cases) and wrong == 0


def test_vars_files_lists_and_direct_asserts(tmp_path, js):
    (tmp_path / "prompt.txt").write_text("Role {{ role }}: {{ ctx }}\n---\nSecond {{ role }}")
    (tmp_path / "ctx.txt").write_text("from a file")
    (tmp_path / "promptfooconfig.yaml").write_text(
        "prompts: [file://prompt.txt]\n"
        "tests:\n"
        "  - vars: {role: [a, b], ctx: file://ctx.txt}\n"
        "    assert:\n"
        "      - {type: icontains, value: HELLO}\n"
        "      - {type: not-contains, value: bye}\n"
        "      - {type: contains-any, value: [x, hello]}\n"
        "      - {type: regex, value: '^he'}\n"
        "      - {type: javascript, value: output.length > 3}\n"
        "      - {type: similar, value: hi}\n"
    )
    suite = load_suite(tmp_path)
    assert len(suite.cases) == 4  # two values of `role` x two prompts in the file
    assert suite.cases[0].prompt_text == "Role a: from a file"
    status, asserts, _, _ = score_output(suite.cases[0], "hello there", 1.0, js)
    assert status == "pass" and [a.status for a in asserts][-1] == "unsupported"
    assert score_output(suite.cases[0], "hello, bye", 1.0, js)[0] == "fail"
    only_unsupported = suite.cases[0]
    only_unsupported.asserts = [{"type": "llm-rubric", "value": "be nice"}]
    only_unsupported.transform = None
    status, _, _, _ = score_output(only_unsupported, "hello", 1.0, js)
    assert status == "unscored"


def test_summary_counts_unsupported_apart(tmp_path, js):
    from gastown_ft.evaluation.promptfoo import CaseResult

    (tmp_path / "t.yaml").write_text(
        "- {vars: {}, assert: [{type: equals, value: ok}, {type: llm-rubric, value: x}]}\n"
    )
    suite = load_suite(tmp_path / "t.yaml", prompt_file=_write(tmp_path / "p.txt", "say ok"))
    rows = []
    for out in ("ok", "no"):
        status, asserts, score, _ = score_output(suite.cases[0], out, 1.0, js)
        rows.append(CaseResult("c", "d", "t.yaml", status, out, score, asserts))
    s = summarize(rows)
    assert (s["passed"], s["scored"], s["accuracy"]) == (1, 2, 0.5)
    assert s["unsupported_asserts"] == {"llm-rubric": 2}


def _write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "setup,needle",
    [
        (lambda d: d / "missing.yaml", "suite not found"),
        (lambda d: _write(d / "bad.yaml", "- {vars: [unclosed"), "not valid YAML"),
        (lambda d: _write(d / "t.yaml", "- {vars: {a: 1}}\n"), "no prompt for the suite"),
        (lambda d: _write(d / "t.yaml", "just a string\n"), "does not hold a list of tests"),
    ],
)
def test_bad_suites_are_operator_errors(tmp_path, setup, needle):
    with pytest.raises(GastownFTError) as err:
        load_suite(setup(tmp_path))
    assert needle in str(err.value) and err.value.hint
