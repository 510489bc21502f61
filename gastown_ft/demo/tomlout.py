"""A small TOML writer for formula files: tables, arrays of tables, strings, ints, bools, string lists.

Output reads like a hand-written formula (multi-line descriptions in triple quotes) and parses
back with `tomllib` to the same data.
"""

from __future__ import annotations

import json
import re
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else json.dumps(k)


def _string(s: str) -> str:
    if "\n" not in s:
        return json.dumps(s, ensure_ascii=False)
    body = s.replace("\\", "\\\\").replace('"""', '""\\"')
    if body.endswith('"'):
        body = body[:-1] + '\\"'
    return '"""\n' + body + '"""'


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, (list, tuple)) and all(not isinstance(x, dict) for x in v):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as a TOML value")


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def _emit_table(out: list[str], path: list[str], table: dict[str, Any], header: str | None) -> None:
    scalars = [(k, v) for k, v in table.items() if not isinstance(v, dict) and not _is_table_array(v)]
    subs = [(k, v) for k, v in table.items() if isinstance(v, dict) or _is_table_array(v)]
    if header is not None:
        if out and out[-1] != "":
            out.append("")
        out.append(header)
    for k, v in scalars:
        out.append(f"{_key(k)} = {_value(v)}")
    for k, v in subs:
        sub_path = [*path, _key(k)]
        name = ".".join(sub_path)
        if isinstance(v, dict):
            _emit_table(out, sub_path, v, f"[{name}]")
        else:
            for item in v:
                _emit_table(out, sub_path, item, f"[[{name}]]")


def dumps(doc: dict[str, Any], comment: str = "") -> str:
    """`doc` as TOML text, with `comment` (one or more lines) as a leading # block."""
    out: list[str] = []
    if comment:
        out.extend(("# " + line).rstrip() for line in comment.splitlines())
        out.append("")
    _emit_table(out, [], doc, None)
    return "\n".join(out).rstrip("\n") + "\n"
