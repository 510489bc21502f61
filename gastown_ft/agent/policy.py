"""What the agent may run: every command line is allowed, held for an operator's confirmation, or refused.

Allow-list by default: `gt` and `bd` (less their destructive commands), `git` (reading, and the normal
commit / branch / push-to-a-work-branch cycle), and read-mostly shell tools (ls, cat, grep, ...).
Anything else is held: an unknown program, a computed word the policy cannot see through (`$VAR`,
`$(...)`, a glob where it matters), `eval`, a script piped into a shell, `sudo`.

Refused outright (the destructive classes Gas Town's docs warn about, see the role templates in
../shared/gastown-samples/gastown/internal/templates/roles/):
- rewriting shared history: `git push --force` / `-f` / `+refspec` / `--mirror`, pushing to or deleting
  `main`/`master` outside the Refinery (polecats submit through `gt done`; the Refinery merges),
- throwing work away: `git reset --hard`, `git clean -fd`/`-x`, `rm -rf`,
- nuke-class `gt` commands that destroy sandboxes or the town: `gt polecat nuke`/`remove` (held, not
  refused, for the Witness, whose job it is), `gt down --nuke`, `gt shutdown --nuclear`, `gt uninstall`,
  `gt rig remove`, `gt dolt rollback`; and `bd delete`, `bd purge`, `bd admin reset`.
Disruptive but recoverable commands (stopping and restarting agents, the Dolt server, garbage
collection, mail deletion, ...) are held. `--dry-run` makes a gt/bd command safe.

Paths are judged from the working directory, and `cd` out of it is held (Gas Town's directory
discipline); the policy does not follow `cd` inside a line, so it errs towards holding.

The verdict on a line is the strictest verdict on any command in it (chains, pipes, subshells,
substitutions and `bash -c` strings included); its findings say which rule fired and why.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from gastown_ft.agent import shell
from gastown_ft.agent.command_args import parse_invocation

ALLOW, HOLD, REFUSE = "allow", "hold", "refuse"
_RANK = {ALLOW: 0, HOLD: 1, REFUSE: 2}
PROTECTED_BRANCHES = ("main", "master")

# Programs that only read, or write inside the working directory (paths are checked separately).
READ_PROGRAMS = frozenset(
    """ls cat head tail grep egrep fgrep rg wc sort uniq cut tr diff cmp pwd echo printf true false test [
    which type date basename dirname realpath readlink stat file tree jq yq awk sed column nl tac fold comm
    paste join seq sleep whoami id hostname uname printenv du df md5sum sha1sum sha256sum base64 xxd od
    hexdump cd pushd popd export""".split()
)
WRITE_PROGRAMS = frozenset("tee mkdir touch cp mv ln rmdir".split())
SHELLS = frozenset("bash sh zsh dash ksh".split())
# Files whose contents are secrets: read only with an operator's say-so.
_SECRET_PATH = re.compile(
    r"(^|/)(\.env(\.[\w.-]+)?|\.netrc|\.pgpass|id_(rsa|ed25519|ecdsa|dsa)[^/]*|[^/]*\.pem|[^/]*\.key|"
    r"credentials[^/]*|secrets?\.[\w]+)$|(^|/)\.(ssh|aws|gnupg)(/|$)"
)
_TEXT_READERS = frozenset("cat head tail less more grep rg awk sed base64 xxd od strings".split())

# gt commands by canonical path: (verdict, reason). Role exceptions and flag conditions are in _gt.
_GT_REFUSE = {
    "gt polecat nuke": "destroys a polecat's sandbox (worktree and branch), unpushed work included",
    "gt polecat remove": "removes polecats and their sandboxes",
    "gt polecat identity remove": "deletes a polecat's identity and its work history",
    "gt uninstall": "removes Gas Town from this machine",
    "gt rig remove": "removes a rig from the town",
    "gt dolt rollback": "rolls the beads database back, losing every change since",
}
_GT_HOLD = {
    "gt down": "stops the town's agents",
    "gt shutdown": "shuts the town down",
    "gt estop": "emergency stop of every agent",
    "gt rig shutdown": "shuts a rig down",
    "gt rig stop": "stops a rig's agents",
    "gt rig restart": "restarts a rig's agents",
    "gt rig reset": "resets a rig's state",
    "gt crew remove": "removes a crew workspace",
    "gt crew stop": "stops crew sessions",
    "gt crew restart": "restarts crew sessions",
    "gt dog remove": "removes a dog",
    "gt worktree remove": "removes a worktree",
    "gt deacon force-kill": "kills an agent's session",
    "gt orphans kill": "kills orphaned sessions",
    "gt orphans procs kill": "kills orphaned processes",
    "gt dolt cleanup": "removes Dolt databases",
    "gt dolt kill-imposters": "kills Dolt servers",
    "gt dolt stop": "stops the Dolt server every agent depends on (the templates say: escalate instead)",
    "gt dolt restart": "restarts the Dolt server every agent depends on (the templates say: escalate)",
    "gt cleanup": "cleans up town state",
    "gt polecat gc": "garbage-collects polecat branches",
    "gt polecat prune": "prunes polecat branches",
    "gt prune-branches": "deletes branches",
    "gt krc prune": "prunes records",
    "gt compact": "compacts the town's history",
    "gt reaper purge": "purges beads",
    "gt reaper reap": "reaps beads",
    "gt reaper run": "runs the reaper",
    "gt reaper auto-close": "closes beads in bulk",
    "gt namepool delete": "deletes a name pool",
    "gt namepool reset": "resets a name pool",
    "gt mail delete": "deletes mail",
    "gt mail channel delete": "deletes a mail channel",
    "gt mail group delete": "deletes a mail group",
    "gt mail queue delete": "deletes a mail queue",
    "gt daemon stop": "stops the town daemon",
    "gt deacon stop": "stops the Deacon",
    "gt deacon restart": "restarts the Deacon",
    "gt mayor stop": "stops the Mayor",
    "gt mayor restart": "restarts the Mayor",
    "gt refinery stop": "stops the Refinery",
    "gt refinery restart": "restarts the Refinery",
    "gt witness stop": "stops the Witness",
    "gt witness restart": "restarts the Witness",
    "gt session stop": "stops a session",
    "gt session restart": "restarts a session",
    "gt config agent remove": "removes an agent preset",
    "gt shell remove": "removes shell integration",
    "gt sling respawn-reset": "resets respawn state",
}
# Roles whose own work a held command is (the Witness nukes stuck polecats; dogs run the reaper).
_GT_ROLE_HOLD = {"gt polecat nuke": {"witness"}, "gt polecat remove": {"witness"}}
_GT_ROLE_ALLOW = {p: {"dog"} for p in _GT_HOLD if p.startswith("gt reaper")}
_BD_REFUSE = {
    "bd delete": "deletes beads (their history goes with them)",
    "bd purge": "permanently removes beads",
    "bd admin reset": "resets the beads database",
}
_BD_HOLD = {
    "bd prune": "prunes beads",
    "bd admin cleanup": "deletes closed beads",
    "bd gc": "garbage-collects the beads database",
    "bd compact": "compacts bead history",
    "bd admin compact": "compacts bead history",
    "bd dolt killall": "kills Dolt servers",
    "bd dolt stop": "stops the Dolt server",
    "bd dolt clean-databases": "removes Dolt databases",
    "bd mol wisp gc": "garbage-collects wisps",
    "bd backup remove": "removes a backup",
    "bd repo remove": "removes a repository",
    "bd dolt remote remove": "removes a Dolt remote",
    "bd federation remove-peer": "removes a federation peer",
    "bd hooks uninstall": "removes the beads git hooks",
    "bd worktree remove": "removes a worktree",
    "bd sql": "runs raw SQL against the beads database",
}

_GIT_READ = frozenset(
    """status log diff show fetch rev-parse ls-files ls-tree blame describe shortlog grep ls-remote
    merge-base cat-file rev-list whatchanged show-ref show-branch name-rev count-objects var help version
    check-ignore check-attr for-each-ref diff-tree diff-files diff-index range-diff bisect""".split()
)
_GIT_WORK = frozenset(
    "add commit pull rebase merge cherry-pick revert mv init clone am apply format-patch submodule notes".split()
)
# git options before the subcommand that take a value
_GIT_GLOBAL_VALUED = frozenset("-C --git-dir --work-tree --namespace --exec-path".split())


@dataclass(frozen=True)
class Finding:
    decision: str
    rule: str  # a short stable id, e.g. "git-force-push"
    reason: str
    command: str  # the simple command it is about


@dataclass
class Verdict:
    command: str
    decision: str
    findings: list[Finding] = field(default_factory=list)  # the non-allow ones (empty: allowed)

    @property
    def reason(self) -> str:
        worst = [f for f in self.findings if f.decision == self.decision]
        return "; ".join(f"{f.reason} [{f.command}]" for f in worst) if worst else "allowed"

    @property
    def rules(self) -> list[str]:
        return sorted({f.rule for f in self.findings})


@dataclass
class Policy:
    """`role`: the agent's Gas Town role (polecat, witness, refinery, ...; None when unknown).
    `workdir`: where relative paths point; writes and `rm` outside it are held.
    `current_branch`: tells which branch `git push` without a refspec (or with HEAD) pushes.
    `extra_programs`: programs the operator allows beyond the default list (e.g. pytest, make)."""

    role: str | None = None
    workdir: str | None = None
    current_branch: Callable[[], str | None] | None = None
    extra_programs: frozenset[str] = frozenset()
    protected_branches: tuple[str, ...] = PROTECTED_BRANCHES

    # -- entry points --------------------------------------------------------------------------------
    def check(self, command: str) -> Verdict:
        findings = self._line(shell.parse(command), depth=0)
        decision = max((f.decision for f in findings), key=_RANK.__getitem__, default=ALLOW)
        return Verdict(command, decision, findings)

    def check_read(self, path: str) -> Verdict:
        """The read-file tool: secrets and files outside the working directory are held."""
        findings = []
        if _SECRET_PATH.search(path):
            findings.append(Finding(HOLD, "read-secret", "the file may hold secrets", f"Read {path}"))
        elif not self._inside(path):
            findings.append(
                Finding(HOLD, "read-outside", "reads outside the working directory", f"Read {path}")
            )
        decision = max((f.decision for f in findings), key=_RANK.__getitem__, default=ALLOW)
        return Verdict(f"Read {path}", decision, findings)

    # -- structure -----------------------------------------------------------------------------------
    def _line(self, line: shell.CommandLine, depth: int) -> list[Finding]:
        out: list[Finding] = []
        for err in line.all_errors:
            out.append(Finding(HOLD, "unparsed", f"the shell line cannot be read safely ({err})", "line"))
        if depth > 3:
            return [*out, Finding(HOLD, "too-nested", "commands nested too deeply to check", "line")]
        for pipeline in line.pipelines:
            for i, cmd in enumerate(pipeline.commands):
                if cmd.subshell is not None:
                    out.extend(self._line(cmd.subshell, depth + 1))
                else:
                    out.extend(self._command(cmd, piped_into=i > 0, depth=depth))
                out.extend(self._redirects(cmd))
                for nested in cmd.nested:
                    out.extend(self._line(nested, depth + 1))
        return out

    def _redirects(self, cmd: shell.Command) -> list[Finding]:
        out = []
        for r in cmd.redirects:
            if not r.writes_file or r.target in ("/dev/null", "/dev/stdout", "/dev/stderr"):
                continue
            if r.dynamic:
                out.append(Finding(HOLD, "write-dynamic", "writes to a computed path", cmd.text))
            elif not self._inside(r.target):
                out.append(Finding(HOLD, "write-outside", "writes outside the working directory", cmd.text))
        for r in cmd.redirects:
            if r.op in ("<", "<>") and _SECRET_PATH.search(r.target):
                out.append(Finding(HOLD, "read-secret", "reads a file that may hold secrets", cmd.text))
        return out

    def _command(self, cmd: shell.Command, *, piped_into: bool, depth: int) -> list[Finding]:
        inv = shell.resolve(cmd)
        text = cmd.text
        out: list[Finding] = []
        for w in inv.wrappers:
            if w in ("sudo", "doas"):
                out.append(Finding(HOLD, "sudo", "runs with elevated privileges", text))
            if w == "xargs" and inv.program not in READ_PROGRAMS and inv.program not in ("gt", "bd", "git"):
                out.append(Finding(HOLD, "xargs", f"{inv.program} on arguments read from input", text))
        if inv.program is None:
            return out
        if inv.dynamic_program:
            return [*out, Finding(HOLD, "dynamic-program", "the program to run is computed", text)]
        prog, args = inv.program, inv.args
        if inv.extra_args_unknown:
            args = [*args, "$(...)"]
        dyn = inv.dynamic | ({len(args) - 1} if inv.extra_args_unknown else set())
        if prog == "gt" or prog == "bd":
            return out + self._gt_bd(prog, args, dyn, text)
        if prog == "git":
            return out + self._git(args, dyn, text)
        if prog == "rm":
            return out + self._rm(args, dyn, text)
        if prog in SHELLS:
            return out + self._shell(prog, args, piped_into, depth, text)
        if prog in ("cd", "pushd") and (not args or 0 in dyn or not self._inside(args[0])):
            # Gas Town's directory discipline: work stays in the agent's own worktree (polecat template).
            return [*out, Finding(HOLD, "cd-outside", "leaves the working directory", text)]
        if prog in ("eval", "source", "."):
            return [*out, Finding(HOLD, "eval", f"`{prog}` runs code the policy cannot see", text)]
        if prog == "find" and any(a in ("-delete", "-exec", "-execdir", "-ok", "-okdir") for a in args):
            return [*out, Finding(HOLD, "find-exec", "find that deletes or runs commands", text)]
        if prog in _TEXT_READERS and any(_SECRET_PATH.search(a) for a in args if not a.startswith("-")):
            return [*out, Finding(HOLD, "read-secret", "reads a file that may hold secrets", text)]
        if prog in WRITE_PROGRAMS or (
            prog == "sed" and ("i" in shell.short_flags(args) or "in-place" in shell.long_flags(args))
        ):
            for k, a in enumerate(args):
                if a.startswith("-"):
                    continue
                if k in dyn and prog != "sed":
                    return [*out, Finding(HOLD, "write-dynamic", f"{prog} on a computed path", text)]
                if not self._inside(a):
                    return [
                        *out,
                        Finding(HOLD, "write-outside", "writes outside the working directory", text),
                    ]
            return out
        if prog in READ_PROGRAMS or prog in self.extra_programs:
            return out
        if prog in ("dd", "mkfs", "shutdown", "reboot", "halt", "poweroff") or prog.startswith("mkfs."):
            return [
                *out,
                Finding(REFUSE, "system-destructive", f"{prog} can destroy the machine's data", text),
            ]
        return [*out, Finding(HOLD, "unknown-program", f"{prog} is not on the allow-list", text)]

    # -- gt / bd -------------------------------------------------------------------------------------
    def _gt_bd(self, cli: str, args: list[str], dyn: set[int], text: str) -> list[Finding]:
        parsed = parse_invocation(cli, args)
        path = parsed.path
        if parsed.has("dry-run"):
            return []
        refuse = (_GT_REFUSE if cli == "gt" else _BD_REFUSE).get(path)
        hold = (_GT_HOLD if cli == "gt" else _BD_HOLD).get(path)
        role = self.role or ""
        if path == "gt down" and parsed.has("nuke"):
            refuse = "`gt down --nuke` destroys the town's polecats and sandboxes"
        if path in ("gt shutdown", "gt rig shutdown", "gt rig stop", "gt rig restart") and parsed.has(
            "nuclear"
        ):
            refuse = f"`{path} --nuclear` destroys sandboxes and unpushed work"
        if path == "gt crew remove" and parsed.has("purge"):
            refuse = "`gt crew remove --purge` deletes a crew workspace and its work"
        rule = f"{cli}-destructive"
        if refuse:
            if role in _GT_ROLE_HOLD.get(path, set()):
                return [Finding(HOLD, rule, f"{refuse} (part of the {role}'s job: confirm it)", text)]
            return [Finding(REFUSE, rule, refuse, text)]
        if hold:
            if role in _GT_ROLE_ALLOW.get(path, set()):
                return []
            return [Finding(HOLD, rule, hold, text)]
        return []

    # -- git -----------------------------------------------------------------------------------------
    def _git(self, args: list[str], dyn: set[int], text: str) -> list[Finding]:
        i = 0
        while i < len(args) and args[i].startswith("-"):
            opt = args[i].split("=", 1)[0]
            if opt == "-c" or opt == "--config-env":
                return [Finding(HOLD, "git-config-override", "git -c can run arbitrary programs", text)]
            i += 2 if opt in _GIT_GLOBAL_VALUED and "=" not in args[i] else 1
        if i >= len(args):
            return []
        if i in dyn:
            return [Finding(HOLD, "dynamic-args", "the git subcommand is computed", text)]
        sub, rest = args[i], args[i + 1 :]
        rdyn = {k - i - 1 for k in dyn if k > i}
        shorts, longs = shell.short_flags(rest), shell.long_flags(rest)
        positionals = [a for a in rest if not a.startswith("-")]

        def hold(rule: str, reason: str) -> list[Finding]:
            return [Finding(HOLD, rule, reason, text)]

        def refuse(rule: str, reason: str) -> list[Finding]:
            return [Finding(REFUSE, rule, reason, text)]

        if sub == "push":
            return self._git_push(rest, rdyn, text)
        if sub == "reset":
            if "hard" in longs:
                return refuse("git-reset-hard", "`git reset --hard` discards uncommitted work")
            return []
        if sub == "clean":
            if "n" in shorts or "dry-run" in longs:
                return []
            forced = "f" in shorts or "force" in longs
            if forced and ({"d", "x", "X"} & shorts):
                return refuse("git-clean", "`git clean -fd`/`-x` deletes untracked files for good")
            return hold("git-clean", "git clean deletes untracked files") if forced else []
        if sub in ("filter-branch", "filter-repo", "replace"):
            return refuse("git-rewrite-history", f"git {sub} rewrites history")
        if sub == "reflog" and positionals[:1] and positionals[0] in ("expire", "delete"):
            return refuse("git-reflog-expire", "expiring the reflog removes the way back from mistakes")
        if sub == "checkout":
            if "f" in shorts or "force" in longs or "B" in shorts or "--" in rest or "." in positionals:
                return hold("git-discard", "this checkout discards local changes")
            return []
        if sub == "switch":
            if {"f", "C"} & shorts or {"discard-changes", "force", "force-create"} & longs:
                return hold("git-discard", "this switch discards local changes or resets a branch")
            return []
        if sub == "restore":
            if ("staged" in longs or "S" in shorts) and not ({"worktree"} & longs or "W" in shorts):
                return []
            return hold("git-discard", "git restore discards changes in the working tree")
        if sub == "branch":
            if {"D", "f", "M", "C"} & shorts or "force" in longs:
                return hold("git-branch-force", "force-deletes or overwrites a branch")
            if ("d" in shorts or "delete" in longs) and set(positionals) & set(self.protected_branches):
                return hold("git-branch-delete-main", "deletes a protected branch")
            return []
        if sub == "stash":
            if positionals[:1] and positionals[0] in ("drop", "clear"):
                return hold("git-stash-drop", "drops stashed work")
            return []
        if sub == "tag":
            return hold("git-tag-delete", "deletes a tag") if "d" in shorts or "delete" in longs else []
        if sub == "worktree":
            if positionals[:1] and positionals[0] in ("remove", "prune"):
                return hold("git-worktree-remove", "removes a worktree")
            return []
        if sub == "remote":
            if positionals[:1] and positionals[0] not in ("show", "get-url"):
                return hold("git-remote-change", "changes where the repository pushes")
            return []
        if sub == "config":
            reading = {"get", "get-all", "list", "l", "get-regexp", "show-origin"} & (longs | shorts)
            if reading or (len(positionals) <= 1 and not longs - {"global", "local", "system"}):
                return []
            return hold("git-config", "changes git configuration")
        if sub in ("update-ref", "symbolic-ref", "gc", "prune", "repack"):
            return hold("git-plumbing", f"git {sub} changes refs or prunes objects")
        if sub == "rm" and ("f" in shorts or "force" in longs):
            return hold("git-rm-force", "git rm --force drops uncommitted changes")
        if sub in _GIT_READ or sub in _GIT_WORK or sub == "rm":
            return []
        return hold("git-unknown", f"git {sub} is not a subcommand the policy knows")

    def _git_push(self, args: list[str], dyn: set[int], text: str) -> list[Finding]:
        valued = {"--repo", "--receive-pack", "--exec", "-o", "--push-option"}
        positionals: list[tuple[int, str]] = []
        force = lease = delete = mirror = every = False
        i = 0
        while i < len(args):
            a = args[i]
            if a == "--":
                positionals.extend((k, x) for k, x in enumerate(args[i + 1 :], i + 1))
                break
            if a.startswith("--"):
                name = a[2:].split("=", 1)[0]
                force |= name == "force"
                lease |= name in ("force-with-lease", "force-if-includes")
                delete |= name in ("delete", "prune")
                mirror |= name == "mirror"
                every |= name in ("all", "branches")
                i += 2 if a.split("=", 1)[0] in valued and "=" not in a else 1
                continue
            if a.startswith("-") and len(a) > 1:
                force |= "f" in a[1:]
                delete |= "d" in a[1:]
                i += 2 if a in valued else 1
                continue
            positionals.append((i, a))
            i += 1
        role = self.role or ""
        may_touch_main = role == "refinery"

        def main_finding(what: str) -> Finding:
            if role == "crew":
                return Finding(HOLD, "git-push-main", f"{what} (crew: confirm with your human)", text)
            return Finding(
                REFUSE, "git-push-main", f"{what} outside the Refinery (polecats submit with `gt done`)", text
            )

        if force:
            return [
                Finding(REFUSE, "git-force-push", "`git push --force` rewrites the remote's history", text)
            ]
        if mirror:
            return [
                Finding(REFUSE, "git-force-push", "`git push --mirror` overwrites every remote ref", text)
            ]
        out: list[Finding] = []
        if lease:
            out.append(
                Finding(HOLD, "git-force-push", "a force push (with lease) rewrites the remote branch", text)
            )
        if every and not may_touch_main:
            out.append(main_finding("pushing every branch includes main"))
        refspecs = positionals[1:]
        if any(k in dyn for k, _ in positionals):
            return [*out, Finding(HOLD, "dynamic-args", "the push target is computed", text)]
        targets: list[tuple[str | None, bool]] = []  # (destination branch, deleting)
        if not refspecs and not every:
            targets.append((self._branch_now(), delete))
        for _, spec in refspecs:
            if spec.startswith("+"):
                return [Finding(REFUSE, "git-force-push", f"`+{spec[1:]}` force-pushes", text)]
            src, colon, dst = spec.partition(":")
            if colon and not src:
                targets.append((dst, True))
                continue
            dest = dst if colon else src
            if dest == "HEAD" or (not colon and src == "HEAD"):
                dest = self._branch_now()
            targets.append((dest, delete))
        for dest, deleting in targets:
            if dest is None:
                out.append(
                    Finding(HOLD, "git-push-unknown-branch", "cannot tell which branch this pushes", text)
                )
                continue
            name = dest.removeprefix("refs/heads/")
            if name in self.protected_branches:
                if deleting:
                    out.append(Finding(REFUSE, "git-push-main", f"deletes the remote {name}", text))
                elif not may_touch_main:
                    out.append(main_finding(f"pushes to {name}"))
            elif deleting:
                out.append(Finding(HOLD, "git-push-delete", f"deletes the remote branch {name}", text))
        return out

    def _branch_now(self) -> str | None:
        return self.current_branch() if self.current_branch else None

    # -- rm and shells -------------------------------------------------------------------------------
    def _rm(self, args: list[str], dyn: set[int], text: str) -> list[Finding]:
        shorts, longs = shell.short_flags(args), shell.long_flags(args)
        recursive = bool({"r", "R"} & shorts) or "recursive" in longs
        forced = "f" in shorts or "force" in longs
        if recursive and forced:
            return [Finding(REFUSE, "rm-rf", "`rm -rf` deletes without asking and cannot be undone", text)]
        if recursive:
            return [Finding(HOLD, "rm-recursive", "deletes a directory tree", text)]
        for k, a in enumerate(args):
            if a.startswith("-"):
                continue
            if k in dyn:
                return [Finding(HOLD, "rm-dynamic", "deletes computed paths (a glob or a variable)", text)]
            if not self._inside(a):
                return [Finding(HOLD, "rm-outside", "deletes outside the working directory", text)]
        return []

    def _shell(self, prog: str, args: list[str], piped_into: bool, depth: int, text: str) -> list[Finding]:
        for k, a in enumerate(args):
            if a.startswith("-") and not a.startswith("--") and "c" in a[1:]:
                if k + 1 >= len(args):
                    break
                return self._line(shell.parse(args[k + 1]), depth + 1)
        what = "a script piped into a shell" if piped_into else f"a {prog} script"
        return [Finding(HOLD, "shell-script", f"runs {what} the policy cannot see", text)]

    # -- paths ---------------------------------------------------------------------------------------
    def _inside(self, path: str) -> bool:
        if path.startswith("~"):
            return False
        p = PurePosixPath(path)
        if not p.is_absolute():
            parts: list[str] = []
            for part in p.parts:
                if part == "..":
                    if not parts:
                        return False
                    parts.pop()
                elif part != ".":
                    parts.append(part)
            return True
        if not self.workdir:
            return False
        root = os.path.normpath(self.workdir)
        return os.path.normpath(path) == root or os.path.normpath(path).startswith(root.rstrip("/") + "/")
