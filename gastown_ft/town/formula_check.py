"""Check a formula the way the town and this project will read it: the project's formula reader
(corpus/formulas.py), every `gt`/`bd` command against the CLI grammar, and every `gastown-ft` command
against this CLI itself (its typer app: the subcommand exists and takes those options)."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

from gastown_ft.corpus.formulas import FormulaError, parse_formula
from gastown_ft.corpus.grammar import extract_commands, validate_command

_FENCE = re.compile(r"```[\w-]*\n(.*?)```", re.S)
_INLINE = re.compile(r"`(gastown-ft [^`]+)`")


def formula_texts(data: dict[str, Any]) -> list[str]:
    """The texts that may hold commands: the description and every step's description."""
    texts = [str(data.get("description") or "")]
    texts += [str(s.get("description") or "") for s in data.get("steps") or [] if isinstance(s, dict)]
    return texts


def gastown_ft_commands(text: str) -> list[str]:
    """`gastown-ft ...` command lines: lines of fenced blocks, and inline code spans."""
    out = []
    for block in _FENCE.findall(text):
        out += [ln.strip() for ln in block.splitlines() if ln.strip().startswith("gastown-ft ")]
    out += [m.strip() for m in _INLINE.findall(text)]
    return out


def gastown_ft_problem(command: str) -> str | None:
    """Why this CLI would reject `command` (None when it parses): unknown subcommand, option or arity.

    Parses with the CLI's own typer app, as `main()` would, without running anything."""
    import typer.main
    from typer._click.exceptions import UsageError  # typer bundles its click

    from gastown_ft.cli import app

    try:
        words = shlex.split(command)
    except ValueError as e:
        return f"{command!r}: {e}"
    cmd = typer.main.get_command(app)
    args, parent, name = words[1:], None, "gastown-ft"
    try:
        while True:
            if not args and getattr(cmd, "no_args_is_help", False):  # (typer would print the help)
                return f"{command!r}: names no subcommand of `{name}`"
            ctx = cmd.make_context(name, list(args), parent=parent, resilient_parsing=False)
            if not hasattr(cmd, "resolve_command"):  # a command, not a group: parsed
                return None
            rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
            if not rest:
                return f"{command!r}: names no subcommand of `{ctx.command_path}`"
            name, sub, args = cmd.resolve_command(ctx, rest)
            if sub is None:
                return f"{command!r}: no such command {name!r}"
            cmd, parent = sub, ctx
    except UsageError as e:
        return f"{command!r}: {e.format_message()}"


def formula_problems(path: Path) -> list[str]:
    """Everything wrong with the formula file (empty when it is sound)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        return [f"{path}: {e}"]
    try:
        parse_formula(data, path.name.split(".formula.")[0])
    except FormulaError as e:
        return [f"{path}: {e.reason}: {e}"]
    problems = []
    for text in formula_texts(data):
        for c in extract_commands(text):
            check = validate_command(c)
            if not check.ok:
                problems.append(f"{c!r}: {'; '.join(check.errors)}")
        for c in gastown_ft_commands(text):
            problem = gastown_ft_problem(c)
            if problem:
                problems.append(problem)
    return problems
