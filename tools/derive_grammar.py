#!/usr/bin/env python3
"""Derive the compact CLI grammar the validator needs from the shared gastown reference.

Reads `../shared/gastown-reference/gt_cli.json` and `bd_cli.json` (a heuristic extraction of the cobra
command definitions of gastown and beads) and writes `gastown_ft/data/cli_grammar.json`, which the
package reads at run time (the package itself never reads ../shared).

Output layout (keys sorted, so the file is deterministic):

    {"format": 1, "generated_by": ..., "sources": {"gt": {"file", "sha256", "commands"}, ...},
     "clis": {"gt": {"gt": CMD, "gt account add": CMD, ...}, "bd": {...}}}

    CMD = {"args": "<bead-id> [target]",        # the cobra Use string after the name ("" when none)
           "min": 1, "max": 2,                 # positional count bounds; max null = variadic
           "required": ["<bead-id>"],          # names of the required positionals, in order
           "aliases": [...], "hidden": true,   # only when non-empty / true
           "flags": {"long-name": TYPE},       # TYPE: bool | string | int | float | duration | strings
           "short": {"x": "long-name"},        # shorthand letters
           "persistent": ["long-name", ...]}   # flags inherited by subcommands

A flag of type "bool" takes no value; every other type takes exactly one (cobra/pflag semantics).

Usage: .venv/bin/python tools/derive_grammar.py [--reference DIR] [--out FILE] [--check]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REFERENCE = REPO_ROOT.parent / "shared" / "gastown-reference"
DEFAULT_OUT = REPO_ROOT / "gastown_ft" / "data" / "cli_grammar.json"
CLIS = ("gt", "bd")
FORMAT = 1

# pflag type names in the extraction -> what the validator needs to know.
# "" occurs once (bd close --reason, registered through registerCloseReasonFlag, a StringP): a value flag.
TYPE_MAP = {
    "Bool": "bool",
    "String": "string",
    "": "string",
    "Int": "int",
    "Int64": "int",
    "Uint": "int",
    "Float64": "float",
    "Duration": "duration",
    "StringArray": "strings",
    "StringSlice": "strings",
    "IntSlice": "strings",
}


def flag_type(raw: str) -> str:
    """The validator's type for a pflag type name; unknown names count as value-taking strings."""
    return TYPE_MAP.get(raw, "string")


def _split_top(spec: str, sep: str | None) -> list[str]:
    """Split `spec` at `sep` (None: whitespace) outside <...>, [...] and "..."."""
    out: list[str] = []
    cur: list[str] = []
    depth = 0
    quoted = False
    for ch in spec:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in "<[":
            depth += 1
        elif not quoted and ch in ">]":
            depth = max(0, depth - 1)
        is_sep = ch.isspace() if sep is None else ch == sep
        if is_sep and depth == 0 and not quoted:
            if cur:
                out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if "".join(cur).strip():
        out.append("".join(cur).strip())
    return [x for x in out if x]


def _parse_alternative(alt: str) -> tuple[int, int | None, list[str]]:
    """(min, max, required names) of one alternative of a cobra Use args string."""
    required: list[str] = []
    optional = 0
    variadic = False
    flag_wants_value = False
    for item in _split_top(alt, None):
        if item.startswith("-"):
            # A flag mentioned in the usage (`--of <canonical>`, `--gated`, `--all`): not a positional;
            # a bare `--flag` is followed by its value.
            flag_wants_value = "=" not in item
            continue
        if flag_wants_value and item.startswith("<"):
            flag_wants_value = False
            continue
        flag_wants_value = False
        if item.startswith("["):
            inner = item[1:].split("]", 1)[0].strip()
            if inner.lower() == "flags":
                continue
            if inner.startswith("-- ") or inner == "--":
                variadic = True  # `[-- git-commit-args...]`: pass-through arguments
                continue
            if inner.startswith("-"):
                continue  # `[--peer name]`, `[--branch=<branch>]`, `[--all]`: flags
            optional += 1
            variadic = variadic or "..." in item
            continue
        name = item.strip('"')
        required.append(name.replace("...", ""))
        variadic = variadic or "..." in item
    lo = len(required)
    hi = None if variadic else lo + optional
    return lo, hi, required


def parse_args_spec(spec: str) -> dict[str, Any]:
    """Bounds on the positional arguments from a cobra Use args string such as "<bead-id> [target]".

    `<x>` (and a bare or quoted word) is required, `[x]` optional, `...` inside or after either makes
    it variadic; `[flags]` and flag mentions are ignored. Top-level alternatives (`<name>... | --all`)
    give the loosest bounds of the alternatives, so nothing is required unless every form requires it.
    """
    alts = [_parse_alternative(a) for a in _split_top(spec, "|")] or [(0, 0, [])]
    lo = min(a[0] for a in alts)
    his = [a[1] for a in alts]
    hi = None if any(h is None for h in his) else max(h for h in his if h is not None)
    required = next(a[2] for a in alts if a[0] == lo)
    return {"min": lo, "max": hi, "required": required}


def derive_cli(commands: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for c in commands:
        path = re.sub(r"\s+", " ", c["path"].strip())
        spec = (c.get("args") or "").strip()
        entry: dict[str, Any] = {"args": spec, **parse_args_spec(spec)}
        if not entry["required"]:
            del entry["required"]
        aliases = sorted(a for a in c.get("aliases") or [] if a)
        if aliases:
            entry["aliases"] = aliases
        if c.get("hidden"):
            entry["hidden"] = True
        flags: dict[str, str] = {}
        short: dict[str, str] = {}
        persistent: list[str] = []
        for f in c.get("flags") or []:
            name = f["name"]
            flags[name] = flag_type(f.get("type", ""))
            if f.get("short"):
                short[f["short"]] = name
            if f.get("persistent"):
                persistent.append(name)
        if flags:
            entry["flags"] = flags
        if short:
            entry["short"] = short
        if persistent:
            entry["persistent"] = sorted(set(persistent))
        out[path] = entry
    return out


def derive(reference: Path) -> dict[str, Any]:
    """The whole grammar document from a gastown-reference directory."""
    sources: dict[str, Any] = {}
    clis: dict[str, Any] = {}
    for cli in CLIS:
        src = reference / f"{cli}_cli.json"
        raw = src.read_bytes()
        commands = json.loads(raw)
        clis[cli] = derive_cli(commands)
        sources[cli] = {
            "file": src.name,
            "sha256": hashlib.sha256(raw).hexdigest(),
            "commands": len(clis[cli]),
        }
    return {
        "format": FORMAT,
        "generated_by": "tools/derive_grammar.py",
        "sources": sources,
        "clis": clis,
    }


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True, indent=0, separators=(",", ":"), ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="exit 1 if --out differs from a fresh derivation")
    ns = ap.parse_args(argv)
    text = render(derive(ns.reference))
    if ns.check:
        same = ns.out.is_file() and ns.out.read_text(encoding="utf-8") == text
        print(f"{ns.out}: {'up to date' if same else 'OUT OF DATE'}")
        return 0 if same else 1
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(text, encoding="utf-8")
    print(f"wrote {ns.out} ({len(text.encode())} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
