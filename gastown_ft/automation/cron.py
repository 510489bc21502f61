"""Cron expressions: five fields (minute hour day month weekday), or @daily and friends.

Checked here without importing Dagster (the CLI loads the config without it). The sensors module
checks again with Dagster's own parser and falls back to the default, so an expression accepted here
but not by the scheduler can never stop the code location from loading.
"""

from __future__ import annotations

import re

ALIASES = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})
_MONTHS = {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())}
_DAYS = {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}
# (name, lowest, highest, names allowed for values)
_FIELDS = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
_ITEM = re.compile(r"^(\*|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/([0-9]+))?$")
HINT = "is not a five-field cron expression (minute hour day month weekday), e.g. '0 3 * * *'"


def _value(token: str, lo: int, hi: int, names: dict[str, int]) -> bool:
    if token.isdigit():
        return lo <= int(token) <= hi
    return token in names


def _field_ok(field: str, lo: int, hi: int, names: dict[str, int]) -> bool:
    for item in field.lower().split(","):
        m = _ITEM.match(item)
        if not m:
            return False
        base, step = m.groups()
        if step is not None and int(step) == 0:
            return False
        if base == "*":
            continue
        ends = base.split("-")
        if not all(_value(e, lo, hi, names) for e in ends):
            return False
    return True


def cron_problem(expr: str) -> str | None:
    """Why `expr` is not a cron expression a schedule can run, or None when it is one."""
    if not isinstance(expr, str):
        return HINT
    expr = expr.strip()
    if expr.lower() in ALIASES:
        return None
    fields = expr.split()
    if len(fields) != 5:
        return HINT
    for text, (name, lo, hi, names) in zip(fields, _FIELDS, strict=True):
        if not _field_ok(text, lo, hi, names):
            return f"{HINT}: the {name} field {text!r} is outside {lo}-{hi}"
    return None
