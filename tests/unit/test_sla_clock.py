"""crm.domain.sla.SlaClock: business time counted only while a clock runs (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from crm.domain.calendar import BusinessCalendar, CalendarSpec
from crm.domain.sla import SlaClock, format_business_time

CALENDARS = [
    BusinessCalendar.from_spec(CalendarSpec(timezone="Europe/Stockholm")),
    BusinessCalendar.from_spec(CalendarSpec(timezone="America/New_York")),
    BusinessCalendar.around_the_clock(),
]
START = datetime(2026, 3, 2, tzinfo=UTC)  # spans both 2026 spring DST changes
gaps = st.lists(
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3)), min_size=1, max_size=12
)


@settings(max_examples=300, deadline=None)
@given(calendar=st.sampled_from(CALENDARS), gaps=gaps)
def test_pauses_are_never_counted(calendar: BusinessCalendar, gaps: list[timedelta]) -> None:
    # The clock alternates: running for gaps[0], paused for gaps[1], running for gaps[2]...
    clock = SlaClock("resolution", timedelta(hours=24), calendar, START)
    now = START
    counted = timedelta(0)
    for index, gap in enumerate(gaps):
        running = index % 2 == 0
        if running:
            counted += calendar.between(now, now + gap)
        now += gap
        if running:
            clock.pause(now)
        else:
            clock.resume(now)
        assert clock.used_at(now) == counted
    # However long it then stays paused, nothing more is counted.
    clock.pause(now)
    assert clock.used_at(now + timedelta(days=30)) == counted


@settings(max_examples=300, deadline=None)
@given(
    calendar=st.sampled_from(CALENDARS),
    used=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=4)),
    hours=st.integers(min_value=1, max_value=48),
    fraction=st.sampled_from([0.75, 1.0, 1.5]),
)
def test_a_level_is_reached_exactly_at_its_due_time(
    calendar: BusinessCalendar, used: timedelta, hours: int, fraction: float
) -> None:
    clock = SlaClock("first_response", timedelta(hours=hours), calendar, START)
    clock.pause(START + used)
    clock.resume(START + used + timedelta(days=1))
    due = clock.due(fraction)
    assert due is not None
    assert clock.reached_at(fraction, due)
    if clock.used < clock.threshold(fraction):
        assert not clock.reached_at(fraction, due - timedelta(microseconds=1))


def test_retarget_keeps_the_time_used_and_moves_the_due_time() -> None:
    office = CALENDARS[0]
    monday = datetime(2026, 3, 2, 9, tzinfo=ZoneInfo("Europe/Stockholm"))
    clock = SlaClock("first_response", timedelta(hours=8), office, monday)
    clock.retarget(timedelta(hours=4), office, monday + timedelta(hours=2))
    assert clock.used == timedelta(hours=2)
    assert clock.due(1.0) == monday + timedelta(hours=4)
    # Urgent: the remaining two hours now run around the clock, past closing time.
    clock.retarget(timedelta(hours=9), BusinessCalendar.around_the_clock(), monday.replace(hour=16))
    assert clock.due(1.0) == monday.replace(hour=16) + timedelta(hours=2)


def test_a_stopped_clock_neither_counts_nor_resumes() -> None:
    clock = SlaClock("first_response", timedelta(hours=1), CALENDARS[2], START)
    clock.stop(START + timedelta(minutes=20))
    clock.resume(START + timedelta(hours=5))
    assert clock.stopped and not clock.running
    assert clock.used_at(START + timedelta(hours=9)) == timedelta(minutes=20)
    assert clock.met(START + timedelta(hours=9))


def test_business_time_reads_like_people_write_it() -> None:
    assert format_business_time(timedelta(hours=7, minutes=30)) == "7h 30m"
    assert format_business_time(timedelta(hours=23)) == "23h"
    assert format_business_time(timedelta(seconds=45)) == "45s"
    assert format_business_time(timedelta(0)) == "0s"
    assert format_business_time(-timedelta(hours=1)) == "-1h"
