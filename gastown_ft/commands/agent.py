"""`gastown-ft agent`: the command group lives with the agent runtime (gastown_ft.agent.cli)."""

from __future__ import annotations

from gastown_ft.agent.cli import register

__all__ = ["register"]
