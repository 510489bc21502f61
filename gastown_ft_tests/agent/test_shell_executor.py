"""The real-shell executor in a throwaway git repository: output, exit codes, the branch the policy
asks about, file reads, and the time limit."""

from __future__ import annotations

import shutil

import pytest

from gastown_ft.agent.executors import ShellExecutor
from gastown_ft.agent.policy import REFUSE, Policy

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def test_runs_in_its_workdir_and_reports_the_branch(tmp_path):
    ex = ShellExecutor(tmp_path, timeout=10)
    assert ex.current_branch() is None  # not a repository yet
    r = ex.run("git init -q -b polecat/nux/le-1 && echo hi > notes.md && cat notes.md && pwd")
    assert r.exit_code == 0 and r.output.splitlines() == ["hi", str(tmp_path.resolve())]
    r = ex.run(
        "git -c user.name=t -c user.email=t@e add -A && git -c user.name=t -c user.email=t@e commit -qm x"
    )
    assert r.exit_code == 0, r.output
    assert ex.current_branch() == "polecat/nux/le-1"
    assert ex.read_file("notes.md") == "hi\n"
    r = ex.run("ls missing-file")
    assert r.exit_code != 0 and "missing-file" in r.output  # stderr comes back too
    # The policy sees which branch a bare `git push` would push.
    policy = Policy(role="polecat", workdir=ex.workdir, current_branch=ex.current_branch)
    assert policy.check("git push").decision == "allow"
    ex.run("git checkout -q -b main")
    assert policy.check("git push").decision == REFUSE


def test_a_command_that_hangs_is_stopped(tmp_path):
    r = ShellExecutor(tmp_path, timeout=0.5).run("echo started; sleep 5")
    assert r.exit_code == 124 and "timed out" in r.output and "started" in r.output
