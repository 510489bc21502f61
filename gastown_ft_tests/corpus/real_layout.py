"""A town on disk in Gas Town's real layout (gastown docs/design/architecture.md, "Directory Structure"),
for the layout tests: `mayor/rigs.json`, rigs that are project containers (not clones), each rig's
canonical clone `<rig>/mayor/rig` with its `.beads/`, worktrees (`refinery/rig`,
`polecats/<name>/<rig>`) made with `git worktree add`, a crew clone made with `git clone`, and the
`.beads/redirect` stubs Gas Town writes in them."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from gastown_ft.config import TownConfig
from gastown_ft.corpus.transcripts import encode_project_dir

FORMULA = 'formula = "{name}"\ndescription = "{name}"\n[[steps]]\nid = "a"\ntitle = "step a"\n'
SESSION = "0f2c7a40-1111-4222-8333-944455556666"


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }
    out = subprocess.run(["git", "-C", str(repo), *args], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


@dataclass
class RealTown:
    root: Path
    projects: Path
    heads: dict[str, str] = field(default_factory=dict)  # rig -> HEAD of <rig>/mayor/rig
    copies: list[str] = field(default_factory=list)  # worktrees and crew clones, relative to the root

    def config(self, **kw) -> TownConfig:
        return TownConfig(root=self.root, claude_projects_dir=self.projects, **kw)

    def clone(self, rig: str) -> Path:
        return self.root / rig / "mayor" / "rig"


def add_rig(
    town: RealTown, rig: str, files: dict[str, str], *, polecat: str = "nux", crew: str = "max"
) -> None:
    """A rig: its canonical clone committed with `files`, a refinery and a polecat worktree, a crew
    clone, and redirects from the rig and every copy back to the canonical `.beads/`."""
    clone = town.clone(rig)
    for rel, text in files.items():
        write(clone / rel, text)
    git(clone, "init", "-q", "-b", "main")
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "--no-verify", "-m", "initial")
    town.heads[rig] = git(clone, "rev-parse", "HEAD")
    write(town.root / rig / "config.json", json.dumps({"type": "rig", "name": rig}))
    write(town.root / rig / ".beads" / "redirect", "mayor/rig/.beads\n")
    refinery = town.root / rig / "refinery" / "rig"
    git(clone, "worktree", "add", "-q", "--detach", str(refinery), "HEAD")
    worker = town.root / rig / "polecats" / polecat / rig
    git(clone, "worktree", "add", "-q", "-b", f"polecat/{polecat}", str(worker), "HEAD")
    crew_dir = town.root / rig / "crew" / crew
    git(town.root, "clone", "-q", str(clone), str(crew_dir))
    for copy, depth in ((refinery, 2), (worker, 3), (crew_dir, 2)):
        write(copy / ".beads" / "redirect", "../" * depth + "mayor/rig/.beads\n")
        town.copies.append(copy.relative_to(town.root).as_posix())


def add_transcript(town: RealTown, cwd: Path, text: str) -> Path:
    path = town.projects / encode_project_dir(cwd) / f"{SESSION}.jsonl"
    line = {
        "type": "user",
        "uuid": "u0",
        "parentUuid": None,
        "sessionId": SESSION,
        "cwd": str(cwd),
        "message": {"role": "user", "content": text},
    }
    return write(path, json.dumps(line) + "\n")


def make_real_town(base: Path) -> RealTown:
    """Rigs alpha (beads in its canonical clone) and beta (its canonical `.beads/` redirects to a
    directory outside the town), town beads with routes, directives and overlays at both levels,
    an unregistered rig-shaped directory, and a transcript of a polecat working in its worktree."""
    town = RealTown(base / "town", base / "claude-projects")
    root = town.root
    write(
        root / "mayor" / "rigs.json",
        json.dumps(
            {
                "version": 1,
                "rigs": {r: {"git_url": f"git@example.invalid:{r}.git"} for r in ("alpha", "beta")},
            }
        ),
    )
    write(
        root / ".beads" / "issues.jsonl",
        jsonl([{"id": "hq-1", "title": "convoy"}, {"id": "hq-2", "title": "mail"}]),
    )
    write(
        root / ".beads" / "routes.jsonl",
        jsonl([{"prefix": "hq-", "path": "."}, {"prefix": "al-", "path": "alpha/mayor/rig"}]),
    )
    write(root / ".beads" / "formulas" / "town-wide.formula.toml", FORMULA.format(name="town-wide"))
    write(root / "CLAUDE.md", "# Town\n")
    write(root / "directives" / "polecat.md", "## Town policy\nRun the gates before `gt done`.\n")
    write(root / "formula-overlays" / "alpha-work.toml", '[[step-overrides]]\nstep_id = "a"\nmode = "skip"\n')
    add_rig(
        town,
        "alpha",
        {
            ".beads/issues.jsonl": jsonl([{"id": f"al-{i}", "title": f"alpha {i}"} for i in range(1, 4)]),
            ".beads/formulas/alpha-work.formula.toml": FORMULA.format(name="alpha-work"),
            "internal/formula/formulas/embedded-one.formula.toml": FORMULA.format(name="embedded-one"),
            "CLAUDE.md": "# alpha rig\n",
        },
    )
    write(root / "alpha" / "directives" / "witness.md", "## Alpha policy\nNudge once, then escalate.\n")
    write(
        root / "alpha" / "formula-overlays" / "alpha-work.toml",
        '[[step-overrides]]\nstep_id = "a"\nmode = "append"\ndescription = "and lint"\n',
    )
    # A polecat's uncommitted work in its worktree is not the rig's: not read either.
    write(root / "alpha/polecats/nux/alpha/.beads/formulas/wip.formula.toml", FORMULA.format(name="wip"))
    external = base / "beta-beads" / ".beads"
    write(
        external / "issues.jsonl",
        jsonl([{"id": "be-1", "title": "beta 1"}, {"id": "be-2", "title": "beta 2"}]),
    )
    add_rig(
        town,
        "beta",
        {"README.md": "# beta\n", ".beads/redirect": f"{external}\n"},
        polecat="rictus",
        crew="jack",
    )
    (root / "scratch").mkdir()  # a clone nobody registered: not a rig, not read
    git(root / "scratch", "init", "-q")
    add_transcript(town, root / "alpha" / "polecats" / "nux" / "alpha", "Hooked bead al-1: fix the importer.")
    return town
