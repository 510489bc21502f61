"""Where the agent's commands run: a real shell in its working directory, or the simulated town.

Both answer the same three questions: run this command line, read this file, which branch is checked
out (the policy needs it for `git push` without a refspec). The loop does not know which it talks to,
so an episode in the simulated town exercises the same code as a session in a real town.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

OUTPUT_CHARS = 12_000  # what one result may put into the model's context


@dataclass
class CommandResult:
    output: str  # stdout and stderr, as a terminal shows them
    exit_code: int


class Executor(Protocol):
    workdir: str

    def run(self, command: str) -> CommandResult: ...

    def read_file(self, path: str) -> str:
        """The file's text; raises OSError (FileNotFoundError, IsADirectoryError, ...) as open() does."""
        ...

    def current_branch(self) -> str | None: ...


def clip(text: str, limit: int = OUTPUT_CHARS) -> str:
    """Head and tail of a long output, with how much was left out between them."""
    if len(text) <= limit:
        return text
    head, tail = text[: limit * 2 // 3], text[-limit // 3 :]
    return f"{head}\n... [{len(text) - len(head) - len(tail)} characters left out] ...\n{tail}"


class ShellExecutor:
    """`bash -c` in the working directory, stdin closed (an agent cannot answer a prompt)."""

    def __init__(self, workdir: Path, *, timeout: float = 120.0) -> None:
        self.workdir = str(Path(workdir).resolve())
        self.timeout = timeout

    def run(self, command: str) -> CommandResult:
        # Its own process group, so that a timeout stops everything the command started.
        proc = subprocess.Popen(
            ["bash", "-c", command],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            text = out.decode("utf-8", "replace")
            return CommandResult(clip(text + f"\n[timed out after {self.timeout:g}s]"), 124)
        return CommandResult(clip(out.decode("utf-8", "replace")), proc.returncode)

    def read_file(self, path: str) -> str:
        p = Path(path)
        return (p if p.is_absolute() else Path(self.workdir) / p).read_text(
            encoding="utf-8", errors="replace"
        )

    def current_branch(self) -> str | None:
        try:
            proc = subprocess.run(
                ["git", "rev-parse", "--abbrev-ref", "HEAD"],
                cwd=self.workdir,
                capture_output=True,
                text=True,
                timeout=10,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        name = proc.stdout.strip()
        return name if proc.returncode == 0 and name and name != "HEAD" else None
