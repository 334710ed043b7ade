"""A time of day in a person's zone: when the next one comes, across DST changes.

``next_local_time`` is the instant of the next ``at`` o'clock in ``zone``
strictly after ``after``. A wall time that a DST change skips resolves to the
instant the clocks jumped over it, a repeated one to its first occurrence
(``crm.domain.calendar.local_to_utc``), so a daily 08:00 is 08:00 on the
wall every day, winter or summer.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from crm.domain.calendar import as_utc, local_to_utc


def next_local_time(after: datetime, zone: str, at: time) -> datetime:
    """The next ``at`` in ``zone`` strictly after ``after`` (aware), in UTC."""
    tz = ZoneInfo(zone)
    day = as_utc(after).astimezone(tz).date()
    for offset in range(3):  # today's may have passed; a DST day is at most a day off
        candidate = local_to_utc(day + timedelta(days=offset), at, tz)
        if candidate > as_utc(after):
            return candidate
    raise AssertionError("unreachable: a day has one 'at' o'clock")


def local_date(instant: datetime, zone: str) -> date:
    """The calendar date in ``zone`` at ``instant`` (aware)."""
    return as_utc(instant).astimezone(ZoneInfo(zone)).date()
