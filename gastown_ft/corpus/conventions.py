"""Conventions: the texts that tell agents how to behave in a town.

CLAUDE.md / AGENTS.md (at any level), role templates (`*.md.tmpl`), `.claude/commands`, skills,
role configs (`config/roles/*.toml`), role directives, formula overlays, `gt prime` text and docs.
Each file is one document whose kind says which of these it is, with the role it speaks to where that
is clear.

Directives (`directives/<role>.md`) and formula overlays (`formula-overlays/<formula>.toml`) are the
operator's policy (directives-and-overlays.md in gastown), at town level (`<town>/directives/`) or rig
level (`<town>/<rig>/directives/`). Their meta says the role, the scope ("town" or the rig) and how the
two levels combine: directives concatenate (the rig's last), a rig overlay replaces the town's.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

from gastown_ft.corpus.documents import Document, ReadLog
from gastown_ft.corpus.files import file_mtime, read_text
from gastown_ft.corpus.formulas import is_formula_file
from gastown_ft.corpus.roles import ROLES
from gastown_ft.corpus.scan import TownScan

SOURCE = "conventions"
_ROLE_WORD = re.compile(r"[a-z]+")
DIRECTIVES_DIR = "directives"
OVERLAYS_DIR = "formula-overlays"


def convention_kind(path: Path) -> str | None:
    """Which kind of convention file this is, or None when it is not one."""
    name = path.name
    lower = name.lower()
    parts = path.parts
    if is_formula_file(path):
        return None
    if lower == "claude.md" or lower.endswith("-claude.md"):
        return "claude_md"
    if name in ("AGENTS.md", "AGENT_INSTRUCTIONS.md") or lower.endswith("-agents.md"):
        return "agents_md"
    if lower.endswith(".md") and len(parts) >= 2 and parts[-2] == DIRECTIVES_DIR:
        return "directive"
    if lower.endswith(".md.tmpl"):
        return "role_template" if "roles" in parts else "message_template"
    if lower.endswith(".md") and "commands" in parts:
        return "command"
    if lower.endswith(".md") and "skills" in parts:
        return "skill"
    if lower.endswith(".toml") and "roles" in parts and "config" in parts:
        return "role_config"
    if lower.endswith(".toml") and (OVERLAYS_DIR in parts or "contrib-harnesses" in parts):
        return "formula_overlay"
    if name == "PRIME.md":
        return "prime"
    if lower.endswith(".md") and "formulas" in parts:
        return "formula_doc"
    if lower.endswith(".md") and ("docs" in parts or "contrib-harnesses" in parts):
        return "doc"
    return None


def is_convention_file(path: Path) -> bool:
    return convention_kind(path) is not None


def role_of(rel: str) -> str | None:
    """The role a file speaks to, from its name or its directory (mayor/CLAUDE.md, polecat.md.tmpl)."""
    parts = rel.lower().split("/")
    words = _ROLE_WORD.findall(parts[-1])
    for w in words:
        if w in ROLES:
            return w
    for p in reversed(parts[:-1]):
        if p in ROLES:
            return p
        if p == "polecats":
            return "polecat"
    return None


def policy_scope(rel: str, rig: str | None) -> str | None:
    """Where a directive or overlay applies: "town" (`directives/x.md`), the rig (`<rig>/directives/x.md`),
    or None for one inside a repository (an example, a contrib harness)."""
    parts = rel.split("/")
    if len(parts) == 2 and parts[0] in (DIRECTIVES_DIR, OVERLAYS_DIR):
        return "town"
    if rig and len(parts) == 3 and parts[0] == rig and parts[1] in (DIRECTIVES_DIR, OVERLAYS_DIR):
        return rig
    return None


def _policy_meta(kind: str, rel: str, rig: str | None, role: str | None, overlays: dict) -> dict:
    scope = policy_scope(rel, rig)
    if scope is None:
        return {}
    meta: dict = {"scope": scope, "role": role}
    name = rel.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    if kind == "directive":
        meta["precedence"] = "concatenate"  # town text, then the rig's: the rig has the last word
    else:
        meta["formula"] = name
        meta["precedence"] = "replace"  # a rig overlay replaces the town's for that formula
        if scope == "town":
            meta["replaced_in"] = sorted(r for (r, f) in overlays if f == name and r != "town")
    return meta


def read_conventions(scan: TownScan, log: ReadLog) -> Iterator[Document]:
    paths = sorted(scan.matching(is_convention_file, log, SOURCE))
    overlays = {
        (scope, p.name.rsplit(".", 1)[0])
        for p in paths
        if convention_kind(p) == "formula_overlay"
        and (scope := policy_scope(scan.rel(p), scan.provenance(p)[0])) is not None
    }
    for path in paths:
        kind = convention_kind(path)
        rel = scan.rel(path)
        rig, commit = scan.provenance(path)
        # Inside a canonical clone the role comes from the repo path (not from `mayor/rig`).
        role = role_of(scan.path_in_repo(path))
        text = read_text(
            path, log, SOURCE, max_bytes=scan.max_bytes, rel=rel, rig=rig, strict=path.suffix == ".toml"
        )
        if text is None:
            continue
        meta: dict = {"kind": kind, "file": path.name, **_policy_meta(kind, rel, rig, role, overlays)}
        if path.suffix == ".toml":
            try:
                meta["parsed"] = tomllib.loads(text)
            except tomllib.TOMLDecodeError as e:
                log.quarantine(SOURCE, rel, "invalid_toml", str(e), rig=rig)
                continue
        headings = [
            ln.lstrip("#").strip()
            for ln in text.splitlines()
            if ln.startswith("#") and not ln.startswith("#!")
        ][:40]
        meta["headings"] = headings
        title = headings[0] if headings and path.suffix != ".toml" else path.name
        yield Document(
            source=SOURCE,
            kind=kind,
            path=rel,
            text=text,
            title=f"{kind}: {title}"[:200],
            rig=rig,
            commit=commit,
            mtime=file_mtime(path),
            role=role,
            key=rel,
            meta=meta,
        )
