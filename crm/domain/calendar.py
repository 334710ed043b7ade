"""Business calendars: opening hours, holidays and time zones for SLA arithmetic.

A ``CalendarSpec`` is plain data (str/bool/list/dict fields) so it travels through
YAML policy files and Temporal's JSON payload converter unchanged.
``BusinessCalendar.from_spec`` validates it once and then answers questions such
as "when is this due if we owe the customer 8 business hours?" or "what is the
end of the second working day after today?".

The module is deterministic and safe to call from workflow code: it never reads
the wall clock, uses only the standard library, and its only I/O is zoneinfo
loading time-zone rules from the tz database.

How time is measured:

* Business time is real elapsed time. Each working day has one open period,
  from its opening to its closing wall-clock time in the calendar's time zone;
  both boundaries are converted to UTC and everything is counted in UTC. An hour
  skipped by a daylight-saving change inside working hours is therefore not
  counted, and an hour repeated by one is counted twice.
* A wall-clock time that does not exist on a given day (it falls in the gap of
  a spring-forward change) means the instant the clocks jump: an office that
  opens at 02:30 on a day when 02:00-03:00 is skipped opens at 03:00.
* A wall-clock time that occurs twice (in the repeated hour of a fall-back
  change) means its first occurrence (``fold=0``); the period then lasts until
  the other boundary, so an office open "01:30-04:00" on that day is open through
  the whole repeated hour once it has opened.
* Periods are half-open, ``[opening, closing)``: at the closing instant the
  calendar is closed, but ``add`` may return the closing instant itself when
  that is exactly where the requested business time runs out.

The results depend on the tz database the process finds. A change in the rules
of a time zone (a country abolishing DST, say) between a workflow's first run
and a replay would change the results, as with any other tz-aware computation.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["BusinessCalendar", "CalendarError", "CalendarSpec", "as_utc", "local_to_utc"]

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

MAX_SEARCH_DAYS = 3660
"""How many calendar days a search for business time may scan before giving up.

Ten years is far beyond any SLA; reaching it means the calendar has (almost) no
open time left, for example because every remaining working day is a holiday.
"""

_HOURS_PATTERN = re.compile(r"^\s*(\d{2}):(\d{2})\s*-\s*(\d{2}):(\d{2})\s*$")
_ONE_DAY = timedelta(days=1)
_ONE_SECOND = timedelta(seconds=1)
_ZERO = timedelta(0)


def as_utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime; a naive one is taken as UTC (as SQLite returns them).

    The calendar's own methods are stricter: they refuse a naive datetime.
    """
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class CalendarError(ValueError):
    """A calendar spec is invalid, or a calendar has no business time where some is needed."""


@dataclass(frozen=True)
class CalendarSpec:
    """Serializable description of a business calendar.

    ``hours`` maps a weekday ("mon".."sun") to its opening hours "HH:MM-HH:MM" in
    the calendar's time zone; a weekday that is missing is closed all day and
    "00:00-24:00" is open all day. ``holidays`` are ISO dates ("2026-12-25"),
    local to the calendar's time zone, that are closed all day.
    ``around_the_clock`` makes every instant business time and ignores ``hours``
    and ``holidays``.
    """

    timezone: str = "UTC"
    hours: dict[str, str] = field(
        default_factory=lambda: {d: "09:00-17:00" for d in ("mon", "tue", "wed", "thu", "fri")}
    )
    holidays: list[str] = field(default_factory=list)
    around_the_clock: bool = False


@dataclass(frozen=True)
class _OpeningHours:
    """One weekday's opening and closing wall-clock time; closing may be 24:00."""

    opens: time
    closes: time
    closes_at_midnight: bool


class BusinessCalendar:
    """Opening hours, holidays and a time zone, with arithmetic in business time.

    Build one with ``from_spec`` (or ``around_the_clock``). Every method takes
    timezone-aware datetimes, raises ``ValueError`` for naive ones, and returns
    aware datetimes in UTC.
    """

    def __init__(self, spec: CalendarSpec) -> None:
        """Validate ``spec`` and build the calendar; raises ``CalendarError`` if it is invalid."""
        self._spec = spec
        self._zone = _parse_timezone(spec.timezone)
        self._always_open = _parse_around_the_clock(spec.around_the_clock)
        self._hours: dict[int, _OpeningHours] = {}
        self._holidays: frozenset[date] = frozenset()
        if not self._always_open:
            self._hours = _parse_hours(spec.hours)
            self._holidays = _parse_holidays(spec.holidays)

    @classmethod
    def from_spec(cls, spec: CalendarSpec) -> Self:
        """Validate ``spec`` and build its calendar.

        Raises ``CalendarError``, with a message naming the field and value, for an
        unknown time zone, a weekday key other than "mon".."sun", opening hours not
        of the form "HH:MM-HH:MM" or closing at or before they open, a holiday that
        is not an ISO date, or a calendar with no opening hours on any weekday.
        """
        return cls(spec)

    @classmethod
    def around_the_clock(cls) -> Self:
        """Return the 24x7 calendar in UTC, in which every instant is business time."""
        return cls(CalendarSpec(around_the_clock=True))

    @property
    def spec(self) -> CalendarSpec:
        """The spec this calendar was built from."""
        return self._spec

    def __repr__(self) -> str:
        return f"BusinessCalendar.from_spec({self._spec!r})"

    def is_open(self, at: datetime) -> bool:
        """Return whether ``at`` lies in an open period (closing instants are closed).

        Raises ``ValueError`` if ``at`` is naive.
        """
        instant = _aware_as_utc(at, "at")
        if self._always_open:
            return True
        period = self._open_period(self._local_date(instant))
        return period is not None and period[0] <= instant < period[1]

    def next_open(self, at: datetime) -> datetime:
        """Return ``at`` if the calendar is open then, else the start of the next open period.

        The result is in UTC. Raises ``ValueError`` if ``at`` is naive and
        ``CalendarError`` if no open period starts within ``MAX_SEARCH_DAYS`` days.
        """
        instant = _aware_as_utc(at, "at")
        if self._always_open:
            return instant
        for opens, closes in self._open_periods_from(instant):
            if instant < closes:
                return max(opens, instant)
        raise CalendarError(
            f"the calendar has no open period within {MAX_SEARCH_DAYS} days after "
            f"{instant.isoformat()}; check its hours and holidays"
        )

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """Return the instant at which ``duration`` of business time has elapsed after ``start``.

        Closed time is skipped. When the duration runs out exactly at a closing time
        the result is that closing time, not the next opening. A zero duration
        returns ``start`` if the calendar is open then, else ``next_open(start)``.
        Raises ``ValueError`` if ``start`` is naive or ``duration`` is negative, and
        ``CalendarError`` if the result would lie more than ``MAX_SEARCH_DAYS``
        days after ``start``.
        """
        instant = _aware_as_utc(start, "start")
        if duration < _ZERO:
            raise ValueError(f"duration must not be negative, got {duration!r}")
        if self._always_open:
            return instant + duration
        if duration == _ZERO:
            return self.next_open(instant)
        remaining = duration
        for opens, closes in self._open_periods_from(instant):
            counted_from = max(opens, instant)
            if counted_from >= closes:
                continue
            available = closes - counted_from
            if remaining <= available:
                return counted_from + remaining
            remaining -= available
        raise CalendarError(
            f"{duration} of business time after {instant.isoformat()} ends more than "
            f"{MAX_SEARCH_DAYS} days later; check the calendar's hours and holidays"
        )

    def between(self, start: datetime, end: datetime) -> timedelta:
        """Return the business time in ``[start, end)``; zero if ``end`` is not after ``start``.

        The work is proportional to the number of days between the two instants.
        Raises ``ValueError`` if either datetime is naive.
        """
        first = _aware_as_utc(start, "start")
        last = _aware_as_utc(end, "end")
        if last <= first:
            return _ZERO
        if self._always_open:
            return last - first
        total = _ZERO
        day = self._local_date(first)
        last_day = self._local_date(last)
        while day <= last_day:
            period = self._open_period(day)
            if period is not None:
                overlap = min(period[1], last) - max(period[0], first)
                if overlap > _ZERO:
                    total += overlap
            day += _ONE_DAY
        return total

    def add_business_days(self, start: datetime, days: int) -> datetime:
        """Return the closing time of the ``days``-th working day after the day of ``start``.

        The day of ``start`` is its date in the calendar's time zone and does not
        count, whether or not it is a working day; a working day is a weekday with
        opening hours that is not a holiday. In an around-the-clock calendar every
        day is a working day and closes at midnight. Raises ``ValueError`` if
        ``start`` is naive or ``days`` is less than 1, and ``CalendarError`` if the
        result would lie more than ``MAX_SEARCH_DAYS`` days after ``start``.
        """
        instant = _aware_as_utc(start, "start")
        if isinstance(days, bool) or not isinstance(days, int) or days < 1:
            raise ValueError(f"days must be a positive integer, got {days!r}")
        day = self._local_date(instant)
        working_days_seen = 0
        for _ in range(MAX_SEARCH_DAYS):
            day += _ONE_DAY
            hours = self._working_hours(day)
            if hours is None:
                continue
            working_days_seen += 1
            if working_days_seen == days:
                return self._closing_instant(day, hours)
        raise CalendarError(
            f"working day number {days} after {instant.isoformat()} is more than "
            f"{MAX_SEARCH_DAYS} days away; check the calendar's hours and holidays"
        )

    def _local_date(self, instant: datetime) -> date:
        return instant.astimezone(self._zone).date()

    def _working_hours(self, day: date) -> _OpeningHours | None:
        if self._always_open:
            return _FULL_DAY
        if day in self._holidays:
            return None
        return self._hours.get(day.weekday())

    def _closing_instant(self, day: date, hours: _OpeningHours) -> datetime:
        if hours.closes_at_midnight:
            return local_to_utc(day + _ONE_DAY, time(0), self._zone)
        return local_to_utc(day, hours.closes, self._zone)

    def _open_period(self, day: date) -> tuple[datetime, datetime] | None:
        """Return the UTC ``[opens, closes)`` of ``day``'s open period, or None if closed."""
        hours = self._working_hours(day)
        if hours is None:
            return None
        opens = local_to_utc(day, hours.opens, self._zone)
        closes = self._closing_instant(day, hours)
        if closes <= opens:
            # Both boundaries fell into the same skipped hour: nothing is open.
            return None
        return opens, closes

    def _open_periods_from(self, instant: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Yield the open periods of ``MAX_SEARCH_DAYS`` days from ``instant``'s local date on."""
        day = self._local_date(instant)
        for _ in range(MAX_SEARCH_DAYS):
            period = self._open_period(day)
            if period is not None:
                yield period
            day += _ONE_DAY


_FULL_DAY = _OpeningHours(opens=time(0), closes=time(0), closes_at_midnight=True)


def _aware_as_utc(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{name} must be a timezone-aware datetime, got naive {value.isoformat()}; "
            "attach a tzinfo, e.g. datetime(..., tzinfo=UTC)"
        )
    return value.astimezone(UTC)


def local_to_utc(day: date, wall_time: time, zone: ZoneInfo) -> datetime:
    """Convert a wall-clock time on ``day`` to UTC, resolving DST gaps and folds.

    A repeated wall time resolves to its first occurrence (``fold=0``). A skipped
    wall time resolves to the instant the clocks jumped over it.
    """
    local = datetime.combine(day, wall_time, tzinfo=zone)
    instant = local.astimezone(UTC)
    back = instant.astimezone(zone)
    if back.day == day.day and back.hour == wall_time.hour and back.minute == wall_time.minute:
        return instant
    # ``local`` is in a gap. With fold=0 zoneinfo applied the offset from before the
    # jump, which puts ``instant`` after it by as much as the wall time is into the
    # gap; the jump lies in (instant - gap, instant]. Bisect to the second.
    offset_before = local.utcoffset()
    offset_after = back.utcoffset()
    assert offset_before is not None and offset_after is not None
    low = instant - (offset_after - offset_before)
    high = instant
    while high - low > _ONE_SECOND:
        middle = low + (high - low) / 2
        middle = middle.replace(microsecond=0)
        if middle.astimezone(zone).utcoffset() == offset_before:
            low = middle
        else:
            high = middle
    return high


def _parse_timezone(name: object) -> ZoneInfo:
    if not isinstance(name, str) or not name:
        raise CalendarError(f"timezone must be an IANA time zone name, got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise CalendarError(
            f"timezone {name!r} is not a known IANA time zone (e.g. 'Europe/Stockholm')"
        ) from exc


def _parse_around_the_clock(value: object) -> bool:
    if not isinstance(value, bool):
        raise CalendarError(f"around_the_clock must be true or false, got {value!r}")
    return value


def _parse_hours(hours: object) -> dict[int, _OpeningHours]:
    if not isinstance(hours, dict):
        raise CalendarError(f"hours must map weekdays to 'HH:MM-HH:MM', got {type(hours).__name__}")
    parsed: dict[int, _OpeningHours] = {}
    for key, value in hours.items():
        if key not in WEEKDAYS:
            raise CalendarError(
                f"hours has unknown weekday {key!r}; use one of {', '.join(WEEKDAYS)}"
            )
        parsed[WEEKDAYS.index(key)] = _parse_opening_hours(key, value)
    if not parsed:
        raise CalendarError(
            "hours is empty, so the calendar is never open; "
            "give at least one weekday or set around_the_clock"
        )
    return parsed


def _parse_opening_hours(weekday: str, value: object) -> _OpeningHours:
    where = f"hours[{weekday!r}]"
    match = _HOURS_PATTERN.match(value) if isinstance(value, str) else None
    if match is None:
        raise CalendarError(f"{where} must look like '09:00-17:00', got {value!r}")
    open_hour, open_minute, close_hour, close_minute = (int(part) for part in match.groups())
    if open_hour > 23 or open_minute > 59:
        raise CalendarError(f"{where} has an invalid opening time in {value!r}")
    closes_at_midnight = (close_hour, close_minute) == (24, 0)
    if not closes_at_midnight and (close_hour > 23 or close_minute > 59):
        raise CalendarError(
            f"{where} has an invalid closing time in {value!r} (use 24:00 for midnight)"
        )
    if not closes_at_midnight and (close_hour, close_minute) <= (open_hour, open_minute):
        raise CalendarError(
            f"{where} closes at or before it opens in {value!r}; "
            "periods cannot span midnight, use '00:00-24:00' for a full day"
        )
    return _OpeningHours(
        opens=time(open_hour, open_minute),
        closes=time(0) if closes_at_midnight else time(close_hour, close_minute),
        closes_at_midnight=closes_at_midnight,
    )


def _parse_holidays(holidays: object) -> frozenset[date]:
    if not isinstance(holidays, list | tuple):
        raise CalendarError(f"holidays must be a list of ISO dates, got {type(holidays).__name__}")
    parsed: set[date] = set()
    for index, value in enumerate(holidays):
        if not isinstance(value, str):
            raise CalendarError(
                f"holidays[{index}] must be an ISO date string like '2026-12-25', got "
                f"{value!r} ({type(value).__name__}); quote dates in YAML"
            )
        try:
            parsed.add(date.fromisoformat(value))
        except ValueError as exc:
            raise CalendarError(
                f"holidays[{index}] is not an ISO date like '2026-12-25': {value!r}"
            ) from exc
    return frozenset(parsed)
