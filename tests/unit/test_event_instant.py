"""When a ticket event counts for the clocks (``workflows.sla_events.event_instant``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from workflows.sla_events import event_instant

LOOKED = datetime(2026, 12, 7, 11, 0, tzinfo=UTC)  # the clocks were last given this
NOW = LOOKED + timedelta(minutes=30)  # the signal reached the run


def test_an_event_counts_from_when_it_happened_between_the_last_look_and_now() -> None:
    happened = LOOKED + timedelta(minutes=10)
    assert event_instant(happened, LOOKED, NOW) == happened


def test_an_event_before_the_last_look_counts_from_the_look() -> None:
    assert event_instant(LOOKED - timedelta(minutes=5), LOOKED, NOW) == LOOKED


def test_an_event_after_it_reached_the_run_counts_from_then() -> None:
    assert event_instant(NOW + timedelta(seconds=40), LOOKED, NOW) == NOW


def test_an_event_without_an_instant_counts_from_now_and_one_without_offset_is_utc() -> None:
    assert event_instant(None, LOOKED, NOW) == NOW
    naive = (LOOKED + timedelta(minutes=10)).replace(tzinfo=None)
    assert event_instant(naive, LOOKED, NOW) == LOOKED + timedelta(minutes=10)
