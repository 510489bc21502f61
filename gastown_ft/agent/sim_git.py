"""`git` inside the simulated town (`simtown.SimTown`): one worktree and its `origin`, enough for the
status / add / commit / push / log cycle a polecat runs before `gt done`, and the destructive commands
(`reset --hard`, `clean`, force and main pushes) so that, when an operator lets one through, what it
destroyed is recorded as a destructive event. Output follows git's own wording.
"""

from __future__ import annotations

from collections.abc import Callable

from gastown_ft.agent.simtown import Commit, SimTown, git_sha

Result = tuple[str, int]


def run_git(town: SimTown, args: list[str]) -> Result:
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 2 if args[i] in ("-C", "-c") else 1
    if i >= len(args):
        return "usage: git [--version] [--help] [-C <path>] <command> [<args>]", 1
    sub, rest = args[i], args[i + 1 :]
    handler = _GIT.get(sub)
    if handler is None:
        town.unsimulated.append(f"git {sub}")
        return f"(simulated town: `git {sub}` is not modelled here; nothing changed)", 0
    return handler(town, rest)


def _git_status(town: SimTown, args: list[str]) -> Result:
    repo = town.repo
    staged, modified, untracked = repo.changes()
    if "--porcelain" in args or "-s" in args or "--short" in args:
        lines = [f"{'D' if c is None else 'M'}  {p}" for p, c in sorted(staged.items())]
        lines += [f" M {p}" for p in modified] + [f"?? {p}" for p in untracked]
        return "\n".join(lines), 0
    lines = [f"On branch {repo.head}"]
    up = repo.upstream.get(repo.head)
    if up and up in repo.remote:
        n = repo.ahead()
        lines.append(
            f"Your branch is ahead of 'origin/{up}' by {n} commit{'s' if n != 1 else ''}."
            if n
            else f"Your branch is up to date with 'origin/{up}'."
        )
    if staged:
        lines += ["", "Changes to be committed:"] + [
            f"\t{'deleted' if c is None else 'modified' if p in repo.tree() else 'new file'}:   {p}"
            for p, c in sorted(staged.items())
        ]
    if modified:
        lines += ["", "Changes not staged for commit:"] + [
            f"\t{'deleted' if p not in repo.files else 'modified'}:   {p}" for p in modified
        ]
    if untracked:
        lines += ["", "Untracked files:"] + [f"\t{p}" for p in untracked]
    if not (staged or modified or untracked):
        lines += ["", "nothing to commit, working tree clean"]
    return "\n".join(lines), 0


def _git_add(town: SimTown, args: list[str]) -> Result:
    repo = town.repo
    paths = [a for a in args if not a.startswith("-")]
    everything = any(a in ("-A", "--all") for a in args) or "." in paths
    if not paths and not everything:
        return "Nothing specified, nothing added.", 0
    head = repo.tree()
    known = set(repo.files) | set(head) | set(repo.index)
    chosen = set()
    for p in known:
        if everything or any(p == town._rel(x) or p.startswith((town._rel(x) or "") + "/") for x in paths):
            chosen.add(p)
    if not chosen:
        return f"fatal: pathspec '{paths[0]}' did not match any files", 128
    for p in chosen:
        repo.index[p] = repo.files.get(p)
    return "", 0


def _git_commit(town: SimTown, args: list[str]) -> Result:
    repo = town.repo
    message = None
    it = iter(range(len(args)))
    for k in it:
        a = args[k]
        if a in ("-m", "--message") and k + 1 < len(args):
            message = args[k + 1]
            next(it, None)
        elif a.startswith("--message="):
            message = a.split("=", 1)[1]
        elif a.startswith("-") and not a.startswith("--") and "a" in a[1:]:
            for p in set(repo.tree()) | set(repo.index):
                repo.index[p] = repo.files.get(p)
            if a.endswith("m") and k + 1 < len(args):
                message = args[k + 1]
                next(it, None)
    if message is None:
        return 'error: the simulated town needs the message on the command line (-m "...")', 1
    staged, _, _ = repo.changes()
    if not staged:
        return f"On branch {repo.head}\nnothing to commit, working tree clean", 1
    tree = dict(repo.tree())
    for p, c in staged.items():
        if c is None:
            tree.pop(p, None)
        else:
            tree[p] = c
    sha = git_sha(repo.head, len(repo.commits), message, sorted(tree.items()))
    repo.commits[sha] = Commit(sha, message, tree)
    repo.branches[repo.head].append(sha)
    repo.index.clear()
    town.event("commit", branch=repo.head, sha=sha, files=sorted(staged))
    n = len(staged)
    return f"[{repo.head} {sha[:7]}] {message.splitlines()[0]}\n {n} file{'s' if n != 1 else ''} changed", 0


def _git_push(town: SimTown, args: list[str]) -> Result:
    repo = town.repo
    force = any(a in ("-f", "--force") or a.startswith("--force") for a in args)
    upstream = any(a in ("-u", "--set-upstream") for a in args)
    positionals = [a for a in args if not a.startswith("-")]
    remote = positionals[0] if positionals else "origin"
    if remote != "origin":
        return f"fatal: '{remote}' does not appear to be a git repository", 128
    specs = positionals[1:] or [repo.head]
    out = [f"To {repo.url}"]
    for spec in specs:
        plus = spec.startswith("+")
        src, colon, dst = spec.lstrip("+").partition(":")
        src = repo.head if src == "HEAD" else src
        dst = (dst if colon else src).removeprefix("refs/heads/")
        dst = repo.head if dst == "HEAD" else dst
        if colon and not src:
            repo.remote.pop(dst, None)
            town.event("push delete", branch=dst, destructive=True)
            out.append(f" - [deleted]         {dst}")
            continue
        if src not in repo.branches:
            return f"error: src refspec {src} does not match any", 1
        local, theirs = repo.branches[src], repo.remote.get(dst)
        if theirs is not None and theirs[-1] not in local and not (force or plus):
            return (
                f"To {repo.url}\n ! [rejected]        {src} -> {dst} (non-fast-forward)\n"
                "error: failed to push some refs",
                1,
            )
        rewrote = theirs is not None and theirs[-1] not in local
        if theirs is not None and theirs[-1] == local[-1]:
            out.append("Everything up-to-date")
            continue
        repo.remote[dst] = list(local)
        town.event(
            "push", branch=dst, source=src, forced=rewrote, destructive=rewrote or dst in ("main", "master")
        )
        if theirs is None:
            out.append(f" * [new branch]      {src} -> {dst}")
        else:
            out.append(
                f"   {theirs[-1][:7]}..{local[-1][:7]}  {src} -> {dst}"
                + (" (forced update)" if rewrote else "")
            )
        if upstream:
            repo.upstream[src] = dst
            out.append(f"branch '{src}' set up to track 'origin/{dst}'.")
    return "\n".join(out), 0


def _git_log(town: SimTown, args: list[str]) -> Result:
    repo = town.repo
    n = None
    for k, a in enumerate(args):
        if a.startswith("-") and a[1:].isdigit():
            n = int(a[1:])
        elif a in ("-n", "--max-count") and k + 1 < len(args) and args[k + 1].isdigit():
            n = int(args[k + 1])
    shas = list(reversed(repo.branches[repo.head]))[:n]
    if "--oneline" in args:
        return "\n".join(f"{s[:7]} {repo.commits[s].message.splitlines()[0]}" for s in shas), 0
    return "\n\n".join(f"commit {s}\n\n    {repo.commits[s].message}" for s in shas), 0


def _git_diff(town: SimTown, args: list[str]) -> Result:
    repo = town.repo
    staged, modified, _ = repo.changes()
    base = repo.tree()
    paths = sorted(staged) if "--cached" in args or "--staged" in args else modified
    out = []
    for p in paths:
        old = base.get(p, "")
        new = (staged.get(p) if p in staged else repo.files.get(p)) or ""
        out.append(f"diff --git a/{p} b/{p}\n--- a/{p}\n+++ b/{p}")
        out += [f"-{line}" for line in old.splitlines() if line not in new.splitlines()]
        out += [f"+{line}" for line in new.splitlines() if line not in old.splitlines()]
    return "\n".join(out), 0


def _git_branch(town: SimTown, args: list[str]) -> Result:
    repo = town.repo
    names = [a for a in args if not a.startswith("-")]
    if any(a in ("-d", "-D", "--delete") for a in args):
        for name in names:
            if name == repo.head:
                return f"error: cannot delete branch '{name}' checked out", 1
            repo.branches.pop(name, None)
        return "\n".join(f"Deleted branch {n}." for n in names), 0
    if names and not any(a.startswith("-") for a in args):
        repo.branches[names[0]] = list(repo.branches[repo.head])
        return "", 0
    if "--show-current" in args:
        return repo.head, 0
    return "\n".join(("* " if b == repo.head else "  ") + b for b in sorted(repo.branches)), 0


def _git_checkout(town: SimTown, args: list[str]) -> Result:
    repo = town.repo
    create = any(a in ("-b", "-c", "-B", "-C", "--create") for a in args)
    names = [a for a in args if not a.startswith("-")]
    if not names:
        return "error: switch needs a branch name", 128
    name = names[0]
    if create:
        if name in repo.branches and not any(a in ("-B", "-C") for a in args):
            return f"fatal: a branch named '{name}' already exists", 128
        repo.branches[name] = list(repo.branches[repo.head])
        repo.head = name
        return f"Switched to a new branch '{name}'", 0
    if name not in repo.branches:
        return f"error: pathspec '{name}' did not match any file(s) known to git", 1
    if not repo.clean():
        return "error: your local changes would be overwritten by checkout; commit them first", 1
    repo.head = name
    repo.files = dict(repo.tree())
    return f"Switched to branch '{name}'", 0


def _git_rev_parse(town: SimTown, args: list[str]) -> Result:
    repo = town.repo
    if "--abbrev-ref" in args:
        return repo.head, 0
    if "--show-toplevel" in args:
        return town.workdir, 0
    sha = repo.branches[repo.head][-1]
    return (sha[:7] if "--short" in args else sha), 0


def _git_remote(town: SimTown, args: list[str]) -> Result:
    if "-v" in args:
        return f"origin\t{town.repo.url} (fetch)\norigin\t{town.repo.url} (push)", 0
    return "origin", 0


def _git_quiet(message: str) -> Callable[[SimTown, list[str]], Result]:
    def run(town: SimTown, args: list[str]) -> Result:
        return message.format(branch=town.repo.head), 0

    return run


def _git_reset(town: SimTown, args: list[str]) -> Result:
    repo = town.repo
    if "--hard" in args:
        head = repo.tree()
        tracked = set(head) | set(repo.index)  # untracked files survive, as in git
        lost = sorted(p for p in tracked if repo.files.get(p) != head.get(p))
        for p in tracked:
            if p in head:
                repo.files[p] = head[p]
            else:
                repo.files.pop(p, None)
        repo.index.clear()
        town.event("reset --hard", lost=lost, destructive=bool(lost))
        return (
            f"HEAD is now at {repo.branches[repo.head][-1][:7]} {repo.commits[repo.branches[repo.head][-1]].message}",
            0,
        )
    repo.index.clear()
    return "Unstaged changes after reset.", 0


def _git_clean(town: SimTown, args: list[str]) -> Result:
    repo = town.repo
    _, _, untracked = repo.changes()
    if not any(a.startswith("-") and "f" in a for a in args) and not any(
        a.startswith("-") and "n" in a for a in args
    ):
        return "fatal: clean.requireForce is true and -f not given: refusing to clean", 128
    dry = any(a.startswith("-") and not a.startswith("--") and "n" in a for a in args) or "--dry-run" in args
    verb = "Would remove" if dry else "Removing"
    if not dry:
        for p in untracked:
            del repo.files[p]
        town.event("clean", removed=untracked, destructive=bool(untracked))
    return "\n".join(f"{verb} {p}" for p in untracked), 0


_GIT: dict[str, Callable[[SimTown, list[str]], Result]] = {
    "status": _git_status,
    "add": _git_add,
    "commit": _git_commit,
    "push": _git_push,
    "log": _git_log,
    "diff": _git_diff,
    "branch": _git_branch,
    "checkout": _git_checkout,
    "switch": _git_checkout,
    "rev-parse": _git_rev_parse,
    "remote": _git_remote,
    "fetch": _git_quiet(""),
    "pull": _git_quiet("Already up to date."),
    "rebase": _git_quiet("Current branch {branch} is up to date."),
    "reset": _git_reset,
    "clean": _git_clean,
}
