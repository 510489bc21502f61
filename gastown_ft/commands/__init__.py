"""Command groups beyond the core ones in `gastown_ft.cli`, one module each, each with `register(app)`.

Kept apart so that evaluation, the model registry, serving and swarm peers stay readable on their own.
Inside a command, reach the shared pieces lazily: `from gastown_ft.cli import console, settings_for_command`.
"""

from __future__ import annotations

import importlib

MODULES = ("evaluate", "models", "serve", "peer", "formula", "agent")


def register_all(app) -> None:
    for name in MODULES:
        importlib.import_module(f"gastown_ft.commands.{name}").register(app)
