"""Small edits of a town, as an operator's day makes them: for the incremental-build tests and benchmark.

Each edit changes files in place the way Gas Town would (a formula edited or deleted, a bead appended
to an issues.jsonl, a session transcript grown by a turn) and returns the path it touched.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path


def formula_files(root: Path) -> list[Path]:
    return sorted(Path(root).rglob("*.formula.toml"))


def edit_formula(path: Path, note: str) -> Path:
    """Prepend a sentence to the formula's description (a comment line when it has none)."""
    text = path.read_text()
    for marker in ('description = """', 'description = "'):
        if marker in text:
            path.write_text(text.replace(marker, f"{marker}{note} ", 1))
            return path
    path.write_text(f"{text.rstrip()}\n# {note}\n")
    return path


def remove_formula(path: Path) -> Path:
    path.unlink()
    return path


def add_bead(issues: Path, bead_id: str, title: str) -> Path:
    """Append a new open task bead, modelled on the file's first bead."""
    first = next(json.loads(line) for line in issues.read_text().splitlines() if line.startswith("{"))
    bead = {
        **first,
        "id": bead_id,
        "title": title,
        "description": f"{title}. Added by an incremental-build check.",
        "status": "open",
        "issue_type": "task",
        "dependencies": [],
    }
    with open(issues, "a") as fh:
        fh.write(json.dumps(bead) + "\n")
    return issues


def grow_transcript(path: Path, text: str) -> Path:
    """Append one more assistant turn to a Claude Code session transcript."""
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    last = next(x for x in reversed(lines) if x.get("type") == "assistant")
    turn = json.loads(json.dumps(last))
    turn["parentUuid"] = lines[-1].get("uuid", last.get("uuid"))
    turn["uuid"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{path}:{text}"))
    turn["message"]["content"] = [{"type": "text", "text": text}]
    with open(path, "a") as fh:
        fh.write(json.dumps(turn) + "\n")
    return path
