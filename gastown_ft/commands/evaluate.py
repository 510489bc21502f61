"""`gastown-ft eval`: run a promptfoo patrol suite (gt-model-eval format) against a local model.

Per-case results and the accuracy go to a JSON file; a table summarizes them by test file.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer


def _summary_table(results: list[Any], summary: dict[str, Any], title: str):
    from rich.table import Table

    table = Table(title=title)
    for col, justify in (("test file", "left"), ("cases", "right"), ("scored", "right"), ("passed", "right")):
        table.add_column(col, justify=justify)
    table.add_column("accuracy", justify="right")
    by_source: dict[str, list[Any]] = {}
    for r in results:
        by_source.setdefault(r.source, []).append(r)
    for source, rows in by_source.items():
        scored = [r for r in rows if r.status != "unscored"]
        passed = sum(r.passed for r in scored)
        acc = f"{passed / len(scored):.1%}" if scored else "-"
        table.add_row(source, str(len(rows)), str(len(scored)), str(passed), acc)
    table.add_section()
    table.add_row(
        "all",
        str(summary["cases"]),
        str(summary["scored"]),
        str(summary["passed"]),
        f"{summary['accuracy']:.1%}" if summary["scored"] else "-",
    )
    return table


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_cmd(
        suite: Annotated[
            Path,
            typer.Option(
                "--suite", help="A promptfooconfig.yaml, a directory holding one, or a YAML test file."
            ),
        ],
        model: Annotated[Path, typer.Option("--model", help="The model directory (Hugging Face format).")],
        adapter: Annotated[
            Path | None, typer.Option("--adapter", help="A LoRA adapter directory to apply to the model.")
        ] = None,
        out: Annotated[
            Path | None, typer.Option("--out", help="Where the JSON results go (default: eval-<suite>.json).")
        ] = None,
        prompt: Annotated[
            Path | None, typer.Option("--prompt", help="The prompt template, when the suite has no config.")
        ] = None,
        max_cases: Annotated[int | None, typer.Option(help="Evaluate at most this many cases.")] = None,
        max_new_tokens: Annotated[
            int | None, typer.Option(help="Generation budget per answer ([evaluation] default).")
        ] = None,
        config: Annotated[
            Path | None, typer.Option("--config", "-c", help="Path to gastown-ft.toml.")
        ] = None,
    ) -> None:
        """Score a model's JSON patrol decisions on a promptfoo suite, offline and greedily."""
        from rich.progress import Progress

        from gastown_ft.cli import console, settings_for_command
        from gastown_ft.evaluation.generate import load_model, torch_threads
        from gastown_ft.evaluation.promptfoo import load_suite
        from gastown_ft.evaluation.report import clean_json
        from gastown_ft.evaluation.run import run_patrol_suite

        cfg = settings_for_command(config).evaluation
        loaded_suite = load_suite(suite, prompt)
        for w in loaded_suite.warnings:
            console.print(f"[yellow]warning:[/yellow] {w}", highlight=False)
        n = len(loaded_suite.cases) if max_cases is None else min(max_cases, len(loaded_suite.cases))
        console.print(
            f"suite {loaded_suite.description!r}: {n} of {len(loaded_suite.cases)} cases", highlight=False
        )
        started = time.perf_counter()
        loaded = load_model(model, adapter)
        variant = "tuned" if adapter else "base"
        with torch_threads(loaded, cfg.threads), Progress(console=console, transient=True) as bar:
            task = bar.add_task("generating", total=n)
            rows, summary = run_patrol_suite(
                loaded,
                loaded_suite,
                variant=variant,
                max_new_tokens=max_new_tokens or cfg.patrol_max_new_tokens,
                batch_size=cfg.batch_size,
                max_cases=max_cases,
                progress=lambda done, _total: bar.update(task, completed=done),
            )
        name = suite.resolve().name if suite.name != "promptfooconfig.yaml" else suite.resolve().parent.name
        out = out or Path(f"eval-{Path(name).stem}.json")
        payload = {
            "suite": str(suite.resolve()),
            "description": loaded_suite.description,
            "model": str(model.resolve()),
            "adapter": str(adapter.resolve()) if adapter else None,
            "decoding": "greedy",
            "warnings": loaded_suite.warnings,
            "seconds": round(time.perf_counter() - started, 2),
            "summary": summary,
            "cases": [r.to_dict() for r in rows],
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(clean_json(payload), indent=2) + "\n", encoding="utf-8")
        console.print(_summary_table(rows, summary, f"{loaded_suite.description} ({variant} model)"))
        if summary.get("truncated"):  # cut to fit the context: said, not done silently
            cut = summary["truncated"]
            console.print(
                f"[yellow]warning:[/yellow] {len(cut)} prompt(s) were cut to fit the model's context "
                f"(their start dropped): {', '.join(cut[:5])}{' ...' if len(cut) > 5 else ''}",
                highlight=False,
            )
        if summary["unsupported_asserts"]:
            kinds = ", ".join(f"{k} x{v}" for k, v in summary["unsupported_asserts"].items())
            console.print(f"not evaluated here (not counted as pass or fail): {kinds}", highlight=False)
        console.print(
            f"accuracy {summary['accuracy']:.1%} ({summary['passed']}/{summary['scored']} scored cases); "
            f"results in {out}",
            highlight=False,
        )
