"""Where a result came from: the project's own version and git commit."""

from __future__ import annotations

import subprocess
from pathlib import Path

from gastown_ft import __version__

PACKAGE_DIR = Path(__file__).resolve().parent


def project_commit() -> str | None:
    """The git commit of the gastown-ft checkout this code runs from (None when installed from a wheel)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(PACKAGE_DIR), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def project_version() -> dict[str, str | None]:
    return {"version": __version__, "commit": project_commit()}
