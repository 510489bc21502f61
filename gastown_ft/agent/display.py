"""The agent session on the terminal: each model turn, each tool call with the policy's verdict, and
each result (long results cut to their first lines on screen; the model gets them whole)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.text import Text

from gastown_ft.agent.client import AssistantTurn
from gastown_ft.agent.tools import ToolOutcome

_STYLE = {
    "ran": "green",
    "confirmed": "yellow",
    "refused": "red",
    "declined": "red",
    "held": "yellow",
    "invalid": "red",
}
SCREEN_LINES = 20


class RichDisplay:
    def __init__(self, console: Console | None = None, *, lines: int = SCREEN_LINES) -> None:
        self.console = console or Console(soft_wrap=True)
        self.lines = lines

    def turn(self, step: int, turn: AssistantTurn) -> None:
        timing = f"{turn.seconds:.1f}s" + (
            f", {turn.completion_tokens} tokens" if turn.completion_tokens else ""
        )
        self.console.rule(f"step {step} [dim]({timing})[/dim]", style="dim")
        if turn.content.strip():
            self.console.print(Text(turn.content.strip(), style="italic"))

    def tool(self, step: int, outcome: ToolOutcome) -> None:
        style = _STYLE.get(outcome.outcome, "white")
        label = outcome.outcome if outcome.outcome != "ran" else "allowed"
        head = f"[{style}]{label}[/{style}] " + (
            f"[bold]$ {escape(outcome.display)}[/bold]"
            if outcome.call.name == "Bash"
            else f"[bold]{escape(outcome.display)}[/bold]"
        )
        self.console.print(head, highlight=False)
        if outcome.outcome not in ("ran", "confirmed"):
            self.console.print(
                f"  [{style}]{escape(outcome.reason or outcome.output)}[/{style}]", highlight=False
            )
            return
        lines = outcome.output.splitlines()
        shown = "\n".join(lines[: self.lines]) + (
            f"\n... ({len(lines) - self.lines} more lines)" if len(lines) > self.lines else ""
        )
        self.console.print(Panel(Text(shown), border_style="dim", expand=False))

    def note(self, text: str) -> None:
        self.console.print(f"[dim]{text}[/dim]")
