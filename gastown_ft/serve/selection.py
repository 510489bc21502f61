"""Which model `serve` loads: the promoted version by default, or what `--model` names."""

from __future__ import annotations

from pathlib import Path

from gastown_ft.errors import GastownFTError
from gastown_ft.export.registry import _VERSION_RE, MERGED_DIR, Registry, embedded_base_notice, model_base
from gastown_ft.serve.engine import ModelChoice

NO_PROMOTED_HINT = (
    "promote an evaluated export with `gastown-ft models promote VERSION` (`gastown-ft models list` shows "
    "them), or run `make demo` for a complete demo model; `--model DIR` serves a model directory directly"
)


def choose_model(
    registry: Registry, spec: str | None, *, follow: bool = True
) -> tuple[ModelChoice, list[str]]:
    """The model to serve and any warnings for the operator.

    No spec: the promoted version, followed through later promotions and rollbacks when `follow`.
    A spec: a directory (an export bundle with merged/, or a model directory), else a version id.
    """
    if spec is None:
        current = registry.current()
        if current is None:
            raise GastownFTError(f"no model version is promoted in {registry.root}", hint=NO_PROMOTED_HINT)
        return ModelChoice(current.merged_dir, current.version, registry if follow else None), []
    path = Path(spec).expanduser()
    if path.is_dir():
        merged = path / MERGED_DIR if (path / MERGED_DIR / "config.json").is_file() else path
        return ModelChoice(merged.resolve()), []
    if not _VERSION_RE.match(spec):
        raise GastownFTError(
            f"--model {spec!r} is neither a directory nor a version id",
            hint="use a version like v3, or a path",
        )
    mv = registry.get(spec)
    warnings = []
    current = registry.current()
    if current is None or current.version != mv.version:
        warnings.append(f"{mv.version} is not the promoted version; this server stays on it")
    if not mv.eval_passed:
        warnings.append(f"{mv.version} did not pass its evaluation")
    return ModelChoice(mv.merged_dir, mv.version), warnings


def base_notice(choice: ModelChoice, registry: Registry | None = None) -> str | None:
    """A plain warning when the chosen model was tuned from the tiny embedded base, else None.

    A registry version says so in its manifest; a model directory in the export's records beside it
    (the version manifest above a bundle, or merge.json)."""
    if choice.version is not None and registry is not None:
        try:
            return registry.get(choice.version).base_notice
        except GastownFTError:
            pass
    base, parameters = model_base(choice.path)
    return embedded_base_notice(base, parameters)
