"""Which Gas Town agent a path, an actor name or a primed prompt belongs to.

One vocabulary for every reader (see ../shared/gastown-reference/README.md):

| where / actor                    | role     | rig   | agent  |
|----------------------------------|----------|-------|--------|
| `mayor/...`, `mayor`             | mayor    | -     | -      |
| `deacon/...`, `deacon`           | deacon   | -     | -      |
| `deacon/dogs/<name>/...`         | dog      | -     | name   |
| `deacon/dogs/boot/...`, `boot`   | boot     | -     | boot   |
| `<rig>/witness/...`              | witness  | rig   | -      |
| `<rig>/refinery/...`             | refinery | rig   | -      |
| `<rig>/polecats/<name>/...`      | polecat  | rig   | name   |
| `<rig>/crew/<name>/...`          | crew     | rig   | name   |
| `<rig>/mayor/...` (mayor's clone)| mayor    | rig   | -      |
| `<rig>/...` anything else        | None     | rig   | -      |

Every function returns `(role, rig, agent)`, with None for what it cannot tell, and never raises.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from gastown_ft.corpus.scan import TOWN_DIRS as _TOWN_DIRS  # town-level directories that are not rigs

ROLES = ("mayor", "deacon", "witness", "refinery", "polecat", "crew", "dog", "boot")

RoleInfo = tuple[str | None, str | None, str | None]
NONE: RoleInfo = (None, None, None)

# Actor names that are a role on their own (no rig, no name).
_SINGLE_ACTORS = {
    "mayor": "mayor",
    "deacon": "deacon",
    "boot": "boot",
    "dog": "dog",
    "witness": "witness",
    "refinery": "refinery",
    "polecat": "polecat",
    "crew": "crew",
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# How much of a primed prompt is looked at: `gt prime` output opens the first user message.
PRIME_CHARS = 64 * 1024


def _name(s: str | None) -> str | None:
    return s if s and _NAME.match(s) else None


def role_from_path(rel_parts: Sequence[str]) -> RoleInfo:
    """Role, rig and agent name for a directory given as its parts relative to the town root."""
    parts = [p for p in rel_parts if p and p != "."]
    if not parts:
        return NONE
    top = parts[0]
    if top.startswith(".") or top == "..":
        return NONE
    if top == "mayor":
        return "mayor", None, None
    if top == "deacon":
        if len(parts) >= 3 and parts[1] == "dogs" and _name(parts[2]):
            name = parts[2]
            return ("boot" if name == "boot" else "dog"), None, name
        if len(parts) >= 2 and parts[1] == "boot":
            return "boot", None, "boot"
        return "deacon", None, None
    if top in _TOWN_DIRS or not _name(top):
        return NONE
    rig = top
    if len(parts) == 1:
        return None, rig, None
    sub = parts[1]
    if sub == "witness":
        return "witness", rig, None
    if sub == "refinery":
        return "refinery", rig, None
    if sub == "mayor":
        return "mayor", rig, None
    if sub in ("polecats", "crew") and len(parts) >= 3 and _name(parts[2]):
        return ("polecat" if sub == "polecats" else "crew"), rig, parts[2]
    return None, rig, None


def role_from_actor(actor: str | None) -> RoleInfo:
    """Role, rig and agent for an actor as Gas Town writes it (`gastown/polecats/nux`, `mayor`, ...).

    A two-part `<rig>/<name>` (the short polecat address) gives the rig and the name, role unknown.
    A free-form name (`Steve Yegge`) gives nothing.
    """
    if not isinstance(actor, str):
        return NONE
    actor = actor.strip().strip("/")
    if not actor or " " in actor:
        return NONE
    parts = actor.split("/")
    if len(parts) == 1:
        role = _SINGLE_ACTORS.get(parts[0].lower())
        return (role, None, None) if role else NONE
    role, rig, agent = role_from_path(parts)
    if (
        role is None
        and rig is not None
        and len(parts) == 2
        and _name(parts[1])
        and parts[1] not in ("polecats", "crew")
    ):
        return None, rig, parts[1]
    return role, rig, agent


# -- primed text ---------------------------------------------------------------------------------
_GT_ENV = re.compile(r"\b(GT_ROLE|GT_RIG|GT_POLECAT|GT_CREW|GT_DOG)\s*[=:]\s*[\"']?([A-Za-z0-9_./-]+)")
_YOUR_ROLE = re.compile(
    r"Your Role:\s*\**\s*(MAYOR|DEACON|WITNESS|REFINERY|POLECAT|CREW(?: WORKER)?|DOG|BOOT)\b"
    r"(?:\s*\(([^)\n]*)\))?",
    re.IGNORECASE,
)
_YOU_ARE = re.compile(
    r"\bYou are (?:the |a |an )?\**(polecat|crew member|crew worker|dog)\**\s+\**([A-Za-z0-9][A-Za-z0-9_.-]*)\**",
    re.IGNORECASE,
)
_IN_RIG = re.compile(r"\bin the \**([A-Za-z0-9][A-Za-z0-9_.-]*)\** rig\b")
_CONTEXT_HEADING = re.compile(
    r"^#\s+(Mayor|Deacon|Witness|Refinery|Polecat|Crew Worker|Crew|Dog|Boot) Context\s*$",
    re.IGNORECASE | re.MULTILINE,
)
_PAREN_WORKER = re.compile(r"(?:Worker:\s*)?([A-Za-z0-9][A-Za-z0-9_.-]*) in ([A-Za-z0-9][A-Za-z0-9_.-]*)")
_PAREN_FOR = re.compile(r"\bfor\s+([A-Za-z0-9][A-Za-z0-9_.-]*)\s*$")


def _role_word(word: str) -> str | None:
    w = word.lower().split()[0]
    return w if w in ROLES else None


def role_from_text(text: str | None) -> RoleInfo:
    """Role, rig and agent from primed text (`gt prime` output): GT_ROLE, 'Your Role:', headings.

    Looks at the first PRIME_CHARS characters only. Strongest evidence first: an explicit
    `GT_ROLE=...`, then the 'Your Role: X (...)' line, then 'You are polecat nux', then a
    '# Witness Context' heading.
    """
    if not isinstance(text, str) or not text:
        return NONE
    text = text[:PRIME_CHARS]
    role = rig = agent = None
    env = {}
    for m in _GT_ENV.finditer(text):
        env.setdefault(m.group(1), m.group(2))
    if "GT_ROLE" in env:
        value = env["GT_ROLE"].strip("/")
        if "/" in value:
            role, rig, agent = role_from_actor(value)
        else:
            role = _SINGLE_ACTORS.get(value.lower())
    rig = rig or _name(env.get("GT_RIG"))
    agent = agent or _name(env.get("GT_POLECAT") or env.get("GT_CREW") or env.get("GT_DOG"))

    m = _YOUR_ROLE.search(text)
    if m:
        found = _role_word(m.group(1))
        role = role or found
        paren = (m.group(2) or "").strip()
        if paren and found == role:
            w = _PAREN_WORKER.search(paren)
            if w and role in ("polecat", "crew"):
                agent = agent or _name(w.group(1))
                rig = rig or _name(w.group(2))
            else:
                f = _PAREN_FOR.search(paren)
                if f and role in ("witness", "refinery"):
                    rig = rig or _name(f.group(1))
    m = _YOU_ARE.search(text)
    if m:
        word = m.group(1).lower()
        found = "polecat" if word == "polecat" else "dog" if word == "dog" else "crew"
        if role in (None, found):
            role = found
            agent = agent or _name(m.group(2))
    if role is None:
        m = _CONTEXT_HEADING.search(text)
        if m:
            role = _role_word(m.group(1))
    if rig is None and role in ("polecat", "crew", "witness", "refinery"):
        m = _IN_RIG.search(text)
        if m:
            rig = _name(m.group(1))
    if role in ("deacon", "dog", "boot"):
        rig = None
    if role == "boot":
        agent = "boot"
    return role, rig, agent
