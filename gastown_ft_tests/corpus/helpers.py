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


def source_rows(reader, root, projects) -> list[dict]:
    """Document rows (as the corpus stages store them) of one reader over a town."""
    from gastown_ft.config import TownConfig
    from gastown_ft.corpus.documents import ReadLog, documents_to_table
    from gastown_ft.corpus.scan import TownScan

    docs = list(reader(TownScan(TownConfig(root=root, claude_projects_dir=projects)), ReadLog()))
    return documents_to_table(docs).to_pylist()
