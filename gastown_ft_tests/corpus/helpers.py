"""Small helpers shared by the corpus tests."""

from __future__ import annotations

import json


def commands(example: dict) -> list[str]:
    """The Bash commands an example's assistant turns call."""
    return [
        json.loads(c["function"]["arguments"])["command"]
        for m in example["messages"]
        for c in m.get("tool_calls") or []
    ]
