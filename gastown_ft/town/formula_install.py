"""`gastown-ft formula install`: the training recipe as a formula in the town's `.beads/formulas/`.

Where a town looks for formulas (docs/design/formula-resolution.md): a rig's `.beads/formulas/` (the
canonical clone's `mayor/rig/.beads/formulas/`), then the town's `.beads/formulas/`, then the copies
embedded in `gt`. The town tier makes it available to every rig: `bd mol pour mol-gastown-ft-train`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from gastown_ft import atomic
from gastown_ft.corpus.scan import CANONICAL_CLONE
from gastown_ft.errors import GastownFTError
from gastown_ft.town.formula_check import formula_problems

FORMULA = "mol-gastown-ft-train"
FILENAME = f"{FORMULA}.formula.toml"


def packaged_formula() -> Path:
    return Path(str(resources.files("gastown_ft") / "data" / "formulas" / FILENAME))


def formulas_dir(town_root: Path, rig: str | None = None) -> Path:
    """The town's `.beads/formulas/`, or a rig's (in its canonical clone, where its beads live)."""
    if rig:
        if not (town_root / rig).is_dir():
            raise GastownFTError(f"no rig {rig!r} in the town at {town_root}")
        return town_root / rig / Path(*CANONICAL_CLONE) / ".beads" / "formulas"
    if not (town_root / ".beads").is_dir():
        raise GastownFTError(
            f"{town_root} has no .beads/: not a Gas Town town root",
            hint="set [town] root in the config to the directory `gt install` created",
        )
    return town_root / ".beads" / "formulas"


def install_formula(town_root: Path, rig: str | None = None, force: bool = False) -> tuple[Path, str]:
    """Copy the formula in; returns (path, "installed" | "updated" | "unchanged")."""
    source = packaged_formula()
    problems = formula_problems(source)
    if problems:  # a broken recipe must never reach a town
        raise GastownFTError(f"the packaged {FILENAME} does not validate: " + "; ".join(problems))
    text = source.read_text(encoding="utf-8")
    dest = formulas_dir(town_root, rig) / FILENAME
    if dest.exists():
        if dest.read_text(encoding="utf-8") == text:
            return dest, "unchanged"
        if not force:
            raise GastownFTError(
                f"{dest} exists and differs from this version's formula",
                hint="pass --force to replace it (a local edit belongs in formula-overlays/ instead)",
            )
    state = "updated" if dest.exists() else "installed"
    atomic.write_text(dest, text)
    return dest, state
