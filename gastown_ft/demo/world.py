"""The demo town's shared facts: rigs, people, bead ids, the day's timeline, the secret planter.

Every generator reads from one `World`, so beads, events, logs and transcripts tell the same story
(the same bead ids, agents and times). Each part of the town draws from its own random stream
(`World.rng(name)`), so adding or dropping one part (the bad inputs) leaves the others unchanged.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gastown_ft.demo.secrets import Person, Planter, SecretFactory

BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
CLAUDE_VERSION = "2.0.76"
MODEL = "claude-opus-4-5-20251101"
SUBAGENT_MODEL = "claude-haiku-4-5-20251001"


@dataclass
class RigSpec:
    name: str
    prefix: str  # bead id prefix including the dash, e.g. "le-"
    lang: str  # "python" or "go"
    polecats: list[str]
    crew: list[str]
    remote: str

    @property
    def clone(self) -> str:
        """The canonical clone, relative to the town root: the rig's code and beads live there."""
        return f"{self.name}/mayor/rig"


@dataclass
class World:
    seed: int
    workdir: Path
    root: Path
    projects: Path
    with_bad_inputs: bool
    planter: Planter
    overseer: Person
    people: list[Person]
    rigs: list[RigSpec]
    day: datetime  # 08:00 UTC on the demo day
    ids: dict[str, str] = field(default_factory=dict)
    _used_ids: set[str] = field(default_factory=set)

    # -- randomness ---------------------------------------------------------------------------
    def rng(self, name: str) -> random.Random:
        """An independent, seeded stream for one part of the town."""
        return random.Random(f"gastown-demo:{self.seed}:{name}")

    # -- ids ----------------------------------------------------------------------------------
    def new_bead_id(self, prefix: str, rng: random.Random, length: int | None = None) -> str:
        while True:
            n = length or rng.choice([3, 4, 4, 4, 5])
            bid = prefix + "".join(rng.choice(BASE36) for _ in range(n))
            if bid not in self._used_ids and not bid[len(prefix) :].isdigit():
                self._used_ids.add(bid)
                return bid

    def rig(self, name: str) -> RigSpec:
        return next(r for r in self.rigs if r.name == name)

    # -- time ---------------------------------------------------------------------------------
    def at(self, hhmm: str, seconds: int = 0, days: int = 0) -> datetime:
        h, m = (int(x) for x in hhmm.split(":"))
        return self.day.replace(hour=h, minute=m) + timedelta(days=days, seconds=seconds)

    # -- paths --------------------------------------------------------------------------------
    def agent_dir(self, address: str) -> Path:
        """The working directory of an agent, as Gas Town lays it out: "mayor", "ledger/witness",
        "ledger/refinery" -> ledger/refinery/rig and "ledger/polecats/nux" -> ledger/polecats/nux/ledger
        (worktrees of the canonical clone), "ledger/crew/max" (a full clone)."""
        parts = address.split("/")
        if len(parts) == 2 and parts[1] == "refinery":
            return self.root / address / "rig"
        if len(parts) == 3 and parts[1] == "polecats":
            return self.root / address / parts[0]
        return self.root / address


def iso(t: datetime) -> str:
    """Second precision, Z suffix (beads, events, town log)."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_ms(t: datetime) -> str:
    """Millisecond precision, Z suffix (Claude Code transcripts)."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def encode_cwd(cwd: str | Path) -> str:
    """Claude Code's project directory name for a cwd: every non-alphanumeric character becomes '-'."""
    return re.sub(r"[^A-Za-z0-9]", "-", str(cwd))


def make_world(workdir: Path, seed: int, with_bad_inputs: bool) -> World:
    rng = random.Random(f"gastown-demo:{seed}:world")
    factory = SecretFactory(random.Random(f"gastown-demo:{seed}:secrets"))
    used: set[str] = set()
    overseer = factory.person(used)
    people = [factory.person(used) for _ in range(4)]
    namepool = [
        "nux",
        "furiosa",
        "slit",
        "rictus",
        "dementus",
        "capable",
        "toast",
        "morsov",
        "keeper",
        "dag",
        "ace",
        "cheedo",
    ]
    # Fixed roles in the story: nux and slit in the first rig, furiosa and rictus in the second.
    extra = [n for n in namepool if n not in ("nux", "slit", "furiosa", "rictus")]
    rng.shuffle(extra)
    rigs = [
        RigSpec(
            "ledger",
            "le-",
            "python",
            ["nux", "slit", extra[0]],
            ["max"],
            f"git@github.com:{overseer.login}/ledger.git",
        ),
        RigSpec(
            "courier",
            "co-",
            "go",
            ["furiosa", "rictus", extra[1]],
            ["jack"],
            f"git@github.com:{overseer.login}/courier.git",
        ),
    ]
    day = datetime(2026, 2, 9, 8, 0, tzinfo=UTC) + timedelta(days=rng.randrange(0, 28))
    while day.weekday() >= 5:  # a working day
        day += timedelta(days=1)
    world = World(
        seed=seed,
        workdir=workdir,
        root=workdir / "town",
        projects=workdir / "claude-projects",
        with_bad_inputs=with_bad_inputs,
        planter=Planter(factory),
        overseer=overseer,
        people=people,
        rigs=rigs,
        day=day,
    )
    _name_story_beads(world, rng)
    return world


def _name_story_beads(w: World, rng: random.Random) -> None:
    """Ids of the beads the day's story is about (shared by beads, events and transcripts)."""
    le, co = "le-", "co-"
    ids = w.ids
    ids["le_epic"] = w.new_bead_id(le, rng, 3)
    ids["le_csv"] = ids["le_epic"] + ".2"  # nux: quoted commas in the CSV importer
    ids["le_round"] = w.new_bead_id(le, rng)  # slit: currency rounding
    ids["le_mr"] = w.new_bead_id(le, rng)  # nux's merge request
    ids["le_docs"] = w.new_bead_id(le, rng)  # crew max: README fix
    ids["co_backoff"] = w.new_bead_id(co, rng)  # furiosa: retry backoff jitter (fails)
    ids["co_dlq"] = w.new_bead_id(co, rng)  # rictus: dead-letter queue drains twice
    ids["co_mr"] = w.new_bead_id(co, rng)  # rictus's merge request (refinery merges it)
    ids["hq_convoy"] = w.new_bead_id("hq-cv-", rng, 5)
    ids["hq_escalation"] = w.new_bead_id("hq-", rng)
    ids["hq_mail_done"] = w.new_bead_id("hq-", rng)
    ids["le_patrol_wisp"] = w.new_bead_id("le-wisp-", rng)
    ids["nux_wisp"] = w.new_bead_id("le-wisp-", rng)
