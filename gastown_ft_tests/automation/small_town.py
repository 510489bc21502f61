"""A small town on disk for the automation tests: town formulas and beads, one or two rigs that are
real git repos, and a Claude projects directory with a transcript per rig."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from gastown_ft.config import TownConfig
from gastown_ft.corpus.transcripts import encode_project_dir

FORMULA = 'formula = "{name}"\n[[steps]]\nid = "a"\ntitle = "step a"\n'


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


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@dataclass
class SmallTown:
    root: Path
    projects: Path

    def config(self, **kw) -> TownConfig:
        return TownConfig(root=self.root, claude_projects_dir=self.projects, **kw)

    def transcript(self, rig: str, agent: str = "polecats/nux") -> Path:
        project = self.projects / encode_project_dir(self.root / rig / agent)
        return project / "0f2c7a40-1111-4222-8333-944455556666.jsonl"


def transcript_line(n: int) -> str:
    return (
        json.dumps(
            {
                "type": "user",
                "uuid": f"u{n}",
                "parentUuid": f"u{n - 1}" if n else None,
                "sessionId": "0f2c7a40-1111-4222-8333-944455556666",
                "message": {"role": "user", "content": f"message {n}"},
            }
        )
        + "\n"
    )


def make_small_town(base: Path, rigs: tuple[str, ...] = ("alpha",)) -> SmallTown:
    root = base / "town"
    projects = base / "claude-projects"
    (root / ".beads" / "formulas").mkdir(parents=True)
    (root / ".beads" / "formulas" / "town-wide.formula.toml").write_text(FORMULA.format(name="town-wide"))
    (root / ".beads" / "issues.jsonl").write_text('{"id": "hq-1", "title": "town bead"}\n')
    (root / "mayor").mkdir()
    (root / "mayor" / "CLAUDE.md").write_text("# Mayor\n")
    town = SmallTown(root, projects)
    for rig in rigs:
        repo = root / rig
        (repo / ".beads" / "formulas").mkdir(parents=True)
        (repo / ".beads" / "formulas" / f"{rig}-work.formula.toml").write_text(
            FORMULA.format(name=f"{rig}-work")
        )
        (repo / ".beads" / "issues.jsonl").write_text(f'{{"id": "{rig[:2]}-1", "title": "first"}}\n')
        (repo / "CLAUDE.md").write_text(f"# {rig}\n")
        git(repo, "init", "-q", "-b", "main")
        commit_all(repo, "initial")
        t = town.transcript(rig)
        t.parent.mkdir(parents=True)
        t.write_text(transcript_line(0))
    return town
