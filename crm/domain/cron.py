"""Cron expressions as a scheduled automation names them, checked before Temporal sees them.

Five fields (minute, hour, day of month, month, day of week), each ``*``, a
value, a range ``a-b``, a step ``*/n`` or ``a-b/n``, or a comma-separated
list of those; months and days may be named (``JAN``, ``MON``); Sunday is 0
or 7. Or one of ``@yearly``, ``@annually``, ``@monthly``, ``@weekly``,
``@daily``, ``@midnight``, ``@hourly``. This is the part of the syntax
Temporal Schedules and classic cron share, so an expression accepted here
fires the same way there.
"""

from __future__ import annotations

import re

MACROS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")

#: name, lowest, highest, names (the first is ``lowest``)
_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)

_PART = re.compile(r"^(?P<range>\*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:/(?P<step>\d+))?$")


def cron_problem(expression: str) -> str | None:
    """What is wrong with ``expression``, or None when it is a cron expression."""
    text = expression.strip()
    if text.startswith("@"):
        return None if text.lower() in MACROS else f"unknown macro {text!r}; use {sorted(MACROS)}"
    fields = text.split()
    if len(fields) != len(_FIELDS):
        return "five fields: minute hour day-of-month month day-of-week"
    for value, (name, low, high, names) in zip(fields, _FIELDS, strict=True):
        for part in value.split(","):
            problem = _part_problem(part, low, high, names)
            if problem is not None:
                return f"{name} {value!r}: {problem}"
    return None


def _part_problem(part: str, low: int, high: int, names: tuple[str, ...]) -> str | None:
    match = _PART.match(part)
    if match is None:
        return f"{part!r} is not a value, range or step"
    if match["step"] is not None and int(match["step"]) == 0:
        return "a step is at least 1"
    if match["range"] == "*":
        return None
    ends = match["range"].split("-")
    numbers = []
    for end in ends:
        number = _number(end, low, names)
        if number is None or not low <= number <= high:
            return f"{end!r} is not within {low}-{high}"
        numbers.append(number)
    if len(numbers) == 2 and numbers[0] > numbers[1]:
        return f"the range {match['range']!r} runs backwards"
    return None


def _number(text: str, low: int, names: tuple[str, ...]) -> int | None:
    if text.isdigit():
        return int(text)
    upper = text.upper()
    return names.index(upper) + low if upper in names else None
