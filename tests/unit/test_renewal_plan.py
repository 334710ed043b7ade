"""crm.domain.renewal_plan.RenewalPlan: when a renewal term takes its steps, and the next term.

Examples first, then properties checked with hypothesis over any sequence of
date changes: no reminder is planned twice, the steps come in time order and
every reminder is due before the renewal date. Last, the event data the plan
is fed from (``workflows.renewal_types``), with the messages the API and the
run's ``state`` show.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm.domain.renewal_plan import (
    RENEWAL_DATE,
    USAGE_ANALYSIS,
    RenewalPlan,
    TermChanges,
    one_year_after,
    reminder_days_problem,
)
from workflows.renewal_types import (
    EVENT_DATA,
    EVENTS,
    Cancelled,
    EventDataError,
    RenewalDateChanged,
    Renewed,
    parse_renewal_date,
    renewed_terms_problem,
)

DATE = datetime(2027, 6, 30, 12, tzinfo=UTC)
DAYS = [90, 60, 30, 7]


def plan(renewal_date: datetime = DATE, days: list[int] = DAYS, analysis: int = 60) -> RenewalPlan:
    return RenewalPlan(renewal_date, days, analysis)


def names(plan: RenewalPlan) -> list[str]:
    return [step.name for step in plan.pending()]


def test_a_term_reminds_at_each_day_analyses_usage_with_the_60_day_reminder_then_ends() -> None:
    assert names(plan()) == [
        "reminder_90d",
        "reminder_60d",
        USAGE_ANALYSIS,
        "reminder_30d",
        "reminder_7d",
        RENEWAL_DATE,
    ]
    assert plan().pending()[0].at == DATE - timedelta(days=90)


def test_a_term_started_late_sends_only_the_latest_reminder_whose_day_passed() -> None:
    term = plan()

    skipped = term.skip_overdue(DATE - timedelta(days=40))

    assert skipped == [90]
    assert term.next_step().name == "reminder_60d"
    assert term.skip_overdue(DATE - timedelta(days=40)) == []  # skipped once


def test_moving_the_date_plans_again_only_the_steps_still_to_take() -> None:
    term = plan()
    term.skip_overdue(DATE - timedelta(days=35))
    for _ in range(2):  # the 60-day reminder, then the analysis due with it
        term.took(term.next_step())

    term.move_to(DATE + timedelta(days=45))

    assert term.moves == 1
    assert [(s.name, s.at) for s in term.pending()] == [
        ("reminder_30d", DATE + timedelta(days=15)),
        ("reminder_7d", DATE + timedelta(days=38)),
        (RENEWAL_DATE, DATE + timedelta(days=45)),
    ]
    assert (term.reminders_sent, term.reminders_skipped) == ([60], [90])


def test_the_next_term_renews_a_year_later_on_the_same_terms_unless_new_ones_were_signed() -> None:
    term = plan()
    unsigned = term.next_term("growth", 12000.0)

    term.sign(TermChanges(plan="enterprise", annual_value=30000.0))

    signed = term.next_term("growth", 12000.0)
    a_year_later = datetime(2028, 6, 30, 12, tzinfo=UTC)
    assert (unsigned.renewal_date, unsigned.plan, unsigned.annual_value) == (
        a_year_later,
        "growth",
        12000.0,
    )
    assert (signed.renewal_date, signed.plan, signed.annual_value) == (
        a_year_later,
        "enterprise",
        30000.0,
    )
    assert not term.changed_late


def test_changes_after_the_outcome_must_renew_after_this_term_and_the_last_one_wins() -> None:
    term = plan()
    term.sign(TermChanges(plan="enterprise"))

    refused = term.change_late(TermChanges(renewal_date=DATE))
    term.change_late(TermChanges(renewal_date=DATE + timedelta(days=400)))
    term.change_late(TermChanges(renewal_date=DATE + timedelta(days=500), annual_value=1.0))

    assert refused == ("renewal_date must be after 2027-06-30, the date this term renewed on")
    assert term.changed_late
    next_term = term.next_term("growth", 12000.0)
    assert (next_term.renewal_date, next_term.plan, next_term.annual_value) == (
        DATE + timedelta(days=500),
        "enterprise",
        1.0,
    )


@pytest.mark.parametrize(
    ("date", "a_year_later"),
    [
        (datetime(2028, 2, 29, 9, 30, tzinfo=UTC), datetime(2029, 2, 28, 9, 30, tzinfo=UTC)),
        (datetime(2027, 2, 28, tzinfo=UTC), datetime(2028, 2, 28, tzinfo=UTC)),
        (datetime(2027, 12, 31, 23, 59, tzinfo=UTC), datetime(2028, 12, 31, 23, 59, tzinfo=UTC)),
    ],
)
def test_one_year_after_keeps_the_day_and_turns_29_february_into_28(
    date: datetime, a_year_later: datetime
) -> None:
    assert one_year_after(date) == a_year_later


@pytest.mark.parametrize("days", [[60, 90], [90, 90], [30, 0], [7, -1]])
def test_reminder_days_must_be_positive_and_decreasing(days: list[int]) -> None:
    assert reminder_days_problem(days) == (
        f"schedule.reminder_days must be positive and decreasing, got {days}"
    )
    assert reminder_days_problem([90, 60, 30, 7]) is None


# Properties over any sequence of date changes.

reminder_days = st.lists(
    st.integers(min_value=1, max_value=400), min_size=1, max_size=8, unique=True
).map(lambda days: sorted(days, reverse=True))
renewal_dates = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
)


@dataclass
class Move:
    """A ``renewal_date_changed`` arriving ``after`` the previous one (or the start), naming
    a date ``shift`` from when it arrives (a negative one lies in the past)."""

    after: timedelta
    shift: timedelta


moves = st.lists(
    st.builds(
        Move,
        after=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=200)),
        shift=st.timedeltas(min_value=timedelta(days=-300), max_value=timedelta(days=300)),
    ),
    max_size=6,
)


def assert_planned_in_order_before_the_date(term: RenewalPlan) -> None:
    pending = term.pending()
    assert [step.at for step in pending] == sorted(step.at for step in pending)
    assert pending[-1].name == RENEWAL_DATE
    done = {*term.reminders_sent, *term.reminders_skipped}
    for step in pending:
        if step.reminder_days is not None:
            assert step.reminder_days not in done
            assert step.at < term.renewal_date


def run_term(term: RenewalPlan, start: datetime, changes: list[Move]) -> list[int]:
    """Take the term's steps as the workflow does, moving its date as ``changes`` arrive.

    Returns every reminder offset sent or skipped, in the order it happened.
    """
    now, pending_moves, handled = start, list(changes), []
    arrives_at = now + pending_moves[0].after if pending_moves else None
    while True:
        handled += term.skip_overdue(now)
        assert_planned_in_order_before_the_date(term)
        step = term.next_step()
        if arrives_at is not None and arrives_at < step.at:
            now = arrives_at
            term.move_to(now + pending_moves.pop(0).shift)
            arrives_at = now + pending_moves[0].after if pending_moves else None
            continue
        now = max(now, step.at)
        if step.name == RENEWAL_DATE:
            return handled
        if step.reminder_days is not None:
            handled.append(step.reminder_days)
        term.took(step)


@settings(max_examples=300, deadline=None)
@given(
    days=reminder_days,
    analysis=st.integers(min_value=1, max_value=400),
    renewal_date=renewal_dates,
    started_before=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=500)),
    changes=moves,
)
def test_no_reminder_is_planned_twice_whatever_the_date_changes(
    days: list[int],
    analysis: int,
    renewal_date: datetime,
    started_before: timedelta,
    changes: list[Move],
) -> None:
    term = plan(renewal_date, days, analysis)

    handled = run_term(term, renewal_date - started_before, changes)

    # By the date every reminder was sent or skipped, exactly once, in time order.
    assert handled == days
    assert sorted([*term.reminders_sent, *term.reminders_skipped], reverse=True) == days


@settings(max_examples=200, deadline=None)
@given(
    days=reminder_days,
    analysis=st.integers(min_value=0, max_value=400),
    renewal_date=renewal_dates,
    now=renewal_dates,
)
def test_the_steps_to_take_are_in_time_order_and_the_reminders_before_the_date(
    days: list[int], analysis: int, renewal_date: datetime, now: datetime
) -> None:
    term = plan(renewal_date, days, analysis)

    skipped = term.skip_overdue(now)

    assert_planned_in_order_before_the_date(term)
    overdue = [d for d in days if renewal_date - timedelta(days=d) <= now]
    assert skipped == overdue[:-1]  # all but the latest of those whose day has passed
    due_now = [s.reminder_days for s in term.pending() if s.reminder_days and s.at <= now]
    assert due_now == overdue[-1:]  # one late reminder is sent, not several at once


@settings(max_examples=300, deadline=None)
@given(date=st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(9998, 12, 31)))
def test_one_year_after_is_the_same_day_a_year_on_or_28_february(date: datetime) -> None:
    later = one_year_after(date)

    assert (later.year, later.month, later.time()) == (date.year + 1, date.month, date.time())
    assert later.day == (28 if (date.month, date.day) == (2, 29) else date.day)
    assert timedelta(days=365) <= later - date <= timedelta(days=366)


optional_dates = st.none() | renewal_dates
term_changes = st.builds(
    TermChanges,
    renewal_date=optional_dates,
    plan=st.none() | st.sampled_from(["starter", "growth", "enterprise"]),
    annual_value=st.none() | st.floats(min_value=0, max_value=1e6),
)


@given(changes=st.lists(term_changes, max_size=6))
def test_the_last_change_of_each_term_wins(changes: list[TermChanges]) -> None:
    merged = TermChanges()
    for change in changes:
        merged = merged.then(change)

    for name in ("renewal_date", "plan", "annual_value"):
        sent = [getattr(c, name) for c in changes if getattr(c, name) is not None]
        assert getattr(merged, name) == (sent[-1] if sent else None)


# The event data a run decodes (workflows.common.event_data) and the API checks.


def test_every_renewal_event_names_its_data_type() -> None:
    assert list(EVENT_DATA.items()) == [
        ("renewed", Renewed),
        ("cancelled", Cancelled),
        ("renewal_date_changed", RenewalDateChanged),
    ]
    assert EVENTS == ("renewed", "cancelled", "renewal_date_changed")


def test_renewed_terms_read_as_the_next_term_uses_them() -> None:
    signed = Renewed(plan="enterprise", annual_value=30000, renewal_date="2028-01-31")

    assert signed.changes() == TermChanges(
        renewal_date=datetime(2028, 1, 31, tzinfo=UTC), plan="enterprise", annual_value=30000.0
    )
    assert Renewed().changes() == TermChanges()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"plan": ""}, "data.plan must be a plan name, got ''"),
        ({"plan": 5}, "data.plan must be a plan name, got 5"),
        ({"annual_value": "lots"}, "data.annual_value must be a number of at least 0, got 'lots'"),
        ({"annual_value": True}, "data.annual_value must be a number of at least 0, got True"),
        ({"annual_value": -5}, "data.annual_value must be a number of at least 0, got -5"),
        ({"renewal_date": 20270101}, "data.renewal_date must be an ISO date, got 20270101"),
        (
            {"renewal_date": "next spring"},
            "data.renewal_date must be an ISO date, got 'next spring'",
        ),
    ],
)
def test_renewed_terms_the_next_term_could_not_use_are_refused_by_name(
    data: dict[str, object], message: str
) -> None:
    with pytest.raises(EventDataError) as refused:
        Renewed(**data)

    assert str(refused.value) == message
    assert refused.value.field == next(iter(data))
    date_only = "renewal_date" in data
    assert renewed_terms_problem(data) == (None if date_only else message)


def test_a_new_date_is_an_iso_date_read_as_utc() -> None:
    assert parse_renewal_date("2028-01-31T10:00:00+02:00") == datetime(2028, 1, 31, 8, tzinfo=UTC)
    assert RenewalDateChanged("2028-01-31").renewal_date == datetime(2028, 1, 31, tzinfo=UTC)
    for value in (None, 20280131, "soon", "0001-01-01T00:00:00+01:00"):
        with pytest.raises(EventDataError, match=r"^data\.renewal_date must be an ISO date, got "):
            parse_renewal_date(value)


def test_a_cancellation_carries_at_most_a_reason() -> None:
    assert Cancelled(reason="budget").reason == "budget"
    with pytest.raises(EventDataError, match=r"^data\.reason must be text, got 5$"):
        Cancelled(reason=5)
