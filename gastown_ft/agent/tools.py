"""The agent's two tools and how a call to one is carried out: policy first, then the executor.

The schemas are the ones the corpus trains with, so a tuned model sees the tools it learnt: `Bash`
(`gastown_ft.corpus.examples.BASH_TOOL`) and Claude Code's `Read` as the transcript pairs declare it
(`gastown_ft.corpus.pairs_transcripts`, built from the tool's input keys). Results come back as Claude
Code shows them (Read: numbered lines), again the form of the training data.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from gastown_ft.agent import shell
from gastown_ft.agent.audit import DecisionLog
from gastown_ft.agent.command_args import parse_invocation
from gastown_ft.agent.executors import Executor, clip
from gastown_ft.agent.policy import ALLOW, REFUSE, Policy, Verdict
from gastown_ft.corpus.examples import BASH_TOOL
from gastown_ft.corpus.pairs_transcripts import _tool_schema
from gastown_ft.training.chat_format import canonical_tools

READ_TOOL = _tool_schema("Read", {"file_path": "", "limit": 0, "offset": 0})
TOOLS = canonical_tools([BASH_TOOL, READ_TOOL])  # keys sorted: the form every model was trained on

Confirm = Callable[[Verdict], bool]  # asks the operator about a held command; True: run it


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI-compatible servers send it


@dataclass
class ToolOutcome:
    call: ToolCall
    display: str  # the command or the file, for the screen
    output: str  # what goes back to the model
    decision: str  # allow | hold | refuse | invalid
    outcome: str  # ran | refused | confirmed | declined | held | invalid
    exit_code: int | None = None
    finished: bool = False  # `gt done` ran and succeeded: the session's work is handed back
    reason: str = ""


def _is_gt_done(command: str) -> bool:
    for cmd in shell.parse(command).walk():
        inv = shell.resolve(cmd)
        if inv.program == "gt" and parse_invocation("gt", inv.args).path == "gt done":
            return True
    return False


class ToolRunner:
    """Runs tool calls through the policy; every decision goes to the log."""

    def __init__(
        self, executor: Executor, policy: Policy, log: DecisionLog, confirm: Confirm | None = None
    ) -> None:
        self.executor = executor
        self.policy = policy
        self.log = log
        self.confirm = confirm

    def run(self, call: ToolCall, step: int) -> ToolOutcome:
        try:
            args = json.loads(call.arguments or "{}")
        except json.JSONDecodeError:
            args = None
        if call.name == "Bash" and isinstance(args, dict) and isinstance(args.get("command"), str):
            return self._bash(call, args["command"], step)
        if call.name == "Read" and isinstance(args, dict) and isinstance(args.get("file_path"), str):
            return self._read(call, args, step)
        what = f"{call.name}({call.arguments})"
        problem = (
            f"unknown tool {call.name!r}; the tools are Bash and Read"
            if call.name not in ("Bash", "Read")
            else f"bad arguments for {call.name}: expected "
            + ('{"command": "..."}' if call.name == "Bash" else '{"file_path": "..."}')
        )
        self.log.record(
            step=step,
            tool=call.name,
            command=what,
            decision="invalid",
            rules=[],
            reason=problem,
            outcome="invalid",
        )
        return ToolOutcome(call, what, f"Error: {problem}", "invalid", "invalid", reason=problem)

    def _gate(self, verdict: Verdict) -> str:
        """ran | refused | confirmed | declined | held: whether to go ahead, and why not."""
        if verdict.decision == ALLOW:
            return "ran"
        if verdict.decision == REFUSE:
            return "refused"
        if self.confirm is None:
            return "held"
        return "confirmed" if self.confirm(verdict) else "declined"

    def _bash(self, call: ToolCall, command: str, step: int) -> ToolOutcome:
        verdict = self.policy.check(command)
        outcome = self._gate(verdict)
        result = self.executor.run(command) if outcome in ("ran", "confirmed") else None
        self.log.record(
            step=step,
            tool="Bash",
            command=command,
            decision=verdict.decision,
            rules=verdict.rules,
            reason=verdict.reason,
            outcome=outcome,
            exit_code=result.exit_code if result is not None else None,
        )
        if result is None:
            return ToolOutcome(
                call, command, _refusal(verdict, outcome), verdict.decision, outcome, reason=verdict.reason
            )
        output = result.output if result.output.strip() else "(no output)"
        if result.exit_code:
            output = f"{output.rstrip()}\n[exit code {result.exit_code}]"
        return ToolOutcome(
            call,
            command,
            output,
            verdict.decision,
            outcome,
            result.exit_code,
            finished=result.exit_code == 0 and _is_gt_done(command),
            reason=verdict.reason,
        )

    def _read(self, call: ToolCall, args: dict, step: int) -> ToolOutcome:
        path = args["file_path"]
        verdict = self.policy.check_read(path)
        outcome = self._gate(verdict)
        display = f"Read {path}"
        if outcome not in ("ran", "confirmed"):
            self.log.record(
                step=step, tool="Read", command=path, decision=verdict.decision, rules=verdict.rules,
                reason=verdict.reason, outcome=outcome,
            )  # fmt: skip
            return ToolOutcome(
                call, display, _refusal(verdict, outcome), verdict.decision, outcome, reason=verdict.reason
            )
        try:
            text = self.executor.read_file(path)
            code = 0
        except OSError as e:
            text, code = f"Error: {e.strerror or e}: {path}", 1
        self.log.record(
            step=step, tool="Read", command=path, decision=verdict.decision, rules=verdict.rules,
            reason=verdict.reason, outcome=outcome, exit_code=code,
        )  # fmt: skip
        if code == 0:
            text = numbered(text, _int(args.get("offset"), 1), _int(args.get("limit"), 0))
        return ToolOutcome(call, display, text, verdict.decision, outcome, code, reason=verdict.reason)


def _int(value, default: int) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return default


def numbered(text: str, offset: int = 1, limit: int = 0) -> str:
    """Lines as Claude Code's Read shows them: right-aligned number, an arrow, the line."""
    lines = text.splitlines()
    start = max(1, offset or 1)
    chosen = lines[start - 1 : start - 1 + limit] if limit else lines[start - 1 :]
    return clip("\n".join(f"{i:>6}\u2192{line}" for i, line in enumerate(chosen, start=start)))


def _refusal(verdict: Verdict, outcome: str) -> str:
    if outcome == "refused":
        head = "Refused by the agent policy"
    elif outcome == "declined":
        head = "Held by the agent policy; the operator declined it"
    else:
        head = "Held by the agent policy for an operator's confirmation; nobody can confirm now, so it did not run"
    return f"{head}: {verdict.reason}. Do it another way (e.g. escalate with `gt escalate`), or leave it."
