"""The Tier 1 preset that registers `gastown-ft agent` with Gas Town (`settings/agents.json`).

Per ../shared/gastown-samples/gastown/docs/agent-provider-integration.md ("Tier 1: Preset
Registration"): an `AgentRegistry` (`{"version": 1, "agents": {name: AgentPresetInfo}}`) at town level
(`<town>/settings/agents.json`, every rig) or rig level (`<town>/<rig>/settings/agents.json`); Gas Town
looks the agent name up there when a rig, a role or `gt sling ... --agent <name>` asks for it.

What the preset says about this runtime:
- `command`/`args`: `gastown-ft agent --base-url ... --model ... --no-confirm`: autonomous (Gas Town runs
  polecats unattended, so a command the policy holds is not run rather than waiting for a person);
- `prompt_mode: "arg"`: Gas Town passes the work instructions as the last argument;
- `ready_prompt_prefix`: the agent shows `gastown-ft> ` when it waits for input, so Gas Town's tmux
  readiness check and nudges (typed into the pane) work; `ready_delay_ms` is the fallback;
- `process_names`: a Python console script; tmux may report the script or the interpreter;
- no hooks, no resume, no session forking (the runtime has none): `gt prime` runs at start instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gastown_ft import atomic
from gastown_ft.errors import GastownFTError

AGENT_NAME = "gastown-ft"
READY_PROMPT = "gastown-ft> "
REGISTRY_VERSION = 1


def preset(
    base_url: str, model: str, *, name: str = AGENT_NAME, extra_args: list[str] | None = None
) -> dict[str, Any]:
    """One `AgentPresetInfo` entry."""
    return {
        "name": name,
        "command": "gastown-ft",
        "args": ["agent", "--base-url", base_url, "--model", model, "--no-confirm", *(extra_args or [])],
        "process_names": ["gastown-ft", "python3", "python"],
        "prompt_mode": "arg",
        "ready_prompt_prefix": READY_PROMPT,
        "ready_delay_ms": 3000,
        "supports_hooks": False,
        "supports_fork_session": False,
        "instructions_file": "AGENTS.md",
    }


def registry(entry: dict[str, Any]) -> dict[str, Any]:
    return {"version": REGISTRY_VERSION, "agents": {entry["name"]: entry}}


def registry_path(town: Path, rig: str | None = None) -> Path:
    return (Path(town) / rig if rig else Path(town)) / "settings" / "agents.json"


def write_preset(path: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """Adds (or replaces) the entry in an agents.json, keeping every other agent; returns the file's data."""
    path = Path(path)
    data: dict[str, Any] = {"version": REGISTRY_VERSION, "agents": {}}
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8") or "{}")
        except json.JSONDecodeError as e:
            raise GastownFTError(
                f"{path} is not valid JSON ({e})", hint="fix or move it, then run this again"
            ) from e
        if not isinstance(data, dict) or data.get("version", REGISTRY_VERSION) != REGISTRY_VERSION:
            raise GastownFTError(
                f"{path} is not a version {REGISTRY_VERSION} agent registry",
                hint='this Gas Town expects {"version": 1, "agents": {...}}',
            )
        data.setdefault("version", REGISTRY_VERSION)
        if not isinstance(data.setdefault("agents", {}), dict):
            raise GastownFTError(f"{path}: `agents` is not an object")
    data["agents"][entry["name"]] = entry
    atomic.write_text(path, json.dumps(data, indent=2) + "\n")  # a reader (gt) never sees half a file
    return data
