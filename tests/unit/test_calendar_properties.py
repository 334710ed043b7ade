"""Properties of crm.domain.calendar that SLA arithmetic relies on, checked with hypothesis.

Business time added to an instant measures back to the same amount, due times
land inside opening hours, measuring is additive, and all of it holds in the
weeks when Europe/Stockholm and America/New_York change their clocks.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm.domain.calendar import BusinessCalendar, CalendarError, CalendarSpec

STOCKHOLM = "Europe/Stockholm"
NEW_YORK = "America/New_York"
TICK = timedelta(microseconds=1)

OFFICE_HOURS = {day: "09:00-17:00" for day in ("mon", "tue", "wed", "thu", "fri")}
# Sunday's hours straddle the 02:00-03:00 change, so DST weekends matter.
NIGHT_SHIFT = {**OFFICE_HOURS, "sat": "10:00-14:00", "sun": "01:00-04:00"}

CALENDARS = {
    "stockholm-office": BusinessCalendar.from_spec(
        CalendarSpec(timezone=STOCKHOLM, hours=OFFICE_HOURS, holidays=["2026-04-03", "2026-12-25"])
    ),
    "new-york-office": BusinessCalendar.from_spec(
        CalendarSpec(timezone=NEW_YORK, hours=OFFICE_HOURS, holidays=["2026-11-26"])
    ),
    "stockholm-night-shift": BusinessCalendar.from_spec(
        CalendarSpec(timezone=STOCKHOLM, hours=NIGHT_SHIFT)
    ),
    "new-york-night-shift": BusinessCalendar.from_spec(
        CalendarSpec(timezone=NEW_YORK, hours=NIGHT_SHIFT)
    ),
    "stockholm-all-day": BusinessCalendar.from_spec(
        CalendarSpec(timezone=STOCKHOLM, hours={d: "00:00-24:00" for d in NIGHT_SHIFT})
    ),
    "around-the-clock": BusinessCalendar.around_the_clock(),
}

# The weeks (Monday 00:00 local) in which the clocks change in 2026.
DST_WEEKS = [
    (STOCKHOLM, datetime(2026, 3, 23)),  # spring forward Sunday 29 March
    (STOCKHOLM, datetime(2026, 10, 19)),  # fall back Sunday 25 October
    (NEW_YORK, datetime(2026, 3, 2)),  # spring forward Sunday 8 March
    (NEW_YORK, datetime(2026, 10, 26)),  # fall back Sunday 1 November
]

calendars = st.sampled_from(sorted(CALENDARS)).map(CALENDARS.__getitem__)
instants = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)
durations = st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=300))


@st.composite
def dst_week_instants(draw: st.DrawFn) -> tuple[BusinessCalendar, datetime]:
    """A calendar in a zone that changes its clocks, and an instant in a week it does."""
    zone, monday = draw(st.sampled_from(DST_WEEKS))
    name = draw(st.sampled_from(["office", "night-shift"]))
    calendar = CALENDARS[f"{'stockholm' if zone == STOCKHOLM else 'new-york'}-{name}"]
    start = monday.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)
    offset = draw(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=7)))
    return calendar, start + offset


@settings(max_examples=300, deadline=None)
@given(calendar=calendars, start=instants, duration=durations)
def test_measuring_back_an_added_duration_gives_it_back(
    calendar: BusinessCalendar, start: datetime, duration: timedelta
) -> None:
    due = calendar.add(start, duration)
    assert due >= start
    assert calendar.between(start, due) == duration


@settings(max_examples=300, deadline=None)
@given(calendar=calendars, start=instants, duration=durations.filter(bool))
def test_a_due_time_never_falls_outside_business_hours(
    calendar: BusinessCalendar, start: datetime, duration: timedelta
) -> None:
    due = calendar.add(start, duration)
    # Open just before the due time: it ends inside a period or at its closing.
    assert calendar.is_open(due - TICK)


@settings(max_examples=300, deadline=None)
@given(calendar=calendars, points=st.lists(instants, min_size=3, max_size=3))
def test_business_time_is_additive(calendar: BusinessCalendar, points: list[datetime]) -> None:
    first, middle, last = sorted(points)
    assert calendar.between(first, middle) + calendar.between(middle, last) == calendar.between(
        first, last
    )


@settings(max_examples=300, deadline=None)
@given(calendar=calendars, start=instants, end=instants)
def test_adding_the_measured_time_reaches_the_end_or_the_last_closing_before_it(
    calendar: BusinessCalendar, start: datetime, end: datetime
) -> None:
    start, end = min(start, end), max(start, end)
    reached = calendar.add(start, calendar.between(start, end))
    assert reached <= calendar.next_open(end)
    if calendar.is_open(end) and calendar.between(end - timedelta(seconds=1), end):
        assert reached == end  # (at an opening instant, the closing before it is as good)
    # Nothing of business time lies between where we got and the end.
    assert calendar.between(reached, end) == timedelta(0)


@settings(max_examples=300, deadline=None)
@given(week_and_start=dst_week_instants(), duration=durations)
def test_dst_weeks_add_and_measure_consistently(
    week_and_start: tuple[BusinessCalendar, datetime], duration: timedelta
) -> None:
    calendar, start = week_and_start
    due = calendar.add(start, duration)
    assert calendar.between(start, due) == duration
    if duration:
        assert calendar.is_open(due - TICK)


@settings(max_examples=200, deadline=None)
@given(
    calendar=calendars,
    start=instants,
    pause=st.tuples(durations, durations),
    duration=durations,
)
def test_closed_spans_inside_a_measurement_are_never_counted(
    calendar: BusinessCalendar,
    start: datetime,
    pause: tuple[timedelta, timedelta],
    duration: timedelta,
) -> None:
    # Measuring two pieces around a gap equals measuring the whole minus the gap.
    gap_start = start + pause[0]
    gap_end = gap_start + pause[1]
    end = gap_end + duration
    pieces = calendar.between(start, gap_start) + calendar.between(gap_end, end)
    assert pieces == calendar.between(start, end) - calendar.between(gap_start, gap_end)


@pytest.mark.parametrize(("zone", "monday"), DST_WEEKS)
def test_a_dst_week_of_office_hours_holds_forty_business_hours(zone: str, monday: datetime) -> None:
    calendar = BusinessCalendar.from_spec(CalendarSpec(timezone=zone, hours=OFFICE_HOURS))
    start = monday.replace(tzinfo=ZoneInfo(zone))
    assert calendar.between(start, start + timedelta(days=7)) == timedelta(hours=40)


@pytest.mark.parametrize(
    ("zone", "sunday", "hours"),
    [
        (STOCKHOLM, datetime(2026, 3, 29), 2),  # 02:00-03:00 skipped
        (STOCKHOLM, datetime(2026, 10, 25), 4),  # 02:00-03:00 repeated
        (NEW_YORK, datetime(2026, 3, 8), 2),
        (NEW_YORK, datetime(2026, 11, 1), 4),  # 01:00-02:00 repeated
    ],
)
def test_a_night_shift_over_a_clock_change_counts_real_elapsed_time(
    zone: str, sunday: datetime, hours: int
) -> None:
    calendar = CALENDARS[f"{'stockholm' if zone == STOCKHOLM else 'new-york'}-night-shift"]
    day_start = sunday.replace(tzinfo=ZoneInfo(zone))
    assert calendar.between(day_start, day_start + timedelta(hours=20)) == timedelta(hours=hours)


def test_friday_afternoon_rolls_over_the_weekend_to_monday() -> None:
    calendar = CALENDARS["stockholm-office"]
    friday = datetime(2026, 3, 27, 16, 30, tzinfo=ZoneInfo(STOCKHOLM))
    due = calendar.add(friday, timedelta(hours=8))
    # 30 minutes on Friday, 7.5 hours on Monday, which is already summer time.
    assert due == datetime(2026, 3, 30, 16, 30, tzinfo=ZoneInfo(STOCKHOLM))
    assert due.astimezone(ZoneInfo(STOCKHOLM)).utcoffset() == timedelta(hours=2)


def test_holidays_are_skipped() -> None:
    calendar = CALENDARS["stockholm-office"]
    thursday = datetime(2026, 4, 2, 16, 0, tzinfo=ZoneInfo(STOCKHOLM))
    # Good Friday 3 April is a holiday: 1 hour on Thursday, 1 hour on Monday.
    assert calendar.add(thursday, timedelta(hours=2)) == datetime(
        2026, 4, 6, 10, 0, tzinfo=ZoneInfo(STOCKHOLM)
    )


def test_invalid_specs_are_rejected_with_the_field_named() -> None:
    with pytest.raises(CalendarError, match="Mars/Olympus"):
        BusinessCalendar.from_spec(CalendarSpec(timezone="Mars/Olympus"))
    with pytest.raises(CalendarError, match=r"hours\['mon'\]"):
        BusinessCalendar.from_spec(CalendarSpec(hours={"mon": "17:00-09:00"}))
    with pytest.raises(CalendarError, match=r"holidays\[0\]"):
        BusinessCalendar.from_spec(CalendarSpec(holidays=["25/12/2026"]))
