"""Shell command lines taken apart into what they would run, for the policy and the simulated town.

Agents write bash, not single commands: `git add -A && git commit -m "..." && git push`, pipes,
`$(...)`, here-documents, `VAR=x cmd`, `sudo`. A scanner finds the structure (lists joined by `&&`,
`||`, `;`, `&`, newlines; pipelines; subshells; command and process substitutions; redirections with
here-document bodies); each word's value comes from `shlex` (POSIX quoting rules). Words whose value
the shell computes at run time (`$VAR`, `$(...)`, globs, `~`) are marked dynamic, so that a caller can
refuse to guess. Anything the scanner cannot balance (an open quote, an unclosed `$(`) is reported in
`errors` and must be treated as unknown.

`resolve` then strips what runs another command (`env`, `sudo`, `nohup`, `timeout`, `xargs`, ...) and
says which program really runs, with which arguments.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field

_REDIRECT = re.compile(r"(\d*)(&>>|&>|>>|>&|>\||<<<|<<-|<<|<&|<>|>|<)")
_FD_DUP = re.compile(r"\d+-?|-")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_VAR_START = re.compile(r"[A-Za-z_0-9@*#?$!-]")
_WORD_BREAK = frozenset(" \t\r\n;&|()<>")


@dataclass
class Redirect:
    op: str  # ">", ">>", "<", "<<", "<<<", ">&", "&>", ...
    target: str  # a file, an fd (for >& and <&), or the here-document's delimiter
    fd: str = ""
    body: str | None = None  # a here-document's text
    dynamic: bool = False

    @property
    def writes_file(self) -> bool:
        return self.op in (">", ">>", ">|", "&>", "&>>", "<>") or (
            self.op == ">&" and not self.target.isdigit()
        )


@dataclass
class Command:
    """A simple command (words and redirections) or a subshell `( ... )`."""

    words: list[str] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)  # each word's shell source
    dynamic: set[int] = field(default_factory=set)  # indexes of words the shell computes
    redirects: list[Redirect] = field(default_factory=list)
    nested: list[CommandLine] = field(default_factory=list)  # $(...), `...`, <(...) inside its words
    subshell: CommandLine | None = None
    text: str = ""


@dataclass
class Pipeline:
    op: str  # the operator before it: "" (first), "&&", "||", ";", "&"
    commands: list[Command]


@dataclass
class CommandLine:
    pipelines: list[Pipeline] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def walk(self) -> Iterator[Command]:
        """Every simple command, including those in subshells and substitutions."""
        for p in self.pipelines:
            for c in p.commands:
                if c.subshell is not None:
                    yield from c.subshell.walk()
                else:
                    yield c
                for n in c.nested:
                    yield from n.walk()

    @property
    def all_errors(self) -> list[str]:
        out = list(self.errors)
        for p in self.pipelines:
            for c in p.commands:
                for n in [*c.nested, *([c.subshell] if c.subshell else [])]:
                    out.extend(n.all_errors)
        return out


class _Scanner:
    def __init__(self, text: str) -> None:
        self.t = text
        self.i = 0
        self.errors: list[str] = []
        self.pending: list[tuple[Redirect, bool]] = []  # here-documents whose body comes after the newline

    def parse(self) -> CommandLine:
        line = self._list(None)
        if self.pending:
            for r, _ in self.pending:
                r.body = ""
            self.pending = []
        line.errors = self.errors + line.errors
        return line

    # -- lists and pipelines -------------------------------------------------------------------------
    def _list(self, end: str | None) -> CommandLine:
        t = self.t
        line = CommandLine()
        cmds: list[Command] = []
        op = ""

        def close(next_op: str) -> None:
            nonlocal cmds, op
            if cmds:
                line.pipelines.append(Pipeline(op, cmds))
            cmds, op = [], next_op if cmds or line.pipelines else ""

        while self.i < len(t):
            c = t[self.i]
            if end is not None and c == end:
                break
            if c in " \t\r":
                self.i += 1
            elif c == "\\" and t.startswith("\n", self.i + 1):
                self.i += 2
            elif c == "#":
                self._skip_comment()
            elif c == "\n":
                self.i += 1
                self._read_heredocs()
                close(";")
            elif t.startswith(("&&", "||"), self.i):
                close(t[self.i : self.i + 2])
                self.i += 2
            elif t.startswith("|&", self.i) or c == "|":
                self.i += 2 if t.startswith("|&", self.i) else 1  # the pipeline goes on
            elif c == ";":
                self.i += 2 if t.startswith(";;", self.i) else 1
                close(";")
            elif c == "&" and not t.startswith("&>", self.i):
                self.i += 1
                close("&")
            elif c == ")":
                self.errors.append("unexpected ')'")
                self.i += 1
            else:
                cmds.append(self._command(end))
        close("")
        return line

    def _skip_comment(self) -> None:
        nl = self.t.find("\n", self.i)
        self.i = len(self.t) if nl < 0 else nl

    def _read_heredocs(self) -> None:
        t = self.t
        while self.pending:
            redirect, strip_tabs = self.pending.pop(0)
            lines: list[str] = []
            while self.i < len(t):
                nl = t.find("\n", self.i)
                line = t[self.i : len(t) if nl < 0 else nl]
                self.i = len(t) if nl < 0 else nl + 1
                if (line.lstrip("\t") if strip_tabs else line) == redirect.target:
                    break
                lines.append(line.lstrip("\t") if strip_tabs else line)
            else:
                self.errors.append(f"here-document delimited by {redirect.target!r} is not closed")
            redirect.body = "".join(x + "\n" for x in lines)

    # -- simple commands -----------------------------------------------------------------------------
    def _command(self, end: str | None) -> Command:
        t = self.t
        start = self.i
        cmd = Command()
        if t[self.i] == "(":
            self.i += 1
            cmd.subshell = self._list(")")
            if self.i < len(t):
                self.i += 1
            else:
                self.errors.append("unclosed '('")
        while self.i < len(t):
            c = t[self.i]
            if c in " \t\r":
                self.i += 1
                continue
            if c == "\\" and t.startswith("\n", self.i + 1):
                self.i += 2
                continue
            if end is not None and c == end:
                break
            if c in "\n;|()" or (c == "&" and not t.startswith("&>", self.i)):
                break
            if c == "#":
                self._skip_comment()
                break
            m = _REDIRECT.match(t, self.i)
            if m and not (c in "<>" and t.startswith("(", m.end()) and not m.group(1)):
                self._redirect(m, end, cmd)
                continue
            raw, value, dynamic = self._word(end, cmd)
            if dynamic:
                cmd.dynamic.add(len(cmd.words))
            cmd.raw.append(raw)
            cmd.words.append(value)
        cmd.text = t[start : self.i].strip()
        return cmd

    def _redirect(self, m: re.Match, end: str | None, cmd: Command) -> None:
        t = self.t
        fd, op = m.group(1), m.group(2)
        self.i = m.end()
        while self.i < len(t) and t[self.i] in " \t":
            self.i += 1
        if op in (">&", "<&"):
            dup = _FD_DUP.match(t, self.i)
            if dup and (dup.end() == len(t) or t[dup.end()] in _WORD_BREAK):
                self.i = dup.end()
                cmd.redirects.append(Redirect(op, dup.group(0), fd))
                return
        _, target, dynamic = self._word(end, cmd)
        redirect = Redirect(op, target, fd, dynamic=dynamic)
        cmd.redirects.append(redirect)
        if op in ("<<", "<<-"):
            self.pending.append((redirect, op == "<<-"))

    # -- words ---------------------------------------------------------------------------------------
    def _word(self, end: str | None, cmd: Command) -> tuple[str, str, bool]:
        """(shell source, value after quote removal, dynamic) of the word at the cursor."""
        t = self.t
        out: list[str] = []  # source with substitutions collapsed to `$(...)`: what shlex reads
        dynamic = False
        start = self.i
        while self.i < len(t):
            c = t[self.i]
            if c in "<>" and t.startswith("(", self.i + 1):  # process substitution
                self.i += 2
                cmd.nested.append(self._sub_list(")"))
                out.append("$(...)")
                dynamic = True
                continue
            if c in _WORD_BREAK or (end is not None and c == end):
                break
            if c == "'":
                close = t.find("'", self.i + 1)
                if close < 0:
                    self.errors.append("unbalanced single quote")
                    out.append(t[self.i :] + "'")
                    self.i = len(t)
                    break
                out.append(t[self.i : close + 1])
                self.i = close + 1
            elif c == '"':
                dynamic |= self._double_quoted(out, cmd)
            elif c == "\\":
                if t.startswith("\n", self.i + 1):
                    self.i += 2
                else:
                    out.append(t[self.i : self.i + 2])
                    self.i += 2
            elif c == "$" or c == "`":
                dynamic |= self._dollar(out, cmd)
            else:
                if c in "*?[" or (c == "~" and self.i == start):
                    dynamic = True  # globs and tilde: the shell decides the value
                out.append(c)
                self.i += 1
        source = "".join(out)
        try:
            value = "".join(shlex.split(source, posix=True))
        except ValueError as e:
            self.errors.append(f"cannot read the word {source!r}: {e}")
            value = source
        return t[start : self.i], value, dynamic

    def _double_quoted(self, out: list[str], cmd: Command) -> bool:
        t = self.t
        dynamic = False
        out.append('"')
        self.i += 1
        while self.i < len(t):
            c = t[self.i]
            if c == '"':
                self.i += 1
                out.append('"')
                return dynamic
            if c == "\\":
                out.append(t[self.i : self.i + 2])
                self.i += 2
            elif c == "$" or c == "`":
                dynamic |= self._dollar(out, cmd)
            else:
                out.append(c)
                self.i += 1
        self.errors.append("unbalanced double quote")
        out.append('"')
        return dynamic

    def _dollar(self, out: list[str], cmd: Command) -> bool:
        """`$(...)`, `` `...` ``, `$((...))`, `${...}`, `$NAME`; returns whether the value is computed."""
        t = self.t
        if t.startswith("$((", self.i):
            self._skip_balanced("((", "))")
            out.append("0")
            return True
        if t.startswith("$(", self.i):
            self.i += 2
            cmd.nested.append(self._sub_list(")"))
            out.append("$(...)")
            return True
        if t[self.i] == "`":
            close = self.i + 1
            while close < len(t) and t[close] != "`":
                close += 2 if t[close] == "\\" else 1
            inner = t[self.i + 1 : close]
            if close >= len(t):
                self.errors.append("unclosed ` substitution")
            cmd.nested.append(_Scanner(inner.replace("\\`", "`")).parse())
            self.i = min(close + 1, len(t))
            out.append("$(...)")
            return True
        if t.startswith("${", self.i):
            self._skip_balanced("{", "}")
            out.append("$VAR")
            return True
        if self.i + 1 < len(t) and _VAR_START.match(t[self.i + 1]):
            self.i += 1
            if t[self.i].isalpha() or t[self.i] == "_":
                while self.i < len(t) and (t[self.i].isalnum() or t[self.i] == "_"):
                    self.i += 1
            else:
                self.i += 1
            out.append("$VAR")
            return True
        out.append("\\$")
        self.i += 1
        return False

    def _sub_list(self, closer: str) -> CommandLine:
        inner = self._list(closer)
        if self.i < len(self.t) and self.t[self.i] == closer:
            self.i += 1
        else:
            self.errors.append("unclosed $( substitution")
        return inner

    def _skip_balanced(self, opener: str, closer: str) -> None:
        t = self.t
        depth = 0
        i = self.i + 1
        while i < len(t):
            if t.startswith(opener, i):
                depth += 1
                i += len(opener)
            elif t.startswith(closer, i):
                depth -= 1
                i += len(closer)
                if depth == 0:
                    break
            else:
                i += 1
        else:
            self.errors.append(f"unclosed {opener}")
        self.i = i


def parse(text: str) -> CommandLine:
    """The structure of a shell command line (never raises; problems are in `errors`)."""
    return _Scanner(text).parse()


# ---------------------------------------------------------------------------------------------------
# what really runs


@dataclass
class Invocation:
    """The program a simple command runs, after assignments and wrappers."""

    program: str | None  # None: only assignments/redirections, or a wrapper with nothing after it
    args: list[str]
    dynamic: set[int]  # indexes into args whose value the shell computes
    env: dict[str, str]  # VAR=value prefixes
    wrappers: list[str]  # sudo, env, nohup, ... in the order met
    dynamic_program: bool = False  # the program name itself is computed
    extra_args_unknown: bool = False  # xargs: more arguments come from stdin


# wrapper -> (options that take a value, whether a positional comes before the command)
_WRAPPERS: dict[str, tuple[frozenset[str], int]] = {
    "sudo": (frozenset("-u -g -C -D -h -p -r -t -U -T --user --group --chdir --host --prompt".split()), 0),
    "doas": (frozenset("-u -C".split()), 0),
    "env": (frozenset("-u -C -S --unset --chdir --split-string".split()), 0),
    "nohup": (frozenset(), 0),
    "time": (frozenset(), 0),
    "command": (frozenset(), 0),
    "exec": (frozenset("-a".split()), 0),
    "nice": (frozenset("-n --adjustment".split()), 0),
    "ionice": (frozenset("-c -n -p --class --classdata".split()), 0),
    "timeout": (frozenset("-s -k --signal --kill-after".split()), 1),
    "stdbuf": (frozenset("-i -o -e".split()), 0),
    "xargs": (frozenset("-I -i -n -P -L -l -d -E -e -s -a --max-args --max-procs --delimiter".split()), 0),
    "watch": (frozenset("-n -d --interval".split()), 0),
    "unbuffer": (frozenset(), 0),
}


def _basename(word: str) -> str:
    return word.rsplit("/", 1)[-1]


def resolve(cmd: Command) -> Invocation:
    words, dyn = cmd.words, cmd.dynamic
    i = 0
    env: dict[str, str] = {}
    wrappers: list[str] = []
    extra_unknown = False
    while i < len(words) and _ASSIGNMENT.match(cmd.raw[i]):
        key, _, value = words[i].partition("=")
        env[key] = value
        i += 1
    while i < len(words):
        name = _basename(words[i])
        if name not in _WRAPPERS or i in dyn:
            break
        wrappers.append(name)
        valued, positionals = _WRAPPERS[name]
        i += 1
        if name == "xargs":
            extra_unknown = True
        while i < len(words) and words[i].startswith("-") and words[i] != "-":
            if words[i] == "--":
                i += 1
                break
            flag = words[i].split("=", 1)[0]
            i += 2 if flag in valued and "=" not in words[i] else 1
        if name == "env":
            while i < len(words) and _ASSIGNMENT.match(words[i]):
                key, _, value = words[i].partition("=")
                env[key] = value
                i += 1
        i += positionals
    if i >= len(words):
        return Invocation(None, [], set(), env, wrappers, extra_args_unknown=extra_unknown)
    return Invocation(
        program=_basename(words[i]),
        args=words[i + 1 :],
        dynamic={k - i - 1 for k in dyn if k > i},
        env=env,
        wrappers=wrappers,
        dynamic_program=i in dyn,
        extra_args_unknown=extra_unknown,
    )


def short_flags(args: list[str]) -> set[str]:
    """Single-letter flags in `-abc` clusters (before any `--`), for programs such as rm and git clean."""
    out: set[str] = set()
    for a in args:
        if a == "--":
            break
        if a.startswith("-") and not a.startswith("--") and len(a) > 1:
            out.update(a[1:])
    return out


def long_flags(args: list[str]) -> set[str]:
    out: set[str] = set()
    for a in args:
        if a == "--":
            break
        if a.startswith("--") and len(a) > 2:
            out.add(a[2:].split("=", 1)[0])
    return out
