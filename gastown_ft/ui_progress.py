"""A rich progress bar fed by the training progress events (pretraining and LoRA steps)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class TrainingProgressBar:
    """Shows a bar per training phase once the first step arrives; silent for runs that don't train."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  {task.fields[tps]:,.0f} tok/s"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> TrainingProgressBar:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def update(self, ev: dict[str, Any]) -> None:
        what = ev.get("what", "training")
        total = ev.get("total_steps") or ev.get("steps") or 0
        if what not in self.tasks:
            self.tasks[what] = self.progress.add_task(what, total=total, loss=float("nan"), tps=0.0)
        self.progress.update(
            self.tasks[what],
            completed=ev.get("step", 0),
            total=total,
            loss=float(ev.get("loss", float("nan"))),
            tps=float(ev.get("tokens_per_s", 0.0)),
        )
