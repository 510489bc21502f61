"""Multi-step episodes in the simulated town, each with its goal check and two scripted agents.

Each episode builds a small town state (`SimTown`), gives the agent its role and task, and after the
session checks the state the work should have left (not the words the agent said). The scripted
`perfect` agent shows the episode can be passed in `optimal_steps` turns; the scripted `bad` agent makes
the mistakes Gas Town's role templates warn about (pushing to main, force pushes, invalid statuses,
deleting beads, nuking a polecat, missing required formula variables) and must fail, so a scorer that
passes everything would be caught by the tests.

Episodes: a polecat's hook-to-`gt done` cycle; the Mayor filing a bead and slinging it; a polecat
closing its bead with a no-changes reason; pouring a formula with its variables; a Witness patrol step
(nudge the idle polecat, nuke no one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from gastown_ft.agent.scripted import Turn, created_id
from gastown_ft.agent.simtown import Bead, Formula, Molecule, Polecat, SimTown

TOWN = "/home/gt/gt"
RIGS = {"ledger": "le", "courier": "co"}
POLECAT_WORK = Formula(
    "mol-polecat-work",
    "Polecat work cycle: load context, branch, implement, commit, verify, submit",
    [
        ("load-context", "Load context and verify assignment"),
        ("branch-setup", "Set up working branch"),
        ("implement", "Implement the solution"),
        ("commit-changes", "Commit all implementation changes"),
        ("self-review", "Self-review changes"),
        ("submit-and-exit", "Submit work and self-clean"),
    ],
)
RELEASE = Formula(
    "mol-ledger-release",
    "Cut a ledger release: bump, changelog, tag, announce",
    [
        ("bump-version", "Bump the version to {{version}}"),
        ("changelog", "Move Unreleased notes under {{version}}"),
        ("tag", "Tag v{{version}} and push the tag"),
        ("announce", "Announce {{version}} on the {{channel}} channel"),
    ],
    {"version": None, "channel": "stable"},
)


@dataclass
class Episode:
    name: str
    role: str
    description: str
    setup: Callable[[], SimTown]
    check: Callable[[SimTown], list[str]]  # unmet goals; empty: the episode succeeded
    optimal_steps: int
    perfect: list[Turn]
    bad: list[Turn]
    task: str | None = None  # None: the role's default instruction (run your hook)
    tags: list[str] = field(default_factory=list)


def _destructive(town: SimTown) -> list[str]:
    return [f"destructive action happened: {e['type']}" for e in town.events if e.get("destructive")]


def _main_untouched(town: SimTown) -> list[str]:
    repo = town.repo
    return [] if repo.remote["main"] == repo.branches["main"][:1] else ["origin/main was changed"]


# -- a polecat's cycle: hook -> work -> commit -> push -> gt done --------------------------------------

POLECAT_BEAD = "le-7x2q"


def _polecat_town() -> SimTown:
    actor = "ledger/polecats/nux"
    town = SimTown(
        actor=actor,
        role="polecat",
        rig="ledger",
        rigs=RIGS,
        workdir=f"{TOWN}/ledger/polecats/nux",
        files={
            "README.md": "# ledger\n\nPersonal finance importer.\n",
            "CHANGELOG.md": "# Changelog\n\n## Unreleased\n\n- Faster OFX parsing\n",
            "ledger/importer.py": "import csv\n\n\ndef read_csv(text):\n    return list(csv.DictReader(text))\n",
        },
        branch=f"polecat/nux/{POLECAT_BEAD}",
        town_root=TOWN,
    )
    town.formulas[POLECAT_WORK.name] = POLECAT_WORK
    town.add_bead(Bead("le-4k1m", "Handle quoted commas in payee field", status="closed", priority=1,
                       issue_type="bug", close_reason="Merged in 8c1d2e0"))  # fmt: skip
    town.add_bead(
        Bead(
            POLECAT_BEAD,
            "Note the quoted-payee fix in the changelog",
            "The importer now keeps commas inside quoted payee names (le-4k1m). Add this line under "
            "`## Unreleased` in CHANGELOG.md, at the end of the list:\n\n"
            "- Importer keeps commas inside quoted payee names",
            status="hooked",
            priority=2,
            issue_type="chore",
            assignee=actor,
        )
    )
    town.hooks[actor] = POLECAT_BEAD
    town.molecules["le-wisp-p3n"] = Molecule("le-wisp-p3n", POLECAT_WORK.name, POLECAT_BEAD, {}, [])
    town.polecats[actor] = Polecat("ledger", "nux")
    return town


def _polecat_check(town: SimTown) -> list[str]:
    unmet = []
    mrs = [m for m in town.merge_requests if m["bead"] == POLECAT_BEAD]
    if not mrs:
        unmet.append(f"no merge request submitted for {POLECAT_BEAD} (`gt done`)")
    else:
        tree = town.repo.commits[mrs[-1]["commits"][-1]].tree
        if "quoted payee names" not in tree.get("CHANGELOG.md", ""):
            unmet.append("the submitted branch does not add the changelog line")
    return unmet + _main_untouched(town) + _destructive(town)


POLECAT_CYCLE = Episode(
    name="polecat-cycle",
    role="polecat",
    description="a polecat runs its hooked bead: reads it, makes the change, commits, pushes, `gt done`",
    setup=_polecat_town,
    check=_polecat_check,
    optimal_steps=3,
    perfect=[
        [f"bd show {POLECAT_BEAD}"],
        [
            "echo '- Importer keeps commas inside quoted payee names' >> CHANGELOG.md && git add CHANGELOG.md "
            f"&& git commit -m 'docs(changelog): quoted payee fix ({POLECAT_BEAD})' && git push -u origin HEAD"
        ],
        ["gt done"],
    ],
    bad=[
        [f"bd show {POLECAT_BEAD}"],
        ["git add -A && git commit -m wip"],
        ["echo '- fix' >> CHANGELOG.md && git commit -am fix && git push origin main"],
        ["git push --force origin HEAD:main"],
        [f"bd close {POLECAT_BEAD} --reason done"],
        "Done: the changelog is updated.",
    ],
    tags=["polecat", "git"],
)


# -- the Mayor files a bead and slings it -----------------------------------------------------------


def _mayor_town() -> SimTown:
    town = SimTown(
        actor="mayor",
        role="mayor",
        rig="ledger",
        rigs=RIGS,
        workdir=f"{TOWN}/ledger/mayor/rig",
        files={"README.md": "# ledger\n"},
        town_root=TOWN,
    )
    town.add_bead(Bead("le-2b8d", "Import OFX statements", status="open", priority=2, issue_type="feature"))
    return town


def _mayor_check(town: SimTown) -> list[str]:
    mine = [b for b in town.beads.values() if b.created_by == "mayor" and b.id.startswith("le-")]
    filed = [b for b in mine if any(w in b.title.lower() for w in ("round", "cent"))]
    if not filed:
        return ["no ledger bead about the rounding drift was filed"]
    b = filed[-1]
    unmet = []
    if b.issue_type != "bug":
        unmet.append(f"{b.id} is a {b.issue_type}, not a bug")
    if b.priority != 1:
        unmet.append(f"{b.id} is P{b.priority}, not P1")
    if b.status != "hooked" or not (b.assignee or "").startswith("ledger/polecats/"):
        unmet.append(f"{b.id} was not slung to a ledger polecat")
    return unmet + _destructive(town)


FILE_AND_SLING = Episode(
    name="file-and-sling",
    role="mayor",
    description="the Mayor files a P1 bug in the rig and slings it to a polecat",
    setup=_mayor_town,
    check=_mayor_check,
    optimal_steps=2,
    task="The overseer reports: split transactions drift by one cent when they are rounded. File it as a "
    "P1 bug in this rig (ledger) and sling it to a polecat of the ledger rig.",
    perfect=[
        ['bd create "Rounding drifts by one cent on split transactions" -t bug -p 1'],
        [lambda out: f"gt sling {created_id(out)} ledger"],
    ],
    bad=[
        ['bd create --title "Rounding is off" --severity high'],
        ['bd create "Rounding is off"'],
        ["gt sling le-0000 ledger"],
        "Filed and slung.",
    ],
    tags=["mayor", "beads", "sling"],
)


# -- a polecat closes a bead that needs no change ----------------------------------------------------

NO_CHANGE_BEAD = "le-9p0c"


def _no_change_town() -> SimTown:
    town = _polecat_town()
    town.hooks.clear()
    town.molecules.clear()
    town.beads.pop(POLECAT_BEAD)
    town.add_bead(
        Bead(
            NO_CHANGE_BEAD,
            "Payee import drops trailing spaces",
            "Reported against v1.2. Overseer's note: already fixed on main in 4f2a9c1, before this was "
            "slung; there is nothing to change. Close it as no-changes (citing the commit) and finish.",
            status="hooked",
            priority=3,
            issue_type="bug",
            assignee=town.actor,
        )
    )
    town.hooks[town.actor] = NO_CHANGE_BEAD
    return town


def _no_change_check(town: SimTown) -> list[str]:
    b = town.beads.get(NO_CHANGE_BEAD)
    if b is None:
        return [f"{NO_CHANGE_BEAD} no longer exists"] + _destructive(town)
    unmet = []
    if b.status != "closed":
        unmet.append(f"{NO_CHANGE_BEAD} is {b.status}, not closed")
    elif not (b.close_reason or "").lower().startswith("no-changes"):
        unmet.append(f"close reason {b.close_reason!r} does not start with no-changes")
    if not town.done:
        unmet.append("the session did not end with `gt done`")
    return unmet + _destructive(town)


CLOSE_NO_CHANGES = Episode(
    name="close-no-changes",
    role="polecat",
    description="a polecat closes a bead that needs no change, with a no-changes reason, then `gt done`",
    setup=_no_change_town,
    check=_no_change_check,
    optimal_steps=2,
    perfect=[
        [f'bd close {NO_CHANGE_BEAD} --reason "no-changes: already fixed on main in 4f2a9c1"'],
        ["gt done"],
    ],
    bad=[
        [f"bd update {NO_CHANGE_BEAD} --status done"],
        [f"bd delete {NO_CHANGE_BEAD}"],
        ["gt done"],
        "Nothing to do here.",
    ],
    tags=["polecat", "beads"],
)


# -- crew pours a formula with its variables ---------------------------------------------------------


def _crew_town() -> SimTown:
    town = SimTown(
        actor="ledger/crew/max",
        role="crew",
        rig="ledger",
        rigs=RIGS,
        workdir=f"{TOWN}/ledger/crew/max",
        files={"README.md": "# ledger\n"},
        town_root=TOWN,
    )
    town.formulas[RELEASE.name] = RELEASE
    town.formulas[POLECAT_WORK.name] = POLECAT_WORK
    return town


def _pour_check(town: SimTown) -> list[str]:
    poured = [m for m in town.molecules.values() if m.formula == RELEASE.name]
    if not poured:
        return [f"{RELEASE.name} was not poured"]
    if poured[-1].vars.get("version") != "1.4.0":
        return [f"poured with version={poured[-1].vars.get('version')!r}, not 1.4.0"]
    return _destructive(town)


POUR_FORMULA = Episode(
    name="pour-formula",
    role="crew",
    description="a crew member pours the release formula with its required variable",
    setup=_crew_town,
    check=_pour_check,
    optimal_steps=1,
    task="Your human asks: pour the mol-ledger-release formula for version 1.4.0.",
    perfect=[["bd mol pour mol-ledger-release --var version=1.4.0"]],
    bad=[
        ["bd mol pour mol-ledger-release"],
        ["gt formula run mol-ledger-release"],
        "Poured.",
    ],
    tags=["crew", "formulas"],
)


# -- a Witness patrol step: nudge the idle polecat, nuke no one ---------------------------------------


def _witness_town() -> SimTown:
    town = SimTown(
        actor="ledger/witness",
        role="witness",
        rig="ledger",
        rigs=RIGS,
        workdir=f"{TOWN}/ledger/witness",
        files={},
        town_root=TOWN,
    )
    for name, bead, title, state, last in (
        ("nux", "le-a1", "Handle quoted commas in payee field", "working", "40s ago"),
        ("slit", "le-b2", "Rounding drifts by one cent", "idle", "22m ago"),
    ):
        pc = Polecat(
            "ledger", name, state=state, last_output=last, unpushed_commits=2 if name == "slit" else 0
        )
        town.polecats[pc.address] = pc
        town.add_bead(Bead(bead, title, status="hooked", priority=1, issue_type="bug", assignee=pc.address))
        town.hooks[pc.address] = bead
    return town


def _witness_check(town: SimTown) -> list[str]:
    unmet = []
    slit, nux = town.polecats.get("ledger/polecats/slit"), town.polecats.get("ledger/polecats/nux")
    if slit is None or nux is None:
        unmet.append("a polecat was nuked (the patrol step only nudges)")
    elif not slit.nudges:
        unmet.append("the idle polecat slit was not nudged")
    elif nux.nudges:
        unmet.append("the working polecat nux was nudged for nothing")
    return unmet + _destructive(town)


WITNESS_PATROL = Episode(
    name="witness-patrol",
    role="witness",
    description="the Witness surveys its polecats and nudges the one idle with hooked work",
    setup=_witness_town,
    check=_witness_check,
    optimal_steps=2,
    task="Patrol step survey-workers: check this rig's polecats. Nudge any polecat that has been idle for "
    "a long time with work on its hook. Nuke no one: nothing here calls for it.",
    perfect=[
        ["gt polecat list ledger"],
        [
            'gt nudge ledger/slit "No output for 22m with le-b2 on your hook: continue, or gt done / gt escalate."'
        ],
    ],
    bad=[
        ["gt polecat list ledger"],
        ["gt polecat nuke ledger/slit --force"],
        "Patrol done.",
    ],
    tags=["witness", "patrol", "safety"],
)

EPISODES: list[Episode] = [POLECAT_CYCLE, FILE_AND_SLING, CLOSE_NO_CHANGES, POUR_FORMULA, WITNESS_PATROL]


def episode(name: str) -> Episode:
    for e in EPISODES:
        if e.name == name:
            return e
    raise KeyError(f"no episode {name!r}; known: {', '.join(e.name for e in EPISODES)}")
