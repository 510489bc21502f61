"""The agent loop: ask the model, run the tool calls it makes (through the policy), give it the results,
until it runs `gt done`, stops calling tools, or the step budget is spent.

A step is one model turn. When the model answers in words without a tool call, it is nudged once
("continue, and finish with `gt done`") the way the Witness nudges an idle polecat; a second silent
turn ends the session, unless an operator is there to type the next message (`ask`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Protocol

from gastown_ft.agent.client import AssistantTurn, ChatFn
from gastown_ft.agent.tools import TOOLS, ToolOutcome, ToolRunner
from gastown_ft.errors import GastownFTError

NUDGE = (
    "Nudge from the Witness: you have work on your hook. If you are making progress, continue with your "
    "tools; if the work is done, run `gt done`; if you are blocked, escalate with `gt escalate`."
)


class Display(Protocol):
    def turn(self, step: int, turn: AssistantTurn) -> None: ...

    def tool(self, step: int, outcome: ToolOutcome) -> None: ...

    def note(self, text: str) -> None: ...


@dataclass
class AgentResult:
    stop_reason: str  # done | budget | no_tool_call | ended (the operator left) | error
    steps: int
    messages: list[dict[str, Any]]
    turns: list[AssistantTurn] = field(default_factory=list)
    outcomes: list[ToolOutcome] = field(default_factory=list)
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.stop_reason == "done"


def agent_session(
    runner: ToolRunner,
    messages: list[dict[str, Any]],
    *,
    max_steps: int = 30,
    nudges: int = 1,
    display: Display | None = None,
    ask: Callable[[], str | None] | None = None,
) -> Generator[list[dict[str, Any]], AssistantTurn, AgentResult]:
    """The loop as a generator: yields the conversation whenever the model must answer, takes its
    `AssistantTurn` back (`send`), and returns the `AgentResult`. A model error is thrown in
    (`throw(GastownFTError)`) and ends the session. Several sessions can so share one batched
    generation step (the evaluation runs its episodes that way); `run_agent` drives one with a ChatFn."""
    result = AgentResult("budget", 0, messages)
    nudges_left = nudges
    while result.steps < max_steps:
        result.steps += 1
        step = result.steps
        try:
            turn = yield messages
        except GastownFTError as e:
            result.stop_reason, result.error = "error", str(e)
            if display:
                display.note(f"[red]model error:[/red] {e}")
            return result
        result.turns.append(turn)
        messages.append(turn.message())
        if display:
            display.turn(step, turn)
        if not turn.tool_calls:
            if ask is not None:
                text = ask()
                if text is None:
                    result.stop_reason = "ended"
                    return result
                messages.append({"role": "user", "content": text})
                continue
            if nudges_left > 0:
                nudges_left -= 1
                messages.append({"role": "user", "content": NUDGE})
                if display:
                    display.note("nudged: no tool call in that turn")
                continue
            result.stop_reason = "no_tool_call"
            return result
        finished = False
        for call in turn.tool_calls:
            outcome = runner.run(call, step)
            result.outcomes.append(outcome)
            messages.append(
                {"role": "tool", "tool_call_id": call.id, "name": call.name, "content": outcome.output}
            )
            if display:
                display.tool(step, outcome)
            finished |= outcome.finished
        if finished:
            result.stop_reason = "done"
            return result
    return result


def run_agent(
    chat: ChatFn,
    runner: ToolRunner,
    messages: list[dict[str, Any]],
    *,
    max_steps: int = 30,
    nudges: int = 1,
    display: Display | None = None,
    ask: Callable[[], str | None] | None = None,
    tools: list[dict[str, Any]] = TOOLS,
) -> AgentResult:
    """Runs the conversation in `messages` (system and first user message given) to its end."""
    session = agent_session(runner, messages, max_steps=max_steps, nudges=nudges, display=display, ask=ask)
    try:
        request = next(session)
        while True:
            try:
                turn = chat(request, tools)
            except GastownFTError as e:
                request = session.throw(e)
                continue
            request = session.send(turn)
    except StopIteration as stop:
        return stop.value
