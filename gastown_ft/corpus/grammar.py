"""Validate `gt` / `bd` command lines against the packaged CLI grammar.

The grammar (`gastown_ft/data/cli_grammar.json`, written by `tools/derive_grammar.py` from the shared
gastown reference) lists every command path of both CLIs with its aliases, flags and positional args.
Validation follows cobra/pflag semantics:

- the command path is the run of leading non-flag words that name subcommands (or their aliases);
  flags may come before or after it; `gt bd ...` is `gt bead ...` (alias), not a nested bd call;
- flags are the command's own plus the persistent flags of it and all its ancestors;
  `--flag=value`, `--flag value`, `-f value`, `-fvalue`, `-f=value`, combined bool shorthands `-abc`;
  bool flags take no value but accept `--flag=false`; `--` ends the flags; `-h/--help` always works;
- positional counts come from the cobra Use string (`<x>` required, `[x]` optional, `...` variadic).

Shell handling: a command line may carry env-var prefixes (`GT_ROLE=x gt prime`), a leading `$ `
prompt, comments, redirections, pipes and `&&`/`||`/`;` chains and `$(...)` substitutions; every gt/bd
simple command in it is checked, other programs are ignored. `{{var}}` template placeholders and
`<placeholder>` words are ordinary argument words.
"""

from __future__ import annotations

import difflib
import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from gastown_ft.shell_scan import FD_DUP, REDIRECT, ShellScanner

CLIS = ("gt", "bd")

# Flags known to exist in the real CLIs but missing from the heuristic extraction of the cobra sources
# (path -> {long name: type}). Keep this list short and justified: each entry was checked against the
# Go source and is an extraction miss, not a command the CLIs lack.
#
# gt reaper *: internal/cmd/reaper.go registers its flags in loops
#   (`for _, cmd := range []*cobra.Command{reaperScanCmd, ...} { cmd.Flags().StringVar(...) }`), which
#   the extraction does not follow; the mol-dog-reaper formula uses them. --max-age & co. are String
#   flags parsed later with time.ParseDuration.
_REAPER_DB = {"db": "string", "port": "int", "dry-run": "bool"}
EXTRA_FLAGS: dict[str, dict[str, str]] = {
    "gt reaper databases": {"port": "int", "json": "bool"},
    "gt reaper scan": {
        **_REAPER_DB,
        "json": "bool",
        "max-age": "string",
        "purge-age": "string",
        "mail-age": "string",
        "stale-age": "string",
    },
    "gt reaper reap": {**_REAPER_DB, "json": "bool", "max-age": "string"},
    "gt reaper purge": {**_REAPER_DB, "json": "bool", "purge-age": "string", "mail-age": "string"},
    "gt reaper auto-close": {**_REAPER_DB, "json": "bool", "stale-age": "string"},
    "gt reaper run": {
        **_REAPER_DB,
        "max-age": "string",
        "purge-age": "string",
        "mail-age": "string",
        "stale-age": "string",
    },
}

# Required positionals that a flag can stand in for (path -> flags). The Use string says `<address>`,
# but the flag's own usage text says it replaces the argument:
#   gt mail send --to: "Recipient address (alternative to positional argument)"; --self: "Send to self".
ARG_FLAGS: dict[str, tuple[str, ...]] = {"gt mail send": ("to", "self")}

# Shorthand letters missing from the extraction (path -> {letter: long name}).
EXTRA_SHORTS: dict[str, dict[str, str]] = {}

# Commands cobra adds to every root command by itself (not in the cobra sources the grammar comes from).
BUILTIN_COMMANDS: dict[str, dict[str, Any]] = {
    "help": {"args": "[command...]", "min": 0, "max": None},
    "completion": {"args": "", "min": 0, "max": 0},
    "completion bash": {"args": "", "min": 0, "max": 0, "flags": {"no-descriptions": "bool"}},
    "completion zsh": {"args": "", "min": 0, "max": 0, "flags": {"no-descriptions": "bool"}},
    "completion fish": {"args": "", "min": 0, "max": 0, "flags": {"no-descriptions": "bool"}},
    "completion powershell": {"args": "", "min": 0, "max": 0, "flags": {"no-descriptions": "bool"}},
}

# Words that may precede a command in a shell line without being the program.
SHELL_KEYWORDS = frozenset(
    {"if", "then", "else", "elif", "do", "while", "until", "!", "time", "{", "exec", "command", "nohup"}
)

_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_PLACEHOLDER_VALUE = re.compile(r"\{\{|\$|^<.*>$|^\.\.\.$|^\{.*\}$")
_DURATION = re.compile(r"^[-+]?(0|((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+)$")
_BOOL_VALUES = frozenset({"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"})


# ---------------------------------------------------------------------------------------------------
# grammar data


@dataclass(frozen=True)
class _Node:
    path: str
    args: str
    min: int
    max: int | None
    required: tuple[str, ...]
    aliases: tuple[str, ...]
    hidden: bool
    flags: dict[str, str]  # own flags, long name -> type
    short: dict[str, str]  # own shorthands, letter -> long name
    persistent: frozenset[str]
    children: dict[str, str]  # name or alias -> child path
    parent: str | None


@dataclass(frozen=True)
class _FlagSet:
    long: dict[str, str]  # long name -> type
    short: dict[str, str]  # letter -> long name


@cache
def load_grammar() -> dict[str, Any]:
    """The packaged grammar document (parsed once)."""
    text = resources.files("gastown_ft").joinpath("data/cli_grammar.json").read_text(encoding="utf-8")
    return json.loads(text)


@cache
def _nodes(cli: str) -> dict[str, _Node]:
    raw: dict[str, Any] = dict(load_grammar()["clis"][cli])
    for sub, entry in BUILTIN_COMMANDS.items():
        raw.setdefault(f"{cli} {sub}", entry)
    children: dict[str, dict[str, str]] = {p: {} for p in raw}
    for path, entry in raw.items():
        if " " not in path:
            continue
        parent, name = path.rsplit(" ", 1)
        if parent in children:
            children[parent][name] = path
            for alias in entry.get("aliases") or []:
                children[parent].setdefault(alias, path)
    nodes: dict[str, _Node] = {}
    for path, entry in raw.items():
        flags = dict(entry.get("flags") or {})
        flags.update(EXTRA_FLAGS.get(path, {}))
        short = dict(entry.get("short") or {})
        short.update(EXTRA_SHORTS.get(path, {}))
        nodes[path] = _Node(
            path=path,
            args=entry.get("args", ""),
            min=entry.get("min", 0),
            max=entry.get("max", 0),
            required=tuple(entry.get("required") or ()),
            aliases=tuple(entry.get("aliases") or ()),
            hidden=bool(entry.get("hidden")),
            flags=flags,
            short=short,
            persistent=frozenset(entry.get("persistent") or ()),
            children=children[path],
            parent=path.rsplit(" ", 1)[0] if " " in path else None,
        )
    return nodes


def command_paths(cli: str | None = None) -> list[str]:
    """Every command path of the grammar (both CLIs unless `cli` is given), builtins excluded."""
    clis = [cli] if cli else list(CLIS)
    return [p for c in clis for p in load_grammar()["clis"][c]]


def command_info(path: str) -> dict[str, Any]:
    """The grammar entry of a canonical command path such as "bd create"."""
    cli = path.split(" ", 1)[0]
    return dict(load_grammar()["clis"][cli][path])


@cache
def _flagset(cli: str, path: str) -> _FlagSet:
    """Flags in effect for a command: its own plus the persistent flags of its ancestors (own wins)."""
    nodes = _nodes(cli)
    chain: list[_Node] = []
    p: str | None = path
    while p is not None:
        chain.append(nodes[p])
        p = nodes[p].parent
    long: dict[str, str] = {}
    short: dict[str, str] = {}
    for i, node in enumerate(reversed(chain)):  # root first; later (closer) definitions win
        own = i == len(chain) - 1
        for name, typ in node.flags.items():
            if own or name in node.persistent:
                long[name] = typ
        for letter, name in node.short.items():
            if own or name in node.persistent:
                short[letter] = name
    return _FlagSet(long, short)


# ---------------------------------------------------------------------------------------------------
# results


@dataclass
class CommandCheck:
    """The verdict on one command line (all gt/bd commands in it)."""

    command: str
    ok: bool
    cli: str | None = None  # "gt" | "bd" (of the first gt/bd command)
    path: str | None = None  # canonical path of the first gt/bd command, e.g. "bd create"
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------
# shell scanning


@dataclass
class _SimpleCommand:
    start: int
    end: int = 0
    words: list[str] = field(default_factory=list)  # shell source of each word, ready for shlex
    word_starts: list[int] = field(default_factory=list)
    parent: _SimpleCommand | None = None
    error: str | None = None


_PLACEHOLDER_AT = re.compile(r"<[A-Za-z_{][^<>\s;&]*>|<[A-Za-z][\w' -]*\w>")


class _Scanner(ShellScanner):
    """A small bash-subset parser: finds simple commands, their words, and nested substitutions.

    Words, quotes and substitutions are read by `ShellScanner`; this keeps redirections out of the
    words (here-document bodies skipped), `<placeholder>` and `{{template}}` words in, and `$VAR`,
    `${...}`, `$((...))` as their text, so that a flag value written as a variable reads as one.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.commands: list[_SimpleCommand] = []
        self.heredocs: list[tuple[str, bool]] = []
        self.unclosed = False

    def error(self, message: str, ctx: _SimpleCommand) -> None:
        self.unclosed = True
        ctx.error = message

    # -- lists -------------------------------------------------------------------------------------
    def parse(self) -> list[_SimpleCommand]:
        self.parse_list(None, None)
        return self.commands

    def parse_list(self, end: str | None, ctx: _SimpleCommand | None) -> None:
        t = self.text
        while (c := self.next_char(end)) is not None:
            if c == "\n":
                self.pos += 1
                self._read_heredocs()
            elif c == "&" and t.startswith(">", self.pos + 1):
                self._parse_simple(end, ctx)
            elif c in ";&|":
                self.pos += 1
            elif c == "#":
                self.skip_comment()
            elif c == "(":
                self.pos += 1
                self.parse_list(")", ctx)
                if self.pos < len(t):
                    self.pos += 1
            elif c in ")`":
                self.pos += 1  # stray closer
            else:
                self._parse_simple(end, ctx)

    def _read_heredocs(self) -> None:
        while self.heredocs:
            delim, _strip_tabs = self.heredocs.pop(0)
            self.heredoc_lines(lambda line, d=delim: line.strip() == d)

    # -- simple commands ---------------------------------------------------------------------------
    def _parse_simple(self, end: str | None, parent: _SimpleCommand | None) -> None:
        t = self.text
        cmd = _SimpleCommand(start=self.pos, parent=parent)
        self.commands.append(cmd)
        while (c := self.next_char(end)) is not None:
            if c == "\n" or c in ";|()" or (c == "&" and not t.startswith(">", self.pos + 1)):
                break
            if c == "#":
                self.skip_comment()
                break
            if self._at_redirect():
                self._parse_redirect(end, cmd)
                continue
            start = self.pos
            word = self.word(end, cmd)
            if word:
                cmd.words.append(word)
                cmd.word_starts.append(start)
                cmd.end = self.pos
        if not cmd.words:
            self.commands.remove(cmd)

    def _at_redirect(self) -> bool:
        t = self.text
        if t[self.pos] == "<" and _PLACEHOLDER_AT.match(t, self.pos):
            return False
        m = REDIRECT.match(t, self.pos)
        return bool(m) and (m.group(1) == "" or m.group(2)[0] in "<>")

    def _parse_redirect(self, end: str | None, cmd: _SimpleCommand) -> None:
        t = self.text
        m = REDIRECT.match(t, self.pos)
        assert m is not None
        op = m.group(2)
        self.pos = m.end()
        if op.endswith("&"):
            dup = FD_DUP.match(t, self.pos)
            if dup:
                self.pos = dup.end()
                return
        while self.pos < len(t) and t[self.pos] in " \t":
            self.pos += 1
        target = self.word(end, cmd)
        if op in ("<<", "<<-") and target:
            self.heredocs.append((re.sub(r"[\"'\\]", "", target), op == "<<-"))

    # -- words: placeholders and templates kept, substitutions collapsed ---------------------------
    def special_piece(self, end: str | None, cmd: _SimpleCommand) -> str | None:
        t = self.text
        if t[self.pos] == "<":
            m = _PLACEHOLDER_AT.match(t, self.pos)
            if m:
                self.pos = m.end()
                return shlex.quote(m.group(0)) if " " in m.group(0) or "'" in m.group(0) else m.group(0)
        if t.startswith("{{", self.pos):
            close = t.find("}}", self.pos + 2)
            nl = t.find("\n", self.pos)
            if close >= 0 and (nl < 0 or close < nl):
                chunk = t[self.pos : close + 2]
                self.pos = close + 2
                return shlex.quote(chunk) if any(ch in chunk for ch in " \t'\"") else chunk
        return None

    def expansion(self, cmd: _SimpleCommand, quoted: bool) -> str | None:
        t = self.text
        start = self.pos
        if t.startswith("$((", self.pos):
            self.balanced("((", "))")
            return t[start : self.pos].replace(" ", "").replace("\n", "") or "$"
        if t.startswith("$(", self.pos):
            self.pos += 2
            self.enclosed(")", cmd, "$(")
            return "$(...)"
        if t[self.pos] == "`":
            self.pos += 1
            self.enclosed("`", cmd, "`")
            return "$(...)"
        if not quoted and t.startswith("${", self.pos):
            self.balanced("{", "}")
            return t[start : self.pos].replace(" ", "").replace("\n", "") or "$"
        return None


@dataclass
class _Invocation:
    """A gt/bd simple command found in a line."""

    cli: str
    source: str  # its text, from the program word (env prefixes kept) to its last word
    tokens: list[str]  # shlex tokens after the program word
    error: str | None
    nested_in_cli: bool  # inside a substitution of another gt/bd command


_CONTINUATION = re.compile(r"[ \t]*\\\r?\n[ \t]*")


def _program_index(words: list[str]) -> int:
    """Index of the program word: after shell keywords and VAR=value assignments."""
    i = 0
    while i < len(words) and (words[i] in SHELL_KEYWORDS or _ASSIGNMENT.match(words[i])):
        i += 1
    return i


_TEMPLATE_TAG = re.compile(r"\{\{~?\s*[#/^][^{}]*\}\}")
_TEMPLATE_ELSE = re.compile(r"\{\{~?\s*else\b[^{}]*\}\}")


def _strip_template_blocks(text: str) -> str:
    """`{{#if x}}--dry-run{{/if}}` -> `--dry-run`: keep the text of template conditionals, drop the tags."""
    return _TEMPLATE_ELSE.sub(" ", _TEMPLATE_TAG.sub("", text))


def _strip_prompt(text: str) -> str:
    s = text.lstrip()
    return s[2:] if s.startswith("$ ") else text


def _invocations(text: str) -> tuple[list[_Invocation], bool]:
    """All gt/bd simple commands in a shell text, and whether the text had an unclosed construct."""
    scanner = _Scanner(_strip_template_blocks(_strip_prompt(text)))
    commands = scanner.parse()
    found: list[_Invocation] = []
    cli_cmds: set[int] = set()
    for cmd in commands:
        i = _program_index(cmd.words)
        if i >= len(cmd.words) or cmd.words[i] not in CLIS:
            continue
        cli_cmds.add(id(cmd))
        nested = False
        p = cmd.parent
        while p is not None:
            if id(p) in cli_cmds:
                nested = True
                break
            p = p.parent
        first = next((k for k in range(i) if cmd.words[k] not in SHELL_KEYWORDS), i)
        source = _CONTINUATION.sub(" ", scanner.text[cmd.word_starts[first] : cmd.end]).strip()
        error = cmd.error
        try:
            tokens = shlex.split(" ".join(cmd.words[i + 1 :]), comments=False, posix=True)
        except ValueError as exc:
            tokens, error = [], f"cannot tokenize: {exc}"
        found.append(_Invocation(cmd.words[i], source, tokens, error, nested))
    return found, scanner.unclosed


# ---------------------------------------------------------------------------------------------------
# grammar checking


def _edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance (Levenshtein plus adjacent transpositions)."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]


def _close_enough(word: str, candidate: str) -> bool:
    """A typo: one edit for short words, two for words of five letters or more."""
    return _edit_distance(word.lower(), candidate.lower()) <= (1 if len(word) <= 4 else 2)


def _suggest(word: str, candidates: list[str]) -> str | None:
    """A did-you-mean candidate: a close typo, else a prefix match (`--prio` -> `--priority`)."""
    if len(word) < 2 or not candidates:
        return None
    ranked = sorted(candidates, key=lambda c: (_edit_distance(word.lower(), c.lower()), c))
    if _close_enough(word, ranked[0]):
        return ranked[0]
    prefixed = sorted((c for c in candidates if c.startswith(word) and len(word) >= 3), key=len)
    return prefixed[0] if prefixed else None


def _is_placeholder(value: str) -> bool:
    return bool(_PLACEHOLDER_VALUE.search(value))


def _value_error(flag: str, typ: str, value: str) -> str | None:
    if _is_placeholder(value):
        return None
    bad = False
    if typ == "bool":
        bad = value not in _BOOL_VALUES
    elif typ == "int":
        try:
            int(value, 0)
        except ValueError:
            bad = True
    elif typ == "float":
        try:
            float(value)
        except ValueError:
            bad = True
    elif typ == "duration":
        bad = not _DURATION.match(value)
    if bad:
        return f"invalid value {value!r} for {flag} ({typ})"
    return None


def _takes_value(typ: str) -> bool:
    return typ != "bool"


def _find_path(cli: str, tokens: list[str]) -> tuple[str, set[int]]:
    """Cobra's Find: walk subcommands named by the leading non-flag tokens (flags may interleave)."""
    nodes = _nodes(cli)
    path = cli
    used: set[int] = set()
    i = 0
    while i < len(tokens):
        node = nodes[path]
        if not node.children:
            break
        tok = tokens[i]
        if tok == "--":
            break
        if tok.startswith("-") and len(tok) > 1:
            fs = _flagset(cli, path)
            i += 1
            if "=" in tok:
                continue
            if tok.startswith("--"):
                typ = fs.long.get(tok[2:])
            elif len(tok) == 2:
                name = fs.short.get(tok[1])
                typ = fs.long.get(name) if name else ("bool" if tok[1] == "h" else None)
            else:
                continue  # -abc / -fvalue: the value, if any, is attached
            if tok in ("-h", "--help"):
                continue
            if typ is None:
                # Unknown flag: cobra assumes it takes a value unless the next word is a subcommand.
                if i < len(tokens) and tokens[i] not in node.children:
                    i += 1
            elif _takes_value(typ):
                i += 1
            continue
        child = node.children.get(tok)
        if child is None:
            break
        used.add(i)
        path = child
        i += 1
    return path, used


def _check_invocation(cli: str, tokens: list[str], mention: bool = False) -> tuple[str, list[str], list[str]]:
    """(canonical path, errors, warnings) for one gt/bd invocation.

    With `mention`, the command is named rather than run (an inline code span in prose, such as
    "use `gt sling` to dispatch"): missing positional arguments and a missing value of a trailing
    flag are warnings, not errors. Unknown commands and flags stay errors.
    """
    nodes = _nodes(cli)
    path, used = _find_path(cli, tokens)
    node = nodes[path]
    fs = _flagset(cli, path)
    errors: list[str] = []
    warnings: list[str] = []
    if node.hidden:
        warnings.append(f"{path} is a hidden command")
    positionals: list[str] = []
    seen: set[str] = set()  # long names of the flags given
    help_asked = False
    n = len(tokens)

    def check_next_word(flag: str, typ: str, at: int) -> int:
        """Check the flag's value given as the next word; the index after that word."""
        if at >= n or at in used:
            (warnings if mention else errors).append(f"flag {flag} needs a value")
            return at
        err = _value_error(flag, typ, tokens[at])
        if err:
            errors.append(err)
        return at + 1

    i = 0
    while i < n:
        tok = tokens[i]
        i += 1
        if i - 1 in used:
            continue
        if tok == "--":
            positionals.extend(t for k, t in enumerate(tokens[i:], i) if k not in used)
            break
        if not tok.startswith("-") or tok == "-":
            positionals.append(tok)
            continue
        if tok.startswith("--"):
            name, eq, value = tok[2:].partition("=")
            flag = f"--{name}"
            typ = fs.long.get(name)
            if typ is None:
                if name == "help":
                    help_asked = True
                    continue
                hint = _suggest(name, sorted(fs.long))
                errors.append(
                    f"unknown flag {flag} for {path}" + (f" (did you mean --{hint}?)" if hint else "")
                )
                if not eq and i < n and not tokens[i].startswith("-") and i not in used:
                    i += 1  # pflag would not get here; assume the unknown flag took the next word
                continue
            seen.add(name)
            if eq:
                err = _value_error(flag, typ, value)
                if err:
                    errors.append(err)
            elif _takes_value(typ):
                i = check_next_word(flag, typ, i)
            continue
        # shorthand cluster: -a, -abc, -fvalue, -f=value, -f value
        letters = tok[1:]
        j = 0
        while j < len(letters):
            letter = letters[j]
            j += 1
            name = fs.short.get(letter)
            if name is None:
                if letter == "h":
                    help_asked = True
                    continue
                errors.append(
                    f"unknown shorthand flag -{letter} for {path}"
                    + (f" in {tok}" if len(letters) > 1 else "")
                )
                if j == len(letters) and i < n and not tokens[i].startswith("-") and i not in used:
                    i += 1  # as for unknown long flags: assume it took the next word
                break
            typ = fs.long[name]
            seen.add(name)
            flag = f"-{letter} (--{name})"
            rest = letters[j:]
            if rest.startswith("="):
                err = _value_error(flag, typ, rest[1:])
                if err:
                    errors.append(err)
                break
            if not _takes_value(typ):
                continue
            if rest:
                err = _value_error(flag, typ, rest)
                if err:
                    errors.append(err)
            else:
                i = check_next_word(flag, typ, i)
            break
    if node.children and node.max == 0 and positionals:
        # Not a command of the grammar; its flags cannot be judged against the parent's, so this is
        # the only error (cobra, too, stops at "unknown command").
        word = positionals[0]
        hint = _suggest(word, sorted(node.children))
        error = f"unknown subcommand {word!r} of {path}" + (f" (did you mean {hint!r}?)" if hint else "")
        return path, [error], warnings
    if help_asked:
        return path, errors, warnings  # cobra prints help before it validates positional arguments
    count = len(positionals)
    if seen & set(ARG_FLAGS.get(path, ())):
        count += 1  # the flag stands in for the first required argument
    if count < node.min:
        missing = list(node.required[count:]) if count < len(node.required) else []
        (warnings if mention else errors).append(
            f"missing argument {missing[0]}" if missing else f"{path} needs at least {node.min} arguments"
        )
    elif node.max is not None and count > node.max:
        errors.append(
            f"too many arguments for {path}: got {count}, accepts at most {node.max}"
            + (f" (usage: {path} {node.args})" if node.args else "")
        )
    if node.children and positionals and positionals[0] not in node.children:
        hint = _suggest(positionals[0], sorted(node.children))
        if hint and hint != positionals[0] and _close_enough(positionals[0], hint):
            warnings.append(f"{positionals[0]!r} is an argument of {path}; did you mean subcommand {hint!r}?")
    return path, errors, warnings


def validate_command(cmd: str, *, mention: bool = False) -> CommandCheck:
    """Check every gt/bd command in a shell command line against the grammar.

    `mention=True` checks a command that is only named (see `_check_invocation`).
    """
    invocations, _ = _invocations(cmd)
    if not invocations:
        return CommandCheck(command=cmd, ok=False, errors=["no gt or bd command found"])
    check = CommandCheck(command=cmd, ok=True)
    several = len(invocations) > 1
    for inv in invocations:
        if inv.error and not inv.tokens:
            path, errors, warnings = inv.cli, [inv.error], []
        else:
            path, errors, warnings = _check_invocation(inv.cli, inv.tokens, mention)
            if inv.error:
                errors.insert(0, inv.error)
        if check.cli is None:
            check.cli, check.path = inv.cli, path
        prefix = f"{path}: " if several else ""
        check.errors.extend(prefix + e for e in errors)
        check.warnings.extend(prefix + w for w in warnings)
    check.ok = not check.errors
    return check


# ---------------------------------------------------------------------------------------------------
# extraction from free text / markdown

_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+.-]*)[^\n]*$")
_SHELL_LANGS = frozenset(
    {"", "bash", "sh", "shell", "zsh", "console", "shell-session", "shellsession", "terminal"}
)
_INLINE = re.compile(r"(`+)(?!`)(.+?)(?<!`)\1(?!`)")
_BARE = re.compile(r"^\s*(?:\$ )?(gt|bd)(\s|$)")


def _commands_in_shell(text: str) -> list[str]:
    invocations, unclosed = _invocations(text)
    if unclosed and "\n" in text.strip():
        # Unbalanced quotes in a block (prose or output lines): fall back to single lines.
        out: list[str] = []
        for line in text.splitlines():
            out.extend(_commands_in_shell(line))
        return out
    return [inv.source for inv in invocations if not inv.nested_in_cli]


def _looks_like_command(line: str) -> bool:
    """A prose line that starts with gt/bd: only a command if its next word is a subcommand or flag."""
    m = _BARE.match(line)
    if not m:
        return False
    try:
        words = shlex.split(_strip_prompt(line.strip()), posix=True)
    except ValueError:
        return False
    if len(words) == 1:
        return line.lstrip().startswith("$ ")
    nxt = words[1]
    if nxt.startswith("-"):
        return True
    names = sorted(_nodes(words[0])[words[0]].children)
    if nxt in names:
        return True
    close = difflib.get_close_matches(nxt, names, n=1, cutoff=0.8)
    return bool(close) and nxt.isalpha() and nxt.islower()


def _parts(text: str) -> Iterator[tuple[str | None, str]]:
    """(language, body) for each fenced block and (None, line) for each line outside fences, in order."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            yield None, lines[i]
            i += 1
            continue
        indent, fence, lang = m.group(1), m.group(2), m.group(3).lower()
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            line = lines[i]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            i += 1
        i += 1  # the closing fence
        yield lang, "\n".join(body)


def _prompted_lines(body: str) -> str | None:
    """If a block uses `$ ` prompts, only the prompted lines (and their continuations) are commands."""
    lines = body.splitlines()
    if not any(line.lstrip().startswith("$ ") for line in lines):
        return None
    keep: list[str] = []
    cont = False
    for line in lines:
        s = line.lstrip()
        if s.startswith("$ "):
            keep.append(s[2:])
            cont = s.endswith("\\")
        elif cont:
            keep.append(line)
            cont = line.endswith("\\")
    return "\n".join(keep)


def _extract(text: str) -> list[tuple[str, bool]]:
    """(command, is_inline_mention) pairs; see `extract_commands`."""
    out: list[tuple[str, bool]] = []
    for lang, part in _parts(text):
        if lang is not None:
            if lang in _SHELL_LANGS:
                prompted = _prompted_lines(part)
                out.extend((c, False) for c in _commands_in_shell(prompted if prompted is not None else part))
            continue
        spans = [m.group(2).strip() for m in _INLINE.finditer(part)]
        if spans:
            for span in spans:
                if _strip_prompt(span).strip() in CLIS:
                    continue  # `bd` as a name, not a command
                out.extend((c, True) for c in _commands_in_shell(span))
            continue
        stripped = part.strip()
        if stripped.startswith("$ ") or _looks_like_command(part):
            out.extend((c, False) for c in _commands_in_shell(stripped))
    return out


def extract_commands(text: str) -> list[str]:
    """gt/bd command lines in free text or markdown, in order of appearance.

    Sources: fenced code blocks (bash/sh/console or no language; with `$ ` prompts only the prompted
    lines), inline code spans, `$ ` prompt lines, and bare lines that start with gt/bd followed by a
    subcommand or flag (so prose such as "bd is the beads tool" is skipped). Backslash continuations and
    multi-line quotes are joined; commands inside `$(...)`, pipes and chains are found on their own.
    """
    return [c for c, _ in _extract(text)]


def commands_valid(text: str) -> tuple[int, int, list[CommandCheck]]:
    """(valid, total, failed checks) over the gt/bd commands extracted from `text`.

    Commands from inline code spans in prose are checked as mentions (`validate_command(mention=True)`).
    """
    checks = [validate_command(c, mention=inline) for c, inline in _extract(text)]
    failures = [c for c in checks if not c.ok]
    return len(checks) - len(failures), len(checks), failures
