"""The shared shell scanner (gastown_ft.shell_scan), through its two real callers: the agent policy
and the corpus grammar. Only behaviours the policy and grammar tests do not already pin down."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from gastown_ft.agent.policy import HOLD, REFUSE, Policy
from gastown_ft.agent.shell import parse
from gastown_ft.corpus.grammar import validate_command


@contextmanager
def _within(seconds: int) -> Iterator[None]:
    """Fail instead of hanging: the scanner once looped forever on some redirections."""

    def _timeout(*_: object) -> None:
        raise TimeoutError("the scanner did not finish")

    old = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_policy_sees_a_command_in_escaped_backticks_inside_backticks() -> None:
    verdict = Policy(workdir="/w").check("echo `echo \\`rm -rf /\\``")
    assert verdict.decision == REFUSE
    assert any(f.rule == "rm-rf" for f in verdict.findings)


@pytest.mark.parametrize(
    "line", ["echo ${HOME", "echo $((1 +", "echo $(ls", 'echo "x', "echo 'x", "echo `ls"]
)
def test_policy_holds_a_line_with_an_unclosed_construct(line: str) -> None:
    verdict = Policy(workdir="/w").check(line)
    assert verdict.decision == HOLD
    assert [f.rule for f in verdict.findings] == ["unparsed"]


def test_arithmetic_and_parameter_expansions_are_computed_words() -> None:
    cmd = next(parse('rm $((1 + 2)) ${X:-a b} "$Y" lit').walk())
    assert cmd.words == ["rm", "0", "$VAR", "$VAR", "lit"]
    assert cmd.dynamic == {1, 2, 3}


@pytest.mark.parametrize(
    "line", ["cat <>(rm -rf /)", "cat <<(rm -rf /)", "sudo<>(rm -rf /)", "a >>(rm -rf /)"]
)
def test_a_redirection_before_a_parenthesis_is_read_to_the_end(line: str) -> None:
    with _within(5):
        verdict = Policy(workdir="/w").check(line)
    assert verdict.decision == REFUSE  # the parenthesised command is still seen


def test_grammar_reads_an_arithmetic_expansion_as_one_argument() -> None:
    assert validate_command("gt mail send $((1 + 2)) -s x -m y").ok
    assert not validate_command("gt mail send 1 + 2 -s x -m y").ok  # the same words unquoted: three


def test_grammar_finds_commands_in_backticks_and_substitutions_inside_double_quotes() -> None:
    check = validate_command('gt mail send mayor/ -s "`bd frobnicate`" -m "$(bd nosuchcmd)"')
    assert check.path == "gt mail send"
    assert sorted(e for e in check.errors if e.startswith("bd:")) == [
        "bd: unknown subcommand 'frobnicate' of bd",
        "bd: unknown subcommand 'nosuchcmd' of bd",
    ]
