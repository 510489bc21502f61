"""A `gt` / `bd` invocation read against the packaged CLI grammar: which command, which flags, which
arguments.

`gastown_ft.corpus.grammar.validate_command` says whether a command line is valid (cobra/pflag rules);
this module gives the parts a consumer acts on (the policy, the simulated town), from the same grammar
data: the canonical path (aliases resolved: `bd new` is `bd create`), flag values by long name
(shorthands resolved through the grammar), and the positional arguments.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from functools import cache

from gastown_ft.corpus.grammar import load_grammar, validate_command


@dataclass
class ParsedCommand:
    cli: str
    path: str  # canonical, e.g. "bd create"
    positionals: list[str] = field(default_factory=list)
    flags: dict[str, list[str]] = field(default_factory=dict)  # long name -> values ("true" for bools)
    unknown_flags: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # from the grammar check; empty when valid

    @property
    def valid(self) -> bool:
        return not self.errors

    def flag(self, name: str, default: str | None = None) -> str | None:
        values = self.flags.get(name)
        return values[-1] if values else default

    def has(self, name: str) -> bool:
        v = self.flag(name)
        return v is not None and v.lower() not in ("false", "0", "f")

    def values(self, name: str) -> list[str]:
        """All values of a repeatable flag, comma lists split (pflag `strings` flags)."""
        out: list[str] = []
        for v in self.flags.get(name, []):
            out.extend(x for x in v.split(",") if x)
        return out


@cache
def _index(cli: str) -> tuple[dict[str, dict[str, str]], dict[str, dict]]:
    """(children by path: word or alias -> child path, entries by path)."""
    entries = dict(load_grammar()["clis"][cli])
    children: dict[str, dict[str, str]] = {p: {} for p in entries}
    for path, entry in entries.items():
        if " " in path:
            parent, name = path.rsplit(" ", 1)
            if parent in children:
                children[parent][name] = path
                for alias in entry.get("aliases") or []:
                    children[parent].setdefault(alias, path)
    return children, entries


@cache
def _flags(cli: str, path: str) -> tuple[dict[str, str], dict[str, str]]:
    """(long name -> type, shorthand -> long name) in force for a command: its own flags and the
    persistent flags of its ancestors."""
    _, entries = _index(cli)
    chain = [path]
    while " " in chain[-1]:
        chain.append(chain[-1].rsplit(" ", 1)[0])
    long: dict[str, str] = {}
    short: dict[str, str] = {}
    for p in reversed(chain):
        entry = entries.get(p, {})
        own = p == path
        persistent = set(entry.get("persistent") or ())
        for name, typ in (entry.get("flags") or {}).items():
            if own or name in persistent:
                long[name] = typ
        for letter, name in (entry.get("short") or {}).items():
            if own or name in persistent:
                short[letter] = name
    return long, short


def parse_invocation(cli: str, args: list[str]) -> ParsedCommand:
    """Read `gt`/`bd` arguments (the words after the program) against the grammar."""
    children, _ = _index(cli)
    path = cli
    rest: list[str] = []
    i = 0
    descending = True
    while i < len(args):  # the command path: leading words that name subcommands, flags may interleave
        a = args[i]
        if descending and not a.startswith("-") and a in children.get(path, {}):
            path = children[path][a]
            i += 1
            continue
        if a.startswith("-") and descending:
            long, short = _flags(cli, path)
            name = a[2:].split("=", 1)[0] if a.startswith("--") else short.get(a[1:2], "")
            rest.append(a)
            if "=" not in a and long.get(name, "bool") != "bool" and (a.startswith("--") or len(a) == 2):
                if i + 1 < len(args):
                    rest.append(args[i + 1])
                    i += 1
            i += 1
            continue
        descending = False
        rest.append(a)
        i += 1
    parsed = ParsedCommand(cli=cli, path=path)
    check = validate_command(shlex.join([cli, *args]))
    parsed.errors = list(check.errors)
    long, short = _flags(cli, path)
    i = 0
    while i < len(rest):
        a = rest[i]
        i += 1
        if a == "--":
            parsed.positionals.extend(rest[i:])
            break
        if not a.startswith("-") or a == "-":
            parsed.positionals.append(a)
            continue
        if a.startswith("--"):
            name, eq, value = a[2:].partition("=")
            typ = long.get(name)
            if typ is None:
                parsed.unknown_flags.append(a)
                continue
            if not eq:
                if typ == "bool":
                    value = "true"
                elif i < len(rest):
                    value = rest[i]
                    i += 1
            parsed.flags.setdefault(name, []).append(value)
            continue
        letters = a[1:]
        for k, letter in enumerate(letters):
            name = short.get(letter)
            if name is None:
                parsed.unknown_flags.append(f"-{letter}")
                break
            if long.get(name, "bool") == "bool":
                parsed.flags.setdefault(name, []).append("true")
                continue
            value = letters[k + 1 :].lstrip("=")
            if not value and i < len(rest):
                value = rest[i]
                i += 1
            parsed.flags.setdefault(name, []).append(value)
            break
    return parsed
