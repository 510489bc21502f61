"""`gastown-ft models`: list, show, promote and roll back the exported model versions."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

models_app = typer.Typer(
    no_args_is_help=True,
    help="The model registry: every export is a version; the promoted one is what `serve` uses.",
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _registry():
    from gastown_ft.cli import settings_for_command
    from gastown_ft.export.registry import Registry, registry_root

    return Registry(registry_root(settings_for_command(None)))


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _eval_text(manifest: dict[str, Any]) -> str:
    ev = manifest.get("eval") or {}
    return "passed" if ev.get("passed") is True else ("failed" if "passed" in ev else "none")


def _base_name(manifest: dict[str, Any]) -> str:
    base = manifest.get("base_model")
    return str(base.get("name", "?")) if isinstance(base, dict) else str(base or "?")


def _base_cell(v) -> str:
    return _base_name(v.manifest) + (" (TINY, for tests)" if v.base_is_embedded else "")


@models_app.command("list")
def list_cmd(as_json: JsonOpt = False) -> None:
    """Every registered version, oldest first; * marks the promoted one."""
    from rich.table import Table

    from gastown_ft.cli import console

    reg = _registry()
    versions = reg.versions()
    current = reg.current()
    cur = current.version if current else None
    if as_json:
        rows = [{**v.to_dict(), "promoted": v.version == cur, "base_notice": v.base_notice} for v in versions]
        sys.stdout.write(json.dumps(rows, indent=2, default=str) + "\n")
        return
    if not versions:
        console.print(f"no versions in {reg.root} yet: an export registers one")
        return
    table = Table(title=f"model versions ({reg.root})")
    for col in ("", "version", "created", "corpus", "base model", "eval", "size"):
        table.add_column(col)
    for v in versions:
        table.add_row(
            "*" if v.version == cur else "",
            v.version,
            str(v.created or "?")[:16].replace("T", " "),
            str(v.manifest.get("corpus_version") or "?")[:16],
            _base_cell(v),
            _eval_text(v.manifest),
            _size(v.size_bytes),
        )
    console.print(table)
    console.print(f"promoted: {cur}" if cur else "promoted: none (`gastown-ft models promote VERSION`)")
    tiny = [v for v in versions if v.base_is_embedded]
    if tiny:
        names = ", ".join(v.version + (" (promoted)" if v.version == cur else "") for v in tiny)
        notice = (current if current is not None and current.base_is_embedded else tiny[-1]).base_notice
        console.print(f"[yellow]warning:[/yellow] {names}: {notice}", highlight=False)


@models_app.command("show")
def show_cmd(
    version: Annotated[str, typer.Argument(help="A version id, e.g. v3.")],
    verify: Annotated[bool, typer.Option("--verify", help="Check every file against its sha256.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """One version: provenance, evaluation, files."""
    from gastown_ft.cli import console

    reg = _registry()
    mv = reg.get(version)
    current = reg.current()
    data = {
        **mv.to_dict(),
        "promoted": current is not None and current.version == mv.version,
        "base_notice": mv.base_notice,
    }
    if verify:
        data["problems"] = reg.verify(mv.version)
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        return
    m = mv.manifest
    base = m.get("base_model") if isinstance(m.get("base_model"), dict) else {}
    ev = m.get("eval") or {}
    lines = [
        f"{mv.version}{'  (promoted)' if data['promoted'] else ''}",
        f"  created       {m.get('created')}   registered {m.get('registered_at')}",
        f"  corpus        {m.get('corpus_version') or '?'}",
        f"  base model    {_base_name(m)}  {base.get('fingerprint', '')}",
    ]
    if mv.base_notice:
        lines.append(f"  WARNING       {mv.base_notice}")
    lines += [
        f"  eval          {_eval_text(m)}",
    ]
    lines += [f"    {k} = {v}" for k, v in sorted((ev.get("metrics") or {}).items())]
    lines.append(f"  content       {m.get('content_id')}")
    lines.append(f"  model dir     {mv.merged_dir}")
    lines.append(f"  files ({_size(mv.size_bytes)})")
    lines += [f"    {rel}  {_size(f['bytes'])}" for rel, f in sorted(m.get("files", {}).items())]
    if verify:
        lines.append(
            "  integrity     " + ("; ".join(data["problems"]) or "ok: every file matches its sha256")
        )
    console.print("\n".join(lines), highlight=False)


@models_app.command("promote")
def promote_cmd(version: Annotated[str, typer.Argument(help="A version id, e.g. v3.")]) -> None:
    """Make a version the one `serve` uses (its evaluation must have passed)."""
    from gastown_ft.cli import console

    reg = _registry()
    before = reg.current()
    mv = reg.promote(version)
    if before is not None and before.version == mv.version:
        console.print(f"{mv.version} is already the promoted version")
        return
    console.print(
        f"promoted {mv.version}"
        + (f" (was {before.version})" if before else "")
        + "; a running `gastown-ft serve` switches to it on its next request"
    )


@models_app.command("rollback")
def rollback_cmd() -> None:
    """Go back to the version promoted before the current one."""
    from gastown_ft.cli import console

    reg = _registry()
    before = reg.current()
    mv = reg.rollback()
    console.print(
        f"rolled back from {before.version if before else '?'} to {mv.version}; "
        "a running `gastown-ft serve` switches to it on its next request"
    )


@models_app.command("history")
def history_cmd(as_json: JsonOpt = False) -> None:
    """Every registration, promotion and rollback: when, by whom."""
    from gastown_ft.cli import console

    events = _registry().history()
    if as_json:
        sys.stdout.write(json.dumps(events, indent=2) + "\n")
        return
    if not events:
        console.print("no registry events yet")
    for e in events:
        prev = f" (was {e['previous']})" if e.get("previous") else ""
        console.print(
            f"{e.get('at')}  {e.get('event'):<8} {e.get('version')}{prev}  by {e.get('by')}", highlight=False
        )


def register(app) -> None:
    app.add_typer(models_app, name="models")
