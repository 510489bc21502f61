"""Lay out a small, realistic Gas Town town on disk, deterministically from a seed.

    town = build_demo_town(Path("/tmp/demo"), seed=7)

writes `<workdir>/town/` (the town root: conventions, town beads and formulas, the event feed,
the town log, the rig registry, directives and formula overlays, and two rigs) and
`<workdir>/claude-projects/` (Claude Code session transcripts of the town's agents).

The rigs are laid out as Gas Town lays them out (gastown docs/design/architecture.md): a rig
directory is not a git repo; its canonical clone `<rig>/mayor/rig` is, and holds the code and the
rig's `.beads/`. `<rig>/refinery/rig` and `<rig>/polecats/<name>/<rig>` are `git worktree`s of it and
`<rig>/crew/<name>` is a full clone, each with a `.beads/redirect` back to the canonical `.beads/`;
they carry copies of every tracked file (beads and formulas included), which a reader must not take
twice.

The same seed gives byte-identical files, identical mtimes and identical git commit ids;
transcripts (and the worktrees' `.git` files) hold absolute paths, so they are identical up to the
workdir prefix. Fake secrets and personal data are planted on purpose and listed in
`DemoTown.planted`; deliberately broken files are listed in `DemoTown.bad_inputs`.

Only the standard library is used (plus the `git` executable for the rigs).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from gastown_ft.demo import beads as beads_mod
from gastown_ft.demo.backlog import backlog_beads
from gastown_ft.demo.docs import rig_files, town_docs
from gastown_ft.demo.events import build_events
from gastown_ft.demo.formulas import bad_formulas, build_formulas
from gastown_ft.demo.policy import directive_files, overlay_files, redirect_text, registry_files
from gastown_ft.demo.secrets import KINDS, PlantedSecret
from gastown_ft.demo.transcripts import build_transcripts
from gastown_ft.demo.world import World, encode_cwd, make_world

__all__ = ["DemoTown", "PlantedSecret", "build_demo_town", "encode_cwd", "KINDS"]


@dataclass
class DemoTown:
    workdir: Path
    root: Path  # the town root: workdir / "town"
    claude_projects_dir: Path  # workdir / "claude-projects"
    rigs: list[str]
    planted: list[PlantedSecret]
    bad_inputs: list[tuple[str, str]]  # (relative path, expected quarantine reason)
    seed: int = 7
    heads: dict[str, str] = field(default_factory=dict)  # rig -> HEAD commit of its canonical clone
    clones: dict[str, str] = field(default_factory=dict)  # rig -> canonical clone, relative to the root
    copies: dict[str, str] = field(default_factory=dict)  # worktree or crew clone -> "worktree" | "clone"

    def repo(self, rig: str) -> Path:
        """The rig's canonical clone (the git repo with its code and beads)."""
        return self.root / self.clones[rig]

    def path_of(self, rel: str) -> Path:
        """Absolute path of a planted/bad-input path ("claude-projects/..." or relative to the root)."""
        if rel.startswith("claude-projects/"):
            return self.claude_projects_dir / rel[len("claude-projects/") :]
        return self.root / rel


class _Writer:
    """Writes text files (LF, UTF-8) and remembers the mtime each should end up with."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.mtimes: dict[Path, float] = {}

    def write(self, rel: str, text: str, when: datetime) -> Path:
        path = self.base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
        self.mtimes[path] = when.timestamp()
        return path


# ------------------------------------------------------------------------------------------------
# git
# ------------------------------------------------------------------------------------------------


@dataclass
class _Commit:
    message: str
    author: tuple[str, str]
    when: datetime
    files: dict[str, str]
    committer: tuple[str, str] | None = None
    committed: datetime | None = None


def _git_env(home: Path) -> dict[str, str]:
    """An environment that ignores the user's and the system's git configuration."""
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "LC_ALL": "C",
        "TZ": "UTC",
    }


def _git(repo: Path, env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [
            "git",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "tag.gpgsign=false",
            "-c",
            "core.autocrlf=false",
            "-c",
            "core.hooksPath=" + os.devnull,
            *args,
        ],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {repo}: {out.stderr.strip()}")
    return out.stdout.strip()


def _make_repo(path: Path, commits: list[_Commit], writer: _Writer, rel_prefix: str, home: Path) -> list[str]:
    """Create a git repo at `path` with `commits` (files written as each commit's content)."""
    path.mkdir(parents=True, exist_ok=True)
    base = _git_env(home)
    _git(path, base, "init", "-q", "-b", "main")
    shas = []
    for c in commits:
        for rel, text in c.files.items():
            writer.write(f"{rel_prefix}/{rel}", text, c.when)
        committer = c.committer or c.author
        committed = c.committed or c.when
        env = {
            **base,
            "GIT_AUTHOR_NAME": c.author[0],
            "GIT_AUTHOR_EMAIL": c.author[1],
            "GIT_AUTHOR_DATE": f"{int(c.when.timestamp())} +0000",
            "GIT_COMMITTER_NAME": committer[0],
            "GIT_COMMITTER_EMAIL": committer[1],
            "GIT_COMMITTER_DATE": f"{int(committed.timestamp())} +0000",
        }
        _git(path, env, "add", "-A")
        _git(path, env, "commit", "-q", "--no-verify", "-m", c.message)
        shas.append(_git(path, env, "rev-parse", "HEAD"))
    return shas


def _agent_ident(address: str) -> tuple[str, str]:
    parts = address.split("/")
    if len(parts) == 3:  # rig/polecats/name, rig/crew/name
        rig, kind, name = parts
        return address, f"{name}@{kind.rstrip('s')}.{rig}.gastown.local"
    return address, f"{address.replace('/', '.')}@gastown.local"


# ------------------------------------------------------------------------------------------------
# build
# ------------------------------------------------------------------------------------------------


def _pick(files: dict[str, str], *names: str, prefixes: tuple[str, ...] = ()) -> dict[str, str]:
    out = {n: files[n] for n in names if n in files}
    for rel, text in files.items():
        if rel not in out and any(rel.startswith(p) for p in prefixes):
            out[rel] = text
    return out


BACKLOG_PER_RIG = 100  # ordinary beads per rig (demo/backlog.py) beside the story beads


def build_demo_town(
    workdir: Path, seed: int = 7, *, with_bad_inputs: bool = True, backlog: int = BACKLOG_PER_RIG
) -> DemoTown:
    """Write the demo town under `workdir` (replacing an earlier one there) and describe it.

    `backlog` ordinary beads per rig are filed beside the story beads (0 for the story alone)."""
    workdir = Path(workdir).expanduser().resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("town", "claude-projects"):
        target = workdir / name
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.exists():
            shutil.rmtree(target)
    w = make_world(workdir, seed, with_bad_inputs)
    tw = _Writer(w.root)
    pw = _Writer(w.projects)
    bad: list[tuple[str, str]] = []
    first, second = w.rigs[0], w.rigs[1]
    L, C = first.name, second.name

    # -- town-level conventions and formulas ------------------------------------------------------
    conventions_time = w.day - timedelta(days=9, hours=3)
    for rel, text in town_docs(w).items():
        tw.write(rel, text, conventions_time)
    formula_files = build_formulas(w)
    if with_bad_inputs:
        extra, reasons = bad_formulas(w)
        formula_files.update(extra)
        bad += reasons
    rig_extra: dict[str, dict[str, str]] = {r.name: {} for r in w.rigs}
    for rel, text in formula_files.items():
        rig = next((r for r in w.rigs if rel.startswith(r.clone + "/")), None)
        if rig is not None:
            rig_extra[rig.name][rel[len(rig.clone) + 1 :]] = text
        else:
            tw.write(rel, text, conventions_time)
    for rel, text in {**registry_files(w), **directive_files(w), **overlay_files(w)}.items():
        tw.write(rel, text, conventions_time)
    routes = "".join(
        json.dumps({"prefix": p, "path": path}) + "\n"
        for p, path in [("hq-", "."), (first.prefix, first.clone), (second.prefix, second.clone)]
    )
    tw.write(".beads/routes.jsonl", routes, w.day - timedelta(days=20))
    tw.write(
        ".beads/config.yaml",
        "# Town beads database\nissue-prefix: hq\nsync-branch: main\n",
        w.day - timedelta(days=20),
    )

    # -- rigs: files and history ----------------------------------------------------------------
    finals, early = rig_files(w)
    for r in w.rigs:
        finals[r.name].update(rig_extra[r.name])
    o = w.overseer
    me = (o.name, o.email)
    helper = (w.people[1].name, w.people[1].email)
    lf = finals[L]
    ledger_commits = [
        _Commit(
            "Initial scaffold",
            me,
            w.day - timedelta(days=20, hours=2),
            {
                **_pick(lf, "pyproject.toml", "ledger/__init__.py", ".gitignore"),
                "README.md": early[L]["README.md"],
            },
        ),
        _Commit(
            "Add importer and money helpers",
            helper,
            w.day - timedelta(days=14, hours=5),
            {
                "ledger/importer.py": early[L]["ledger/importer.py"],
                "ledger/money.py": lf["ledger/money.py"],
                "tests/test_importer.py": early[L]["tests/test_importer.py"],
            },
        ),
        _Commit(
            "Add agent conventions, role templates and formulas",
            me,
            conventions_time,
            _pick(lf, "CLAUDE.md", "AGENTS.md", prefixes=(".claude/", "internal/", ".beads/formulas/")),
        ),
        _Commit(
            f"fix(importer): keep commas inside quoted payees ({w.ids['le_csv']})",
            _agent_ident(f"{L}/polecats/nux"),
            w.at("09:36"),
            _pick(lf, "ledger/importer.py", "tests/test_importer.py", prefixes=("tests/fixtures/",)),
            committer=_agent_ident(f"{L}/refinery"),
            committed=w.at("09:48"),
        ),
    ]
    cf = finals[C]
    courier_commits = [
        _Commit(
            "Initial courier service",
            me,
            w.day - timedelta(days=18, hours=4),
            {**_pick(cf, "go.mod", "cmd/courierd/main.go", ".gitignore"), "README.md": early[C]["README.md"]},
        ),
        _Commit(
            "retry: exponential backoff with full jitter",
            _agent_ident(f"{C}/crew/jack"),
            w.day - timedelta(days=12, hours=1),
            _pick(cf, prefixes=("internal/retry/",)),
        ),
        _Commit(
            "Add agent conventions and formulas",
            me,
            w.day - timedelta(days=8, hours=6),
            _pick(cf, "CLAUDE.md", "AGENTS.md", prefixes=(".claude/", ".beads/formulas/")),
        ),
        _Commit(
            f"dlq: drain hands out each id once ({w.ids['co_dlq']})",
            _agent_ident(f"{C}/polecats/rictus"),
            w.at("10:01"),
            _pick(cf, prefixes=("internal/dlq/",)),
            committer=_agent_ident(f"{C}/refinery"),
            committed=w.at("10:22"),
        ),
    ]
    home = workdir
    ledger_shas = _make_repo(w.root / first.clone, ledger_commits, tw, first.clone, home)
    courier_shas = _make_repo(w.root / second.clone, courier_commits, tw, second.clone, home)
    fix_sha, courier_merge = ledger_shas[3], courier_shas[3]

    # -- beads (they cite the commits above), then each rig's last commit ---------------------------
    ledger_beads = beads_mod.ledger_beads(w, fix_sha) + backlog_beads(w, first, backlog)
    bad_after = None
    if with_bad_inputs:
        bad_after = 7
        bad.append((f"{first.clone}/.beads/issues.jsonl", "not_an_object"))
    export = beads_mod.write_export(ledger_beads, bad_line_after=bad_after)
    backup = beads_mod.write_backup(
        w, beads_mod.courier_beads(w, courier_merge) + backlog_beads(w, second, backlog)
    )
    sync_time = w.at("17:55")
    ledger_shas.append(
        _commit_more(
            w.root / first.clone,
            tw,
            first.clone,
            home,
            _Commit(
                "bd sync: export beads",
                ("mayor", "mayor@gastown.local"),
                sync_time,
                {".beads/issues.jsonl": export, "README.md": lf["README.md"]},
            ),
        )
    )
    courier_shas.append(
        _commit_more(
            w.root / second.clone,
            tw,
            second.clone,
            home,
            _Commit(
                "bd backup: nightly snapshot",
                _agent_ident("deacon/dogs/backup"),
                w.at("18:02"),
                {**{f".beads/backup/{k}": v for k, v in backup.items()}, "README.md": cf["README.md"]},
            ),
        )
    )
    tw.write(".beads/issues.jsonl", beads_mod.write_export(beads_mod.town_beads(w)), w.at("18:00"))

    # -- the agents' worktrees and crew clones of each canonical clone ----------------------------
    copies = _agent_checkouts(w, tw, home, w.at("18:10"))

    # -- event feed, town log, transcripts --------------------------------------------------------
    events, townlog = build_events(w, ledger_fix_sha=fix_sha, courier_merge_sha=courier_merge)
    tw.write(".events.jsonl", events, w.at("16:46"))
    tw.write("logs/town.log", townlog, w.at("16:46"))
    transcripts, bad_transcripts = build_transcripts(
        w,
        ledger_fix_sha=fix_sha,
        ledger_parent_sha=ledger_shas[2],
        courier_merge_sha=courier_merge,
        courier_before_sha=courier_shas[2],
        early_importer=early[L]["ledger/importer.py"],
        ledger_log=[
            (sha, c.author[0], c.author[1], c.message)
            for sha, c in reversed(list(zip(ledger_shas[:4], ledger_commits, strict=True)))
        ],
    )
    for t in transcripts:
        pw.write(t.rel_path[len("claude-projects/") :], t.text(), t.end)
    bad += bad_transcripts

    # -- fixed mtimes, then refresh the index stat data of every checkout ----------------------------
    _apply_mtimes([tw, pw], [w.root, w.projects], w.day - timedelta(days=20))
    for checkout in [*(r.clone for r in w.rigs), *copies]:
        _git(w.root / checkout, _git_env(home), "update-index", "-q", "--refresh")

    return DemoTown(
        workdir=workdir,
        root=w.root,
        claude_projects_dir=w.projects,
        rigs=[r.name for r in w.rigs],
        planted=list(w.planter.planted),
        bad_inputs=bad,
        seed=seed,
        heads={L: ledger_shas[-1], C: courier_shas[-1]},
        clones={r.name: r.clone for r in w.rigs},
        copies=copies,
    )


def _agent_checkouts(w: World, tw: _Writer, home: Path, when: datetime) -> dict[str, str]:
    """Worktrees for each rig's refinery and its polecats with sessions, a full clone per crew member
    with a session, and the `.beads/redirect` stubs that point them (and the rig) at the canonical
    `.beads/`. Returns {checkout relative to the root: "worktree" | "clone"}."""
    env = {
        **_git_env(home),
        "GIT_COMMITTER_NAME": "mayor",
        "GIT_COMMITTER_EMAIL": "mayor@gastown.local",
        "GIT_COMMITTER_DATE": f"{int(when.timestamp())} +0000",
    }
    polecats = {w.rigs[0].name: ["nux", "slit"], w.rigs[1].name: ["furiosa"]}
    crew = {w.rigs[0].name: ["max"], w.rigs[1].name: ["jack"]}
    out: dict[str, str] = {}
    for r in w.rigs:
        canonical = w.root / r.clone
        with open(canonical / ".git" / "info" / "exclude", "a", encoding="utf-8") as fh:
            fh.write("/.beads/redirect\n")  # worktrees share this file with the canonical clone
        tw.write(f"{r.name}/.beads/redirect", redirect_text(0), when)
        worktrees = [(f"{r.name}/refinery/rig", None, 2)] + [
            (f"{r.name}/polecats/{p}/{r.name}", _polecat_branch(w, p), 3) for p in polecats[r.name]
        ]
        for rel, branch, depth in worktrees:
            args = ["-b", branch] if branch else ["--detach"]
            _git(canonical, env, "worktree", "add", "-q", *args, str(w.root / rel), "HEAD")
            out[rel] = "worktree"
            _copy_mtimes(tw, w.root / r.clone, w.root / rel, when)
            tw.write(f"{rel}/.beads/redirect", redirect_text(depth), when)
        for name in crew[r.name]:
            rel = f"{r.name}/crew/{name}"
            _git(w.root, env, "clone", "-q", str(canonical), str(w.root / rel))
            _git(w.root / rel, env, "remote", "set-url", "origin", r.remote)
            _git(w.root / rel, env, "checkout", "-q", "-b", f"crew/{name}")
            with open(w.root / rel / ".git" / "info" / "exclude", "a", encoding="utf-8") as fh:
                fh.write("/.beads/redirect\n")
            out[rel] = "clone"
            _copy_mtimes(tw, w.root / r.clone, w.root / rel, when)
            tw.write(f"{rel}/.beads/redirect", redirect_text(2), when)
    return out


def _polecat_branch(w: World, name: str) -> str:
    """The branch a polecat's session works on (as its transcript says)."""
    bead = {"nux": w.ids["le_csv"], "slit": w.ids["le_round"], "furiosa": w.ids["co_backoff"]}.get(name)
    return f"polecat/{name}/{bead}" if bead else f"polecat/{name}"


def _copy_mtimes(tw: _Writer, canonical: Path, checkout: Path, when: datetime) -> None:
    """A checkout's files get the mtimes of the same files in the canonical clone (deterministic)."""
    for dirpath, dirnames, filenames in os.walk(checkout):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for f in filenames:
            path = Path(dirpath) / f
            rel = path.relative_to(checkout)
            t = tw.mtimes.get(canonical / rel)
            tw.mtimes[path] = t if t is not None else when.timestamp()


def _commit_more(repo: Path, writer: _Writer, prefix: str, home: Path, c: _Commit) -> str:
    for rel, text in c.files.items():
        writer.write(f"{prefix}/{rel}", text, c.when)
    env = {
        **_git_env(home),
        "GIT_AUTHOR_NAME": c.author[0],
        "GIT_AUTHOR_EMAIL": c.author[1],
        "GIT_AUTHOR_DATE": f"{int(c.when.timestamp())} +0000",
        "GIT_COMMITTER_NAME": c.author[0],
        "GIT_COMMITTER_EMAIL": c.author[1],
        "GIT_COMMITTER_DATE": f"{int(c.when.timestamp())} +0000",
    }
    _git(repo, env, "add", "-A")
    _git(repo, env, "commit", "-q", "--no-verify", "-m", c.message)
    return _git(repo, env, "rev-parse", "HEAD")


def _apply_mtimes(writers: list[_Writer], tops: list[Path], floor: datetime) -> None:
    """Files get their recorded times; directories the newest time below them (outside .git)."""
    times: dict[Path, float] = {}
    for wr in writers:
        times.update(wr.mtimes)
    for path, t in times.items():
        os.utime(path, (t, t))
    dir_times: dict[Path, float] = {}
    for path, t in times.items():
        for parent in path.parents:
            if not any(parent == top or top in parent.parents for top in tops):
                break
            dir_times[parent] = max(t, dir_times.get(parent, floor.timestamp()))
    for d in sorted(dir_times, key=lambda p: len(p.parts), reverse=True):
        os.utime(d, (dir_times[d], dir_times[d]))


def main(argv: list[str] | None = None) -> int:
    """`python -m gastown_ft.demo.town <workdir> [--seed N] [--no-bad-inputs]`."""
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--no-bad-inputs", action="store_true")
    args = ap.parse_args(argv)
    town = build_demo_town(args.workdir, args.seed, with_bad_inputs=not args.no_bad_inputs)
    print(
        f"town: {town.root}\ntranscripts: {town.claude_projects_dir}\nrigs: {', '.join(town.rigs)}\n"
        f"planted: {len(town.planted)} values of {len({p.kind for p in town.planted})} kinds\n"
        f"bad inputs: {len(town.bad_inputs)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
