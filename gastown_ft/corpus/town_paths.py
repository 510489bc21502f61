"""How a town's root is spelled in its files: as configured, resolved through symlinks, and in
Claude Code's project-folder names (the transcripts reader, the town check and the scrub agree on it)."""

from __future__ import annotations

import os
import re
from pathlib import Path


def encode_project_dir(path: str | os.PathLike) -> str:
    """Claude Code's directory name for a cwd: every character outside [A-Za-z0-9] becomes '-'."""
    return re.sub(r"[^A-Za-z0-9]", "-", str(path))


def root_variants(root: Path) -> list[Path]:
    """The root as configured (absolute, ~ expanded) and, where it differs, resolved through links."""
    p = Path(os.path.expanduser(str(root))).absolute()
    try:
        r = p.resolve()
    except OSError:
        return [p]
    return [p] if r == p else [p, r]
