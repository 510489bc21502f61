"""Role questions answered from the town's conventions: CLAUDE.md, AGENTS.md, role templates,
slash commands and skills.

Each Markdown section becomes a question in the voice of the role the file speaks to, answered with
the section itself. Headings about the moments that matter most (finishing work, merging,
escalating, handing off, shutting down) get the questions an agent would actually ask.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

from gastown_ft.corpus.examples import assistant, make_example, user

TASK = "convention_qa"
QA_KINDS = frozenset({"claude_md", "agents_md", "role_template", "command", "skill", "prime", "directive"})
MIN_SECTION_CHARS = 80
MAX_SECTION_CHARS = 6000
_HEADING = re.compile(r"^(#{1,4})\s+(.+?)\s*#*\s*$")
_TEMPLATE_TAG = re.compile(r"\{\{[-\s]*(?:if|end|else|range|with|template|define|block)\b[^}]*\}\}")

# Heading keywords -> the question an agent in that role would ask.
INTENTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("done", "complet", "finish", "submit"), "What do I do when my work is done?"),
    (("escalat",), "How and when do I escalate?"),
    (("merge", "refinery", "queue"), "Who merges work, and how does it get merged?"),
    (("handoff", "hand off", "handing off"), "How do I hand off my session?"),
    (("shutdown", "shut down", "stop"), "How is the town shut down safely?"),
    (("hook", "propulsion", "gupp"), "What do I do when there is work on my hook?"),
    (("mail", "nudge", "communicat"), "How do I communicate with other agents?"),
    (("stuck", "blocked", "stall"), "What do I do when I am stuck or blocked?"),
    (("startup", "start", "prime", "session begin"), "What do I do at the start of a session?"),
    (("bead", "issue", "track"), "How do I track work in beads?"),
)


def sections(markdown: str) -> Iterator[tuple[list[str], str]]:
    """(heading path, body) for each section; code fences are not mistaken for headings."""
    path: list[tuple[int, str]] = []
    body: list[str] = []
    fenced = False

    def flush():
        text = "\n".join(body).strip()
        if path and text:
            yield [h for _, h in path], text

    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        m = None if fenced else _HEADING.match(line)
        if m:
            yield from flush()
            body = []
            level = len(m.group(1))
            path = [(lvl, h) for lvl, h in path if lvl < level] + [(level, m.group(2).strip("* `"))]
        else:
            body.append(line)
    yield from flush()


def question_for(heading: str, role: str | None, kind: str, name: str) -> str:
    lower = heading.lower()
    who = f"As the {role}, " if role else ""
    for words, question in INTENTS:
        if any(w in lower for w in words):
            return f"{who}{question[0].lower() if who else question[0]}{question[1:]} ({heading})"
    if kind == "command":
        return f"What does the `/{name}` command tell me to do about {heading.lower()}?"
    if kind == "skill":
        return f"In the {name} skill, what is the guidance on {heading.lower()}?"
    if kind == "directive":  # the operator's policy for a role, on top of its template
        return f"{who}{'w' if who else 'W'}hat does the operator's directive say about {heading.lower()}?"
    return f"{who}{'w' if who else 'W'}hat are the conventions for {heading.lower()}?"


def build_convention_examples(
    rows: Iterable[dict[str, Any]], *, weight: float = 1.0
) -> Iterator[dict[str, Any]]:
    for row in rows:
        meta = json.loads(row["meta"]) if isinstance(row.get("meta"), str) else row.get("meta") or {}
        kind = row.get("kind") or meta.get("kind")
        if kind not in QA_KINDS:
            continue
        name = (meta.get("file") or row["path"]).rsplit("/", 1)[-1].split(".", 1)[0]
        if name.upper() == "SKILL":
            name = row["path"].rstrip("/").split("/")[-2]
        text = _TEMPLATE_TAG.sub("", row["text"])
        for headings, body in sections(text):
            if len(body) < MIN_SECTION_CHARS:
                continue
            answer = body if len(body) <= MAX_SECTION_CHARS else body[:MAX_SECTION_CHARS].rsplit("\n", 1)[0]
            question = question_for(headings[-1], row.get("role"), kind, name)
            yield make_example(
                task=TASK,
                messages=[user(question), assistant(answer)],
                group_id=f"convention:{row['path']}",
                source_ids=[row["doc_id"]],
                rig=row.get("rig"),
                role=row.get("role"),
                weight=weight,
                source_time=row.get("mtime") or 0.0,
            )
