"""Run `bd` and `gt` for the town, or put the command in the outbox when that cannot be done.

A missing executable is said once per process (a warning in the run log), never raised: the pipeline
runs the same with or without a town around it. A command that fails or times out is logged and kept
in the outbox too, so nothing the town should have heard is lost.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gastown_ft.config import TownReportingConfig
from gastown_ft.town.outbox import Outbox

_said: set[str] = set()  # the executables already reported missing in this process


@dataclass(frozen=True)
class Sent:
    """What became of one command: `ok` when it ran and exited 0."""

    ok: bool
    stdout: str = ""
    why: str | None = None  # why it went to the outbox instead


def command_line(argv: Sequence[str]) -> str:
    return shlex.join(argv)


class TownCLI:
    def __init__(
        self, cfg: TownReportingConfig, outbox: Outbox, warn: Callable[[str], Any] | None = None
    ) -> None:
        self.cfg, self.outbox, self.warn = cfg, outbox, warn or (lambda _m: None)

    def executable(self, cli: str) -> str | None:
        return shutil.which(self.cfg.bd if cli == "bd" else self.cfg.gt)

    def run(self, cli: str, args: Sequence[str], cwd: Path, kind: str, **about: Any) -> Sent:
        """Run `<cli> args...` in `cwd`. `kind` and `about` describe it in the outbox."""
        argv = [cli, *args]
        record = {"cli": cli, "argv": argv, "command": command_line(argv), "cwd": str(cwd), "kind": kind}
        exe = self.executable(cli)
        if exe is None:
            why = f"{cli} is not installed (not found on PATH as {self.cfg.bd if cli == 'bd' else self.cfg.gt!r})"
            if cli not in _said:
                _said.add(cli)
                self.warn(f"town reporting: {why}; what would have been sent goes to {self.outbox.path}")
            return self._outboxed(record, about, why)
        if not cwd.is_dir():
            return self._outboxed(record, about, f"{cwd} does not exist", warn=True)
        try:
            done = subprocess.run(
                [exe, *args],
                cwd=cwd,
                capture_output=True,
                text=True,
                timeout=self.cfg.timeout_s,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return self._outboxed(record, about, f"{cli} took longer than {self.cfg.timeout_s:g}s", warn=True)
        except OSError as e:
            return self._outboxed(record, about, f"{cli} could not start: {e}", warn=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
            why = f"{cli} exited {done.returncode}: {tail[0][:300]}"
            return self._outboxed(record, about, why, warn=True)
        return Sent(ok=True, stdout=done.stdout)

    def _outboxed(self, record: dict[str, Any], about: dict[str, Any], why: str, warn: bool = False) -> Sent:
        if warn:
            self.warn(f"town reporting: `{record['command']}` not sent: {why}")
        try:
            self.outbox.add({**record, **about, "why": why})
        except OSError as e:
            self.warn(f"town reporting: the outbox {self.outbox.path} is not writable either: {e}")
        return Sent(ok=False, why=why)
