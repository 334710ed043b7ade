"""CEL expressions of automations: compiled once, evaluated over a record's data.

The names an expression may use are ``record``, ``previous``, ``event``,
``vars`` and ``now`` (see ``crm.domain.automation``), and these functions
besides CEL's own:

- ``next_anniversary(date, now, "09:00", "Europe/Paris")``: the next instant,
  after ``now``, that is ``date``'s month and day (``date`` a timestamp or a
  ``YYYY-MM-DD`` string) at that wall-clock time in that time zone; 29
  February falls on 28 February in other years.
- ``at_time(instant, "09:00", "Europe/Paris")``: that day's wall-clock time.

Evaluation is deterministic (``now`` is an input, never the clock), so
workflows evaluate expressions in their own code. ``ExpressionError`` says why
an expression could not be evaluated on the given data: a missing field, a
value of the wrong type, a division by zero.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import cel

from crm.domain.calendar import local_to_utc

#: The names an automation's expressions may refer to.
NAMES: tuple[str, ...] = ("record", "previous", "event", "vars", "now")

_COMPREHENSION = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")
_STRING_LITERAL = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'')
_REFUSED_VALUE = re.compile(r"Function '(\w+)' error: .*?_DataError: (.*?)(?:\. Check function|$)")
_SYNTAX_ERROR = re.compile(r"<input>:\d+:(\d+): Syntax error: (.*)$")
_FIELD_REFERENCE = re.compile(r"(?<![\w.])(record|previous|vars)\.([A-Za-z_]\w*)")


#: The values an expression is evaluated with: a mapping of names, or a ``bound`` context,
#: made once to evaluate many expressions on the same values.
Names = Mapping[str, Any] | cel.Context


def bound(names: Mapping[str, Any]) -> cel.Context:
    """``names`` with crmflow's functions, ready to evaluate many expressions with."""
    return cel.Context(dict(names), FUNCTIONS)


class ExpressionError(ValueError):
    """An expression does not compile, or cannot be evaluated on the data given.

    ``of_data`` is True when one of crmflow's functions refused a value (a
    string that is no date, an unknown time zone): a fault of that record's
    data, not of the expression.
    """

    def __init__(self, message: str, *, of_data: bool = False) -> None:
        super().__init__(message)
        self.of_data = of_data


class _DataError(ValueError):
    """A function's argument is of the right type but not a valid value."""


@functools.lru_cache(maxsize=4096)
def compiled(source: str) -> cel.Program:
    """The program of ``source``, compiled once per process; raises ExpressionError."""
    try:
        return cel.compile(source)
    except ValueError as err:
        message = _first_line(str(err))
        parsed = _SYNTAX_ERROR.search(message)
        if parsed:
            message = f"syntax error at column {parsed.group(1)}: {parsed.group(2)}"
        raise ExpressionError(message or "syntax error") from None


def evaluate(source: str, names: Names) -> Any:
    """The value of ``source`` with ``names`` bound; raises ExpressionError."""
    program = compiled(source)
    context = names if isinstance(names, cel.Context) else bound(names)
    try:
        return program.execute(context)
    except KeyError as err:
        raise ExpressionError(f"no field {err.args[0]!r} in the data") from None
    except (TypeError, RuntimeError, ZeroDivisionError, ValueError, OverflowError) as err:
        message = _first_line(str(err))
        refused = _REFUSED_VALUE.search(message)
        if refused:  # one of FUNCTIONS refused a value: say which, not how cel wraps it
            raise ExpressionError(f"{refused.group(1)}: {refused.group(2)}", of_data=True) from None
        raise ExpressionError(message) from None


def holds(source: str, names: Names) -> bool:
    """Whether the condition ``source`` is true; a non-boolean value is an ExpressionError."""
    value = evaluate(source, names)
    if not isinstance(value, bool):
        raise ExpressionError(f"a condition must be true or false, this one gave {value!r}")
    return value


def instant(source: str, names: Names) -> datetime:
    """The timestamp ``source`` evaluates to (UTC); anything else is an ExpressionError."""
    value = evaluate(source, names)
    if not isinstance(value, datetime):
        raise ExpressionError(f"this must give a timestamp, it gave {value!r}")
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def referenced_names(source: str) -> set[str]:
    """The top-level names ``source`` uses, without its comprehension variables."""
    bound = set(_COMPREHENSION.findall(_without_strings(source)))
    return {name for name in compiled(source).variables() if name not in bound}


def referenced_fields(source: str) -> set[tuple[str, str]]:
    """The ``(record|previous|vars, field)`` pairs ``source`` names."""
    return set(_FIELD_REFERENCE.findall(_without_strings(source)))


def _without_strings(source: str) -> str:
    """``source`` with its string literals emptied, so text in them is not read as names."""
    return _STRING_LITERAL.sub('""', source)


def next_anniversary(day: object, now: object, wall: object, zone: object) -> datetime:
    """The next ``day``'s month and day at ``wall`` in ``zone`` strictly after ``now``."""
    month_day = _as_date(day)
    after = _as_datetime(now)
    local_zone = _zone(zone)
    wall_time = _wall_time(wall)
    year = after.astimezone(local_zone).year
    for candidate_year in (year, year + 1, year + 2):
        candidate = _local(_anniversary(month_day, candidate_year), wall_time, local_zone)
        if candidate > after:
            return candidate
    raise ValueError("no anniversary within two years")  # unreachable


def at_time(instant_value: object, wall: object, zone: object) -> datetime:
    """The instant of ``wall`` on ``instant_value``'s day in ``zone``."""
    local_zone = _zone(zone)
    day = _as_datetime(instant_value).astimezone(local_zone).date()
    return _local(day, _wall_time(wall), local_zone)


FUNCTIONS: dict[str, Any] = {"next_anniversary": next_anniversary, "at_time": at_time}


def _anniversary(month_day: date, year: int) -> date:
    if month_day.month == 2 and month_day.day == 29:
        try:
            return date(year, 2, 29)
        except ValueError:
            return date(year, 2, 28)
    return month_day.replace(year=year)


def _local(day: date, wall_time: time, zone: ZoneInfo) -> datetime:
    """``wall_time`` on ``day`` in ``zone``, in UTC; in a spring-forward gap, the instant
    the clocks jump; in a repeated hour, its first occurrence."""
    return local_to_utc(day, wall_time, zone)


def _as_date(value: object) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, str):
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            raise _DataError(f"{value!r} is not a date (YYYY-MM-DD)") from None
    raise TypeError(f"{value!r} is not a date")


def _as_datetime(value: object) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{value!r} is not a timestamp")
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _wall_time(value: object) -> time:
    try:
        return time.fromisoformat(str(value))
    except ValueError:
        raise _DataError(f"{value!r} is not a time of day (HH:MM)") from None


def _zone(value: object) -> ZoneInfo:
    try:
        return ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise _DataError(f"unknown time zone {value!r}") from None


def _first_line(message: str) -> str:
    lines = [line for line in message.splitlines() if line.strip()]
    return lines[0] if lines else message


def typed_fields(values: Mapping[str, Any], types: Mapping[str, str]) -> dict[str, Any]:
    """``values`` as CEL sees them: declared ``timestamp`` fields as datetimes, ``double``
    fields as floats. A value that does not fit its type is left as it is (the expression
    using it then fails with a type error, visibly)."""
    typed = dict(values)
    for name, kind in types.items():
        value = typed.get(name)
        if kind == "timestamp" and isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                continue
            typed[name] = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        elif kind == "double" and isinstance(value, int) and not isinstance(value, bool):
            typed[name] = float(value)
    return typed


#: A value of each field type, to evaluate expressions on when a definition is checked.
SAMPLE_VALUES: dict[str, Any] = {
    "string": "sample",
    "int": 1,
    "double": 1.0,
    "bool": True,
    "timestamp": datetime(2026, 1, 1, tzinfo=UTC),
    "list": [],
    "map": {},
}
