"""The next local time of day, across DST changes and at every instant of a year."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from crm.domain.daily import next_local_time

EIGHT = time(8, 0)


def test_eight_oclock_stays_eight_oclock_on_the_wall_across_the_spring_change() -> None:
    before = datetime(2026, 3, 28, 7, 0, tzinfo=UTC)  # Sat 08:00 in Stockholm (UTC+1)

    saturday = next_local_time(before - timedelta(minutes=1), "Europe/Stockholm", EIGHT)
    sunday = next_local_time(saturday, "Europe/Stockholm", EIGHT)
    monday = next_local_time(sunday, "Europe/Stockholm", EIGHT)

    assert saturday == datetime(2026, 3, 28, 7, 0, tzinfo=UTC)
    assert sunday == datetime(2026, 3, 29, 6, 0, tzinfo=UTC)  # summer time from 02:00
    assert monday == datetime(2026, 3, 30, 6, 0, tzinfo=UTC)
    assert sunday - saturday == timedelta(hours=23)


def test_a_skipped_wall_time_falls_on_the_jump() -> None:
    at_half_past_two = next_local_time(
        datetime(2026, 3, 28, 12, tzinfo=UTC), "Europe/Stockholm", time(2, 30)
    )

    assert at_half_past_two == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 02:00 -> 03:00


@given(
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31)),
    st.sampled_from(["Europe/Stockholm", "America/New_York", "Asia/Manila", "UTC"]),
)
def test_the_next_one_is_within_a_day_and_at_eight_on_the_wall(moment: datetime, zone: str) -> None:
    after = moment.replace(tzinfo=UTC)

    nxt = next_local_time(after, zone, EIGHT)

    assert after < nxt <= after + timedelta(hours=25)
    local = nxt.astimezone(ZoneInfo(zone))
    assert (local.hour, local.minute) == (8, 0)
