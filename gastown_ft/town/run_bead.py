"""The `bd` command lines for a run's bead, and where `bd` runs for the configured rig or the town.

bd finds its database from the directory it runs in: the town root holds the town's beads (`hq-`),
a rig's canonical clone `<town>/<rig>/mayor/rig` holds the rig's (architecture.md, "Beads Routing").
Every command names the bead explicitly (bd's "last touched issue" default is someone else's state)
and passes `--actor`, so the audit trail says who changed it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from gastown_ft.corpus.scan import CANONICAL_CLONE

PRIORITY = "2"  # bd's default: normal work
BEAD_TYPE = "task"
_CREATED = re.compile(r"(?:Created issue|Created)[:\s]+([A-Za-z][\w]*-[\w.]+)")
_BEAD_ID = re.compile(r"^[A-Za-z][\w]*-[\w.]+$")


def beads_dir(town_root: Path, rig: str | None) -> Path:
    """The directory bd runs in: the town root, or the rig's canonical clone (else the rig directory)."""
    if not rig:
        return town_root
    clone = town_root / rig / Path(*CANONICAL_CLONE)
    return clone if clone.is_dir() else town_root / rig


def create_args(title: str, description: str, labels: list[str], actor: str) -> list[str]:
    args = ["create", title, "--type", BEAD_TYPE, "--priority", PRIORITY]
    if labels:
        args += ["--labels", ",".join(labels)]
    return [*args, "--description", description, "--actor", actor, "--json"]


def status_args(bead: str, status: str, actor: str) -> list[str]:
    return ["update", bead, "--status", status, "--actor", actor]


def comment_args(bead: str, text: str, actor: str) -> list[str]:
    return ["comments", "add", bead, text, "--actor", actor]


def close_args(bead: str, reason: str, actor: str) -> list[str]:
    return ["close", bead, "--reason", reason, "--actor", actor]


def parse_created_id(stdout: str) -> str | None:
    """The new bead's id from `bd create --json` (legacy object or the `{schema_version, data}`
    envelope, docs/JSON_SCHEMA.md), else from the text `Created issue: <id>`."""
    text = stdout.strip()
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    if isinstance(obj, dict):
        data = obj.get("data") if isinstance(obj.get("data"), dict) else obj
        bead = data.get("id")
        if isinstance(bead, str) and _BEAD_ID.match(bead):
            return bead
    m = _CREATED.search(text)
    return m.group(1) if m else None
