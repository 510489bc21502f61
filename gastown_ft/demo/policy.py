"""The demo town's registry and operator policy: `mayor/rigs.json`, `mayor/town.json`, each rig's
`config.json`, role directives and formula overlays, at town and rig level.

Layout and formats follow gastown's docs/design/architecture.md ("Directory Structure") and
directives-and-overlays.md: directives are `directives/<role>.md` (town and rig text concatenate,
the rig's last), overlays are `formula-overlays/<formula>.toml` with `[[step-overrides]]`
(a rig overlay replaces the town's for that formula). Overlay step ids name real steps of the
demo's formulas.
"""

from __future__ import annotations

import json
from datetime import timedelta

from gastown_ft.demo import tomlout
from gastown_ft.demo.world import World, iso


def _json(data: dict) -> str:
    return json.dumps(data, indent=2) + "\n"


def registry_files(w: World) -> dict[str, str]:
    """`mayor/town.json`, `mayor/rigs.json` and each rig's `config.json`, by path from the town root."""
    created = w.day - timedelta(days=21)
    rigs = {
        r.name: {
            "git_url": r.remote,
            "added_at": iso(created + timedelta(hours=2 + i)),
            "beads": {"repo": "local", "prefix": r.prefix.rstrip("-")},
        }
        for i, r in enumerate(w.rigs)
    }
    files = {
        "mayor/town.json": _json({"type": "town", "version": 2, "name": "demo", "created_at": iso(created)}),
        "mayor/rigs.json": _json({"version": 1, "rigs": rigs}),
    }
    for r in w.rigs:
        files[f"{r.name}/config.json"] = _json(
            {
                "type": "rig",
                "version": 1,
                "name": r.name,
                "git_url": r.remote,
                "default_branch": "main",
                "beads": {"prefix": r.prefix.rstrip("-")},
            }
        )
    return files


def directive_files(w: World) -> dict[str, str]:
    """Role directives: town-wide for polecats and the witness, rig-level for one role per rig."""
    ledger, courier = w.rigs[0].name, w.rigs[1].name
    return {
        "directives/polecat.md": """## PR Review Policy

Do NOT post review comments directly to GitHub with `gh pr review`. Report findings back in
the conversation as a structured summary, and file anything worth fixing as a bead with
`bd create "..." --deps discovered-from:<your issue>`.

## Before `gt done`
Run the rig's gates locally and commit everything. `gt done` with a dirty worktree is a failed
handoff: the refinery will bounce it and the witness will nudge you.
""",
        "directives/witness.md": """## Nudges before escalations

A polecat that is quiet for 20 minutes gets one `gt nudge`. Quiet for another 20 minutes after
the nudge: `gt escalate -s MEDIUM` with the last lines of its session, never a kill.
""",
        f"{ledger}/directives/polecat.md": """## Money in ledger

Amounts are `decimal.Decimal` end to end. A change that touches `ledger/money.py` needs a test
with a currency that has no minor units (JPY) and one with three (BHD) before `gt done`.
""",
        f"{courier}/directives/refinery.md": """## Merging in courier

Run `go test -race ./...` on the rebased branch, not only `go test ./...`: anything under
`internal/dlq` that merges without `-race` is reverted. Payload bodies never go into merge notes.
""",
    }


def overlay_files(w: World) -> dict[str, str]:
    """Formula overlays: the town's for mol-polecat-work, replaced in the first rig by its own."""
    ledger = w.rigs[0].name
    town = {
        "step-overrides": [
            {
                "step_id": "submit",
                "mode": "append",
                "description": "Mention the convoy id in the MR description when the bead is in one.",
            },
            {"step_id": "check-mail", "mode": "skip"},
        ]
    }
    rig = {
        "step-overrides": [
            {
                "step_id": "test",
                "mode": "replace",
                "description": "Run `uv run pytest -q` and `uv run ruff check .`; both must pass before "
                "pre-verify.",
            },
        ]
    }
    return {
        "formula-overlays/mol-polecat-work.toml": tomlout.dumps(town, "Town overlay for mol-polecat-work."),
        f"{ledger}/formula-overlays/mol-polecat-work.toml": tomlout.dumps(
            rig, "Ledger overlay: replaces the town's overlay for this rig."
        ),
    }


def redirect_text(depth: int) -> str:
    """A `.beads/redirect` pointing back to the canonical clone's `.beads` from `depth` levels
    below the rig directory (rig: 0, refinery/rig and crew/<name>: 2, polecats/<name>/<rig>: 3)."""
    return "../" * depth + "mayor/rig/.beads\n"
