"""A simulated Gas Town: beads, hooks, molecules, mail, polecats and one git worktree, as a state machine
that answers shell command lines the way the real town would.

It stands in for a real shell (it is an `Executor`), so the agent loop runs the same code against it;
an episode is reproducible because every id, sha and output follows from the state alone (no clock, no
randomness). `gt` and `bd` commands are read with the packaged CLI grammar: a command the real CLI would
reject is rejected here with the grammar's message and counted in `invalid`; a valid command the
simulation does not model says so and changes nothing. Output shapes follow the real CLIs where the
samples show them (bd's status icons `○ ◐ ● ✓ ❄`, `✓ Closed <id>: <reason>`) and the demo town's
transcripts elsewhere; the gt/bd handlers are in `sim_cli`, git's in `sim_git`.

Shell support is what agents use around gt/bd/git: `&&`, `||`, `;`, pipes into grep/head/tail/wc,
redirections into files (`>`, `>>`, here-documents), and echo/cat/ls/pwd/cd/rm/mkdir/touch. Command
substitution is not simulated (the agent is told so).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from gastown_ft.agent import shell
from gastown_ft.agent.executors import CommandResult, clip

STATUS_ICONS = {
    "open": "○",
    "in_progress": "◐",
    "blocked": "●",
    "closed": "✓",
    "deferred": "❄",
    "hooked": "◐",
}
VALID_STATUSES = ("open", "in_progress", "blocked", "deferred", "closed", "pinned", "hooked")
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def git_sha(*parts: object) -> str:
    return hashlib.sha1("\x1f".join(map(str, parts)).encode()).hexdigest()


def short_hash(*parts: object, n: int = 5) -> str:
    h = int.from_bytes(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:8], "big")
    out = ""
    while len(out) < n:
        h, r = divmod(h, 36)
        out += _B36[r]
    return out


@dataclass
class Bead:
    id: str
    title: str
    description: str = ""
    status: str = "open"
    priority: int = 2
    issue_type: str = "task"
    assignee: str | None = None
    labels: list[str] = field(default_factory=list)
    close_reason: str | None = None
    notes: str = ""
    parent: str | None = None
    deps: list[tuple[str, str]] = field(default_factory=list)  # (depends_on_id, type)
    created_by: str = ""
    comments: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        d = {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "status": self.status,
            "priority": self.priority,
            "issue_type": self.issue_type,
            "assignee": self.assignee,
            "labels": self.labels,
            "created_by": self.created_by,
        }
        if self.close_reason:
            d["close_reason"] = self.close_reason
        if self.parent:
            d["parent"] = self.parent
        if self.deps:
            d["dependencies"] = [{"issue_id": self.id, "depends_on_id": o, "type": t} for o, t in self.deps]
        if self.notes:
            d["notes"] = self.notes
        return d


@dataclass
class Formula:
    name: str
    description: str
    steps: list[tuple[str, str]]  # (id, title)
    vars: dict[str, str | None] = field(default_factory=dict)  # name -> default (None: required)


@dataclass
class Molecule:
    id: str
    formula: str
    attached_to: str | None
    vars: dict[str, str]
    step_ids: list[str]  # the poured step beads


@dataclass
class Mail:
    id: str
    sender: str
    to: str
    subject: str
    body: str
    read: bool = False


@dataclass
class Polecat:
    rig: str
    name: str
    state: str = "working"  # working | idle | stalled
    last_output: str = "1m ago"
    nudges: list[str] = field(default_factory=list)
    unpushed_commits: int = 0

    @property
    def address(self) -> str:
        return f"{self.rig}/polecats/{self.name}"


@dataclass
class Commit:
    sha: str
    message: str
    tree: dict[str, str]


class Repo:
    """One git worktree and its `origin`: enough git for the commit-push-submit cycle."""

    def __init__(self, files: dict[str, str], *, branch: str = "main", url: str = "") -> None:
        root = Commit(git_sha("root", sorted(files.items())), "initial", dict(files))
        self.commits: dict[str, Commit] = {root.sha: root}
        self.branches: dict[str, list[str]] = {"main": [root.sha]}
        self.remote: dict[str, list[str]] = {"main": [root.sha]}
        self.upstream: dict[str, str] = {"main": "main"}
        self.head = "main"
        self.files: dict[str, str] = dict(files)
        self.index: dict[str, str | None] = {}  # staged: path -> content (None: deletion)
        self.url = url
        if branch != "main":
            self.branches[branch] = [root.sha]
            self.head = branch

    def tree(self, branch: str | None = None) -> dict[str, str]:
        return self.commits[self.branches[branch or self.head][-1]].tree

    def changes(self) -> tuple[dict[str, str | None], list[str], list[str]]:
        """(staged, modified-not-staged, untracked) against HEAD."""
        head = self.tree()
        staged = {p: c for p, c in self.index.items() if head.get(p) != c}
        base = {**head, **{p: c for p, c in self.index.items() if c is not None}}
        for p, c in self.index.items():
            if c is None:
                base.pop(p, None)
        modified = sorted(p for p in base if self.files.get(p) != base[p])  # changed or deleted
        untracked = sorted(p for p in self.files if p not in base)
        return staged, modified, untracked

    def clean(self) -> bool:
        staged, modified, untracked = self.changes()
        return not staged and not modified and not untracked

    def ahead(self, branch: str | None = None) -> int:
        b = branch or self.head
        remote = self.remote.get(self.upstream.get(b, ""), [])
        return sum(1 for s in self.branches[b] if s not in remote)


class SimTown:
    """The town as one agent sees it from its working directory."""

    def __init__(
        self,
        *,
        actor: str,
        role: str,
        rig: str | None,
        rigs: dict[str, str],  # rig name -> beads prefix
        workdir: str,
        files: dict[str, str] | None = None,
        branch: str = "main",
        town_root: str = "/home/gt/gt",
    ) -> None:
        self.actor = actor
        self.role = role
        self.rig = rig
        self.rigs = rigs
        self.town_root = town_root
        self.workdir = workdir
        self.repo = Repo(files or {}, branch=branch, url=f"git@example.org:town/{rig or 'hq'}.git")
        self.beads: dict[str, Bead] = {}
        self.hooks: dict[str, str] = {}  # agent address -> bead id
        self.molecules: dict[str, Molecule] = {}
        self.formulas: dict[str, Formula] = {}
        self.mail: list[Mail] = []
        self.polecats: dict[str, Polecat] = {}
        self.name_pool = ["nux", "slit", "furiosa", "toast", "capable", "dag", "ace", "rictus"]
        self.events: list[dict[str, Any]] = []  # every state change, in order
        self.invalid: list[str] = []  # gt/bd commands the grammar rejected
        self.unsimulated: list[str] = []  # valid commands this simulation does not model
        self.done = False
        self.merge_requests: list[dict[str, Any]] = []
        self._counter = 0

    # -- Executor ------------------------------------------------------------------------------------
    def current_branch(self) -> str | None:
        return self.repo.head

    def read_file(self, path: str) -> str:
        rel = self._rel(path)
        if rel is None or rel not in self.repo.files:
            if rel is not None and any(p.startswith(rel.rstrip("/") + "/") for p in self.repo.files):
                raise IsADirectoryError(21, "Is a directory", path)
            raise FileNotFoundError(2, "No such file or directory", path)
        return self.repo.files[rel]

    def run(self, command: str) -> CommandResult:
        line = shell.parse(command)
        if line.errors:
            return CommandResult(f"bash: syntax error: {line.errors[0]}", 2)
        outputs: list[str] = []
        code = 0
        for pipeline in line.pipelines:
            if (pipeline.op == "&&" and code != 0) or (pipeline.op == "||" and code == 0):
                continue
            out, code = self._pipeline(pipeline)
            if out:
                outputs.append(out.rstrip("\n"))
        return CommandResult(clip("\n".join(outputs)), code)

    # -- helpers for the command handlers ------------------------------------------------------------
    def next_id(self, prefix: str, *salt: object) -> str:
        self._counter += 1
        while True:
            bead_id = f"{prefix}-{short_hash(prefix, self._counter, *salt)}"
            if bead_id not in self.beads:
                return bead_id
            self._counter += 1

    def prefix_of(self, rig: str | None) -> str:
        return self.rigs.get(rig, "hq") if rig else "hq"

    def event(self, kind: str, **data: Any) -> None:
        self.events.append({"type": kind, **data})

    def add_bead(self, bead: Bead) -> Bead:
        self.beads[bead.id] = bead
        return bead

    def hooked_bead(self, address: str | None = None) -> Bead | None:
        bead_id = self.hooks.get(address or self.actor)
        return self.beads.get(bead_id) if bead_id else None

    def _rel(self, path: str) -> str | None:
        """A path as the worktree knows it (relative), or None when it is outside."""
        if path.startswith("/"):
            root = self.workdir.rstrip("/") + "/"
            if not path.startswith(root):
                return None
            path = path[len(root) :]
        parts: list[str] = []
        for part in path.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if not parts:
                    return None
                parts.pop()
            else:
                parts.append(part)
        return "/".join(parts)

    # -- shell ---------------------------------------------------------------------------------------
    def _pipeline(self, pipeline: shell.Pipeline) -> tuple[str, int]:
        data: str | None = None
        out, code = "", 0
        for cmd in pipeline.commands:
            if cmd.subshell is not None or cmd.nested:
                return (
                    "simulated town: subshells and command substitution ($(...), `...`) are not "
                    "simulated; run each command on its own",
                    2,
                )
            stdin = data
            for r in cmd.redirects:
                if r.op in ("<<", "<<-"):
                    stdin = r.body or ""
                elif r.op == "<<<":
                    stdin = r.target + "\n"
                elif r.op == "<":
                    try:
                        stdin = self.read_file(r.target)
                    except OSError:
                        return f"bash: {r.target}: No such file or directory", 1
            out, code = self._simple(cmd, stdin)
            for r in cmd.redirects:
                if r.writes_file and r.target not in ("/dev/null", "/dev/stderr", "/dev/stdout"):
                    rel = self._rel(r.target)
                    if rel is None:
                        return f"bash: {r.target}: Permission denied", 1
                    old = self.repo.files.get(rel, "") if r.op in (">>", "&>>") else ""
                    self.repo.files[rel] = old + (out + "\n" if out and not out.endswith("\n") else out)
                    self.event("write", path=rel)
                    out = ""
                elif r.writes_file:
                    out = ""
            data = out
        return out, code

    def _simple(self, cmd: shell.Command, stdin: str | None) -> tuple[str, int]:
        from gastown_ft.agent import sim_cli, sim_git  # they import this module

        inv = shell.resolve(cmd)
        if inv.program is None:
            return "", 0
        prog, args = inv.program, inv.args
        if prog in ("gt", "bd"):
            return sim_cli.run_cli(self, prog, args, " ".join(cmd.raw))
        if prog == "git":
            return sim_git.run_git(self, args)
        builtin = _BUILTINS.get(prog)
        if builtin is None:
            return f"bash: {prog}: command not found", 127
        return builtin(self, args, stdin)


# -- shell builtins ----------------------------------------------------------------------------------


def _echo(town: SimTown, args: list[str], stdin: str | None) -> tuple[str, int]:
    newline = True
    if args[:1] == ["-n"]:
        newline, args = False, args[1:]
    elif args[:1] == ["-e"]:
        args = [a.encode().decode("unicode_escape") for a in args[1:]]
    return " ".join(args) + ("\n" if newline else ""), 0


def _cat(town: SimTown, args: list[str], stdin: str | None) -> tuple[str, int]:
    paths = [a for a in args if not a.startswith("-") or a == "-"]
    if not paths:
        return stdin or "", 0
    out = []
    for p in paths:
        if p == "-":
            out.append(stdin or "")
            continue
        try:
            out.append(town.read_file(p))
        except IsADirectoryError:
            return f"cat: {p}: Is a directory", 1
        except OSError:
            return f"cat: {p}: No such file or directory", 1
    return "".join(out), 0


def _ls(town: SimTown, args: list[str], stdin: str | None) -> tuple[str, int]:
    paths = [a for a in args if not a.startswith("-")] or ["."]
    out = []
    for p in paths:
        rel = town._rel(p)
        if rel is None:
            return f"ls: cannot access '{p}': No such file or directory", 2
        if rel in town.repo.files:
            out.append(p)
            continue
        prefix = rel + "/" if rel else ""
        names = sorted({f[len(prefix) :].split("/")[0] for f in town.repo.files if f.startswith(prefix)})
        if not names and rel:
            return f"ls: cannot access '{p}': No such file or directory", 2
        out.extend(names)
    return "\n".join(out) + "\n", 0


def _lines_filter(kind: str):
    def run(town: SimTown, args: list[str], stdin: str | None) -> tuple[str, int]:
        n = 10
        rest = []
        it = iter(args)
        for a in it:
            if a == "-n":
                n = int(next(it, "10"))
            elif re.fullmatch(r"-\d+", a):
                n = int(a[1:])
            elif a.startswith("-n") and a[2:].isdigit():
                n = int(a[2:])
            else:
                rest.append(a)
        text = stdin or ""
        if rest:
            out, code = _cat(town, rest, stdin)
            if code:
                return out.replace("cat:", f"{kind}:"), code
            text = out
        lines = text.splitlines()
        chosen = lines[:n] if kind == "head" else lines[-n:] if n else []
        return "".join(x + "\n" for x in chosen), 0

    return run


def _grep(town: SimTown, args: list[str], stdin: str | None) -> tuple[str, int]:
    flags = {a for a in args if a.startswith("-")}
    words = [a for a in args if not a.startswith("-")]
    if not words:
        return "usage: grep [OPTION]... PATTERNS [FILE]...", 2
    pattern, paths = words[0], words[1:]
    text = stdin or ""
    if paths:
        out, code = _cat(town, paths, stdin)
        if code:
            return out.replace("cat:", "grep:"), 2
        text = out
    try:
        rx = re.compile(pattern, re.IGNORECASE if "-i" in flags else 0)
    except re.error:
        rx = re.compile(re.escape(pattern))
    hits = [line for line in text.splitlines() if bool(rx.search(line)) != ("-v" in flags)]
    if "-c" in flags:
        return f"{len(hits)}\n", 0 if hits else 1
    return "".join(x + "\n" for x in hits), 0 if hits else 1


def _wc(town: SimTown, args: list[str], stdin: str | None) -> tuple[str, int]:
    text = stdin or ""
    paths = [a for a in args if not a.startswith("-")]
    if paths:
        text, code = _cat(town, paths, stdin)
        if code:
            return text.replace("cat:", "wc:"), 1
    if "-l" in args:
        return f"{text.count(chr(10))}\n", 0
    return f"{text.count(chr(10))} {len(text.split())} {len(text.encode())}\n", 0


def _rm(town: SimTown, args: list[str], stdin: str | None) -> tuple[str, int]:
    recursive = any(a.startswith("-") and ("r" in a or "R" in a) for a in args)
    for p in (a for a in args if not a.startswith("-")):
        rel = town._rel(p)
        if rel is None:
            return f"rm: cannot remove '{p}': Permission denied", 1
        inside = [f for f in town.repo.files if f == rel or f.startswith(rel.rstrip("/") + "/") or not rel]
        if not inside:
            return f"rm: cannot remove '{p}': No such file or directory", 1
        if rel not in town.repo.files and not recursive:
            return f"rm: cannot remove '{p}': Is a directory", 1
        for f in inside:
            del town.repo.files[f]
        town.event("rm", path=rel or ".", files=len(inside))
    return "", 0


def _touch(town: SimTown, args: list[str], stdin: str | None) -> tuple[str, int]:
    for p in (a for a in args if not a.startswith("-")):
        rel = town._rel(p)
        if rel is None:
            return f"touch: cannot touch '{p}': Permission denied", 1
        town.repo.files.setdefault(rel, "")
    return "", 0


def _pwd(town: SimTown, args: list[str], stdin: str | None) -> tuple[str, int]:
    return town.workdir + "\n", 0


def _ok(town: SimTown, args: list[str], stdin: str | None) -> tuple[str, int]:
    return "", 0


def _false(town: SimTown, args: list[str], stdin: str | None) -> tuple[str, int]:
    return "", 1


def _cd(town: SimTown, args: list[str], stdin: str | None) -> tuple[str, int]:
    target = args[0] if args else "~"
    rel = town._rel(target)
    if rel is None or (rel and not any(f.startswith(rel + "/") for f in town.repo.files)):
        return f"bash: cd: {target}: the simulated agent stays in its worktree ({town.workdir})", 1
    return "", 0


_BUILTINS = {
    "echo": _echo,
    "cat": _cat,
    "ls": _ls,
    "head": _lines_filter("head"),
    "tail": _lines_filter("tail"),
    "grep": _grep,
    "wc": _wc,
    "rm": _rm,
    "touch": _touch,
    "mkdir": _ok,
    "pwd": _pwd,
    "cd": _cd,
    "true": _ok,
    "false": _false,
    "sleep": _ok,
    "clear": _ok,
}
