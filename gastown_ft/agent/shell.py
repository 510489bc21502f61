"""Shell command lines taken apart into what they would run, for the policy and the simulated town.

Agents write bash, not single commands: `git add -A && git commit -m "..." && git push`, pipes,
`$(...)`, here-documents, `VAR=x cmd`, `sudo`. A scanner (words and quotes read by
`gastown_ft.shell_scan`, shared with the corpus grammar) finds the structure (lists joined by `&&`,
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

from gastown_ft.shell_scan import FD_DUP, REDIRECT, WORD_BREAK, ShellScanner

_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_VAR_START = re.compile(r"[A-Za-z_0-9@*#?$!-]")


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


class _Scanner(ShellScanner):
    joins_continuation_in_quotes = False  # `\<newline>` in double quotes stays for shlex to read

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.errors: list[str] = []
        self.pending: list[tuple[Redirect, bool]] = []  # here-documents whose body comes after the newline
        self.dynamic = False  # whether the word being read has a part the shell computes

    def parse(self) -> CommandLine:
        line = self.parse_list(None, None)
        if self.pending:
            for r, _ in self.pending:
                r.body = ""
            self.pending = []
        line.errors = self.errors + line.errors
        return line

    def error(self, message: str, ctx: Command | None) -> None:
        self.errors.append(message)

    # -- lists and pipelines -------------------------------------------------------------------------
    def parse_list(self, end: str | None, ctx: Command | None) -> CommandLine:
        t = self.text
        line = CommandLine()
        cmds: list[Command] = []
        op = ""

        def close(next_op: str) -> None:
            nonlocal cmds, op
            if cmds:
                line.pipelines.append(Pipeline(op, cmds))
            cmds, op = [], next_op if cmds or line.pipelines else ""

        while (c := self.next_char(end)) is not None:
            if c == "#":
                self.skip_comment()
            elif c == "\n":
                self.pos += 1
                self._read_heredocs()
                close(";")
            elif t.startswith(("&&", "||"), self.pos):
                close(t[self.pos : self.pos + 2])
                self.pos += 2
            elif t.startswith("|&", self.pos) or c == "|":
                self.pos += 2 if t.startswith("|&", self.pos) else 1  # the pipeline goes on
            elif c == ";":
                self.pos += 2 if t.startswith(";;", self.pos) else 1
                close(";")
            elif c == "&" and not t.startswith("&>", self.pos):
                self.pos += 1
                close("&")
            elif c == ")":
                self.errors.append("unexpected ')'")
                self.pos += 1
            else:
                cmds.append(self._command(end))
        close("")
        return line

    def _read_heredocs(self) -> None:
        while self.pending:
            redirect, strip_tabs = self.pending.pop(0)
            lines, closed = self.heredoc_lines(
                lambda line, r=redirect, s=strip_tabs: (line.lstrip("\t") if s else line) == r.target
            )
            if not closed:
                self.errors.append(f"here-document delimited by {redirect.target!r} is not closed")
            redirect.body = "".join((x.lstrip("\t") if strip_tabs else x) + "\n" for x in lines)

    # -- simple commands -----------------------------------------------------------------------------
    def _command(self, end: str | None) -> Command:
        t = self.text
        start = self.pos
        cmd = Command()
        if t[self.pos] == "(":
            self.pos += 1
            cmd.subshell = self.parse_list(")", cmd)
            if self.pos < len(t):
                self.pos += 1
            else:
                self.errors.append("unclosed '('")
        while (c := self.next_char(end)) is not None:
            if c in "\n;|()" or (c == "&" and not t.startswith("&>", self.pos)):
                break
            if c == "#":
                self.skip_comment()
                break
            m = REDIRECT.match(t, self.pos)
            if m and not t.startswith(("<(", ">("), self.pos):  # those start a process substitution
                self._redirect(m, end, cmd)
                continue
            raw, value, dynamic = self._word(end, cmd)
            if dynamic:
                cmd.dynamic.add(len(cmd.words))
            cmd.raw.append(raw)
            cmd.words.append(value)
        cmd.text = t[start : self.pos].strip()
        return cmd

    def _redirect(self, m: re.Match, end: str | None, cmd: Command) -> None:
        t = self.text
        fd, op = m.group(1), m.group(2)
        self.pos = m.end()
        while self.pos < len(t) and t[self.pos] in " \t":
            self.pos += 1
        if op in (">&", "<&"):
            dup = FD_DUP.match(t, self.pos)
            if dup and (dup.end() == len(t) or t[dup.end()] in WORD_BREAK):
                self.pos = dup.end()
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
        start = self.pos
        outer, self.dynamic = self.dynamic, False  # a substitution reads words of its own
        source = self.word(end, cmd)  # substitutions collapsed to `$(...)`: what shlex reads
        dynamic, self.dynamic = self.dynamic, outer
        try:
            value = "".join(shlex.split(source, posix=True))
        except ValueError as e:
            self.errors.append(f"cannot read the word {source!r}: {e}")
            value = source
        return self.text[start : self.pos], value, dynamic

    def special_piece(self, end: str | None, cmd: Command) -> str | None:
        t = self.text
        if t[self.pos] in "<>" and t.startswith("(", self.pos + 1):  # process substitution
            self.pos += 2
            cmd.nested.append(self.enclosed(")", cmd, "$("))
            self.dynamic = True
            return "$(...)"
        return None

    def plain_char(self, word_start: int) -> str:
        c = self.text[self.pos]
        if c in "*?[" or (c == "~" and self.pos == word_start):
            self.dynamic = True  # globs and tilde: the shell decides the value
        self.pos += 1
        return c

    def unclosed_quote(self, source: str, quote: str, cmd: Command) -> str:
        super().unclosed_quote(source, quote, cmd)
        return source + quote  # closed, so that shlex reads what there is

    def expansion(self, cmd: Command, quoted: bool) -> str | None:
        """`$(...)`, `` `...` ``, `$((...))`, `${...}`, `$NAME`, a lone `$`; None for any other character."""
        t = self.text
        if t[self.pos] not in "$`":
            return None
        if t.startswith("$((", self.pos):
            if not self.balanced("((", "))"):
                self.errors.append("unclosed ((")
            self.dynamic = True
            return "0"
        if t.startswith("$(", self.pos):
            self.pos += 2
            cmd.nested.append(self.enclosed(")", cmd, "$("))
            self.dynamic = True
            return "$(...)"
        if t[self.pos] == "`":
            # Read apart from this text: `\`` inside is a backtick of the nested command.
            close = self.pos + 1
            while close < len(t) and t[close] != "`":
                close += 2 if t[close] == "\\" else 1
            inner = t[self.pos + 1 : close]
            if close >= len(t):
                self.errors.append("unclosed ` substitution")
            cmd.nested.append(_Scanner(inner.replace("\\`", "`")).parse())
            self.pos = min(close + 1, len(t))
            self.dynamic = True
            return "$(...)"
        if t.startswith("${", self.pos):
            if not self.balanced("{", "}"):
                self.errors.append("unclosed {")
            self.dynamic = True
            return "$VAR"
        if self.pos + 1 < len(t) and _VAR_START.match(t[self.pos + 1]):
            self.pos += 1
            if t[self.pos].isalpha() or t[self.pos] == "_":
                while self.pos < len(t) and (t[self.pos].isalnum() or t[self.pos] == "_"):
                    self.pos += 1
            else:
                self.pos += 1
            self.dynamic = True
            return "$VAR"
        self.pos += 1
        return "\\$"


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
