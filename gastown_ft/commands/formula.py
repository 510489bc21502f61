"""`gastown-ft formula install`: put the `mol-gastown-ft-train` formula into the town."""

from __future__ import annotations

from typing import Annotated

import typer

formula_app = typer.Typer(
    no_args_is_help=True, help="The training recipe as a Gas Town formula (mol-gastown-ft-train)."
)


@formula_app.command("install")
def install_cmd(
    rig: Annotated[
        str | None, typer.Option(help="Install into this rig's formulas instead of the town's.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a different copy already there.")] = False,
) -> None:
    """Copy mol-gastown-ft-train into the town's .beads/formulas/ (validated first), so that any agent
    can pour it: `bd mol pour mol-gastown-ft-train --var config=...`."""
    from gastown_ft.cli import console, settings_for_command
    from gastown_ft.town.formula_install import FORMULA, install_formula

    settings = settings_for_command(None)
    path, state = install_formula(settings.town.root, rig=rig, force=force)
    console.print(f"{FORMULA}: {state} at {path}", highlight=False, markup=False)
    cfg = settings.config_path or "gastown-ft.toml"
    console.print(f"pour it:   bd mol pour {FORMULA} --var config={cfg}", highlight=False, markup=False)
    console.print(
        f"sling it:  gt sling {FORMULA} <rig>/crew/<name> --var config={cfg}", highlight=False, markup=False
    )


def register(app) -> None:
    app.add_typer(formula_app, name="formula")
