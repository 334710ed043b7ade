"""crm.domain.ticket_clocks.TicketClocks: a ticket's SLA clocks, its events and levels (hypothesis).

Also the ticket SLA's event data (``workflows.sla_types``): what each event
carries and what the run refuses to decode.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, get_args, get_type_hints
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm.domain.calendar import CalendarSpec
from crm.domain.sla import (
    BREACH,
    FIRST_RESPONSE,
    LEVELS,
    MANAGER,
    RESOLUTION,
    WARNING,
    SlaTargets,
    SlaTerms,
)
from crm.domain.ticket_clocks import OPEN, PENDING_CUSTOMER, TicketClocks
from workflows.common import ProcessEvent, event_data
from workflows.sla_types import (
    EVENT_DATA,
    EVENT_TYPES,
    LEGACY_EVENT_DATA,
    AgentReplied,
    FieldsChanged,
    PriorityChanged,
    StatusChanged,
    TicketInput,
    TicketStatusChanged,
)

HOUR = 3600
STOCKHOLM = ZoneInfo("Europe/Stockholm")
MONDAY_9 = datetime(2026, 3, 2, 9, tzinfo=STOCKHOLM)


def sla_terms(timezone: str = "Europe/Stockholm", **overrides: Any) -> SlaTerms:
    """The default policy's targets: urgent around the clock, the rest in office hours."""
    fields: dict[str, Any] = {
        "targets": {
            "urgent": SlaTargets(1 * HOUR, 4 * HOUR, around_the_clock=True),
            "high": SlaTargets(4 * HOUR, 8 * HOUR),
            "normal": SlaTargets(8 * HOUR, 24 * HOUR),
            "low": SlaTargets(12 * HOUR, 48 * HOUR),
        },
        "calendar": CalendarSpec(timezone=timezone),
        **overrides,
    }
    return SlaTerms(**fields)


def opened_ticket(
    priority: str = "normal", at: datetime = MONDAY_9, terms: SlaTerms | None = None
) -> TicketClocks:
    """A ticket the helpdesk opened ``at``, whose run starts that instant."""
    return TicketClocks(terms or sla_terms(), priority, created_at=at, now=at)


def used(ticket: TicketClocks, now: datetime) -> dict[str, timedelta]:
    return {name: clock.used_at(now) for name, clock in ticket.clocks.items()}


def local(day: int, hour: int, minute: int = 0) -> datetime:
    """``hour:minute`` in Stockholm, ``day`` days after Monday 2 March 2026."""
    return datetime(2026, 3, 2 + day, hour, minute, tzinfo=STOCKHOLM)


# The clocks of one ticket, step by step.


def test_a_normal_ticket_opened_monday_at_nine_warns_at_three_and_breaches_at_five() -> None:
    ticket = opened_ticket("normal")
    due = ticket.due_times()
    assert due["first_response_warning"] == local(0, 15)
    assert due["first_response_breach"] == local(0, 17)
    assert due["first_response_manager"] == local(1, 13)  # 12 business hours
    assert due["resolution_breach"] == local(2, 17)  # 24 business hours: Wednesday
    assert ticket.next_deadline() == (local(0, 15), "first response warning")
    assert ticket.state(MONDAY_9) == "on_track"
    assert ticket.stage() == "awaiting_first_response"
    assert ticket.waiting_for() == ["agent_replied", "resolved", "closed"]


def test_the_clocks_count_from_when_the_ticket_was_opened_but_never_from_the_future() -> None:
    now = MONDAY_9
    earlier = TicketClocks(sla_terms(), "normal", created_at=now - timedelta(hours=1), now=now)
    assert earlier.opened == now - timedelta(hours=1)
    assert used(earlier, now)[FIRST_RESPONSE] == timedelta(0)  # 08:00-09:00 is not business time
    later = TicketClocks(sla_terms(), "normal", created_at=now + timedelta(hours=2), now=now)
    assert later.opened == now
    unknown = TicketClocks(sla_terms(), "normal", created_at=None, now=now)
    assert unknown.opened == now


def test_a_naive_opening_time_is_taken_as_utc() -> None:
    now = datetime(2026, 3, 2, 12, tzinfo=UTC)
    ticket = TicketClocks(sla_terms(), "normal", created_at=datetime(2026, 3, 2, 10), now=now)
    assert ticket.opened == datetime(2026, 3, 2, 10, tzinfo=UTC)


def test_waiting_for_the_customer_pauses_both_clocks_until_the_ticket_is_open_again() -> None:
    ticket = opened_ticket("normal")
    ticket.set_status(PENDING_CUSTOMER, local(0, 10))
    assert ticket.state(local(3, 12)) == "paused"
    assert ticket.stage() == "pending_customer"
    assert ticket.due_times() == {}
    assert ticket.next_deadline() is None
    assert ticket.waiting_for() == ["status_changed:open", "resolved", "closed"]
    assert used(ticket, local(3, 12))[FIRST_RESPONSE] == timedelta(hours=1)

    ticket.set_status(OPEN, local(1, 9))
    # Seven hours left from Tuesday 09:00.
    assert ticket.due_times()["first_response_breach"] == local(1, 16)
    assert ticket.state(local(1, 9)) == "on_track"


def test_a_breached_ticket_stays_breached_while_paused() -> None:
    ticket = opened_ticket("normal")
    ticket.reach_levels(FIRST_RESPONSE, local(0, 17))
    ticket.set_status(PENDING_CUSTOMER, local(0, 17, 30))
    assert ticket.state(local(0, 17, 30)) == "breached"


def test_the_reply_stops_only_the_first_response_clock() -> None:
    ticket = opened_ticket("normal")
    ticket.reply(local(0, 11))
    assert ticket.clocks[FIRST_RESPONSE].stopped
    assert ticket.clocks[RESOLUTION].running
    assert ticket.stage() == "awaiting_resolution"
    assert ticket.waiting_for() == ["resolved", "closed"]
    assert set(ticket.due_times()) == {
        "resolution_warning",
        "resolution_breach",
        "resolution_manager",
    }
    assert ticket.reach_levels(FIRST_RESPONSE, local(2, 9)).levels == []


def test_a_reply_within_target_meets_the_first_response_and_the_resolution_the_rest() -> None:
    ticket = opened_ticket()
    ticket.reply(local(0, 10))
    ticket.end("resolved", local(0, 12))
    met = [(m.clock, m.step, m.ended_at, m.used) for m in ticket.met()]
    assert met == [
        (FIRST_RESPONSE, "first_response_met", local(0, 10), timedelta(hours=1)),
        (RESOLUTION, "resolution_met", local(0, 12), timedelta(hours=3)),
    ]
    late = opened_ticket()
    late.reply(local(1, 10))  # after its eight business hours: breached, not met
    late.end("cancelled", local(1, 10))
    assert late.met() == []


def test_raising_the_priority_keeps_the_time_used_and_moves_the_due_times() -> None:
    ticket = opened_ticket("normal")
    ticket.change_priority("high", local(0, 11))
    assert ticket.priority == "high"
    assert used(ticket, local(0, 11)) == {
        FIRST_RESPONSE: timedelta(hours=2),
        RESOLUTION: timedelta(hours=2),
    }
    assert ticket.due_times()["first_response_breach"] == local(0, 13)
    assert ticket.due_times()["resolution_breach"] == local(0, 17)


def test_a_ticket_raised_to_urgent_counts_past_closing_time() -> None:
    ticket = opened_ticket("normal", at=local(1, 16, 30))
    ticket.change_priority("urgent", local(1, 16, 45))
    # A quarter of an hour used; the other 45 minutes run around the clock.
    assert ticket.due_times()["first_response_breach"] == local(1, 17, 30)


def test_an_unknown_priority_or_status_is_refused_and_changes_nothing() -> None:
    ticket = opened_ticket("normal")
    with pytest.raises(ValueError, match="unknown priority 'critical'"):
        ticket.change_priority("critical", local(0, 10))
    with pytest.raises(ValueError, match="status must be"):
        ticket.set_status("closed", local(0, 10))
    assert (ticket.priority, ticket.status) == ("normal", OPEN)
    assert ticket.due_times()["first_response_breach"] == local(0, 17)


def test_a_ticket_opened_long_ago_breaches_at_the_first_look_without_a_separate_warning() -> None:
    ticket = TicketClocks(sla_terms(), "normal", created_at=local(0, 9), now=local(1, 11))
    reached = ticket.reach_levels(FIRST_RESPONSE, local(1, 11))
    assert reached.levels == [BREACH]
    assert reached.warning_overtaken
    assert set(ticket.clocks[FIRST_RESPONSE].reached) == {WARNING, BREACH}
    # No deadline was planned for it: the breach counts as due when it was found.
    assert ticket.breach_due(FIRST_RESPONSE, local(1, 11)) == local(1, 11)
    assert ticket.state(local(1, 11)) == "breached"


def test_a_level_is_acted_on_once() -> None:
    ticket = opened_ticket("normal")
    assert ticket.reach_levels(FIRST_RESPONSE, local(0, 15)).levels == [WARNING]
    assert ticket.reach_levels(FIRST_RESPONSE, local(0, 16)).levels == []
    assert ticket.reach_levels(FIRST_RESPONSE, local(0, 17)).levels == [BREACH]
    assert ticket.next_deadline() == (local(1, 13), "first response manager")


def test_a_planned_breach_is_due_when_it_was_planned_not_when_it_was_acted_on() -> None:
    ticket = opened_ticket("normal")
    ticket.next_deadline()
    ticket.reach_levels(FIRST_RESPONSE, local(0, 17, 2))
    assert ticket.breach_due(FIRST_RESPONSE, local(0, 17, 3)) == local(0, 17)


def test_an_escalation_is_recorded_as_of_when_its_level_was_reached() -> None:
    ticket = opened_ticket("normal")
    ticket.reach_levels(FIRST_RESPONSE, local(0, 15))
    ticket.record_escalation(FIRST_RESPONSE, WARNING, "agent-ivy")
    assert ticket.escalations == [
        {
            "clock": FIRST_RESPONSE,
            "level": WARNING,
            "to": "agent-ivy",
            "at": local(0, 15).isoformat(),
            "used_seconds": 6 * HOUR,
        }
    ]
    with pytest.raises(KeyError):
        ticket.record_escalation(FIRST_RESPONSE, BREACH, "lead-sam")


def test_a_resolved_ticket_is_met_unless_a_clock_breached() -> None:
    ticket = opened_ticket("normal")
    ticket.reply(local(0, 10))
    ticket.end("resolved", local(0, 12))
    assert ticket.outcome == "resolved"
    assert ticket.state(local(5, 12)) == "met"
    assert ticket.stage() == "resolved"
    assert ticket.waiting_for() == []
    assert ticket.next_deadline() is None

    late = opened_ticket("normal")
    late.reach_levels(FIRST_RESPONSE, local(0, 17))
    late.end("closed", local(0, 17, 5))
    assert late.state(local(0, 17, 5)) == "breached"
    assert [c.status(local(0, 17, 5)) for c in late.clocks.values()] == ["breached", "met"]
    assert late.clocks[FIRST_RESPONSE].levels_reached == [WARNING, BREACH]


def test_the_warning_state_lasts_until_the_breach() -> None:
    ticket = opened_ticket("normal")
    ticket.reach_levels(FIRST_RESPONSE, local(0, 15))
    assert ticket.state(local(0, 15)) == "warning"
    ticket.reply(local(0, 16))
    assert ticket.state(local(0, 16)) == "on_track"


def test_the_email_tells_the_target_the_time_used_and_the_local_due_time() -> None:
    ticket = opened_ticket("normal")
    facts = ticket.email_facts(FIRST_RESPONSE, local(0, 17), local(0, 15))
    assert facts == {
        "priority": "normal",
        "clock_label": "first response",
        "target": "8h",
        "used": "6h",
        "percent_used": 75,
        "due_local": "Mon 2026-03-02 17:00 CET",
        "timezone": "Europe/Stockholm",
    }


def test_the_summary_names_the_state_and_the_breach_due_times() -> None:
    ticket = opened_ticket("high")
    assert ticket.summary(MONDAY_9) == (
        "high ticket, SLA on_track. first response breach due Mon 2026-03-02 13:00 CET. "
        "resolution breach due Mon 2026-03-02 17:00 CET."
    )
    ticket.set_status(PENDING_CUSTOMER, local(0, 10))
    assert ticket.summary(local(0, 10)) == "high ticket, SLA paused. Clocks paused or stopped."


def test_a_paused_clock_is_described_with_its_time_left_and_no_due_time() -> None:
    ticket = opened_ticket("normal")
    ticket.set_status(PENDING_CUSTOMER, local(0, 10))
    first = ticket.describe(local(3, 12))[FIRST_RESPONSE]
    assert (first["state"], first["status"], first["used"], first["remaining"]) == (
        "paused",
        "met",
        "1h",
        "7h",
    )
    assert first["due"] is None and first["levels_reached"] == {}


def test_terms_that_cannot_time_the_priority_give_a_ticket_without_clocks() -> None:
    ticket = opened_ticket("critical")
    assert ticket.clocks == {}
    assert ticket.next_deadline() is None
    assert ticket.due_times() == {}


def test_terms_name_every_reason_they_cannot_time_a_ticket() -> None:
    assert sla_terms().problems_for("normal") == []
    broken = sla_terms(
        timezone="Mars/Olympus",
        warning_at=1.2,
        targets={"normal": SlaTargets(0, 24 * HOUR)},
    )
    problems = broken.problems_for("urgent")
    assert problems[:3] == [
        "unknown priority 'urgent'; known: ['normal']",
        "terms must satisfy 0 < warning_at < 1 < manager_at",
        "targets must be positive",
    ]
    assert problems[3].startswith("calendar: ")


def test_a_ticket_without_its_ids_cannot_run() -> None:
    ticket = TicketInput(
        ticket_id=" ", customer_id="c-1", subject="VAT", priority="", terms=sla_terms()
    )
    assert ticket.problems() == [
        "ticket_id is required",
        "priority is required",
        "unknown priority ''; known: ['urgent', 'high', 'normal', 'low']",
    ]


# The data of the ticket's events.


def test_every_ticket_event_declares_the_data_it_carries() -> None:
    assert tuple(EVENT_DATA) == EVENT_TYPES
    assert {
        "agent_replied": None,
        "status_changed": StatusChanged,
        "priority_changed": PriorityChanged,
        "resolved": None,
        "closed": None,
    } == LEGACY_EVENT_DATA
    assert {
        "customer_replied": None,
        "agent_replied": AgentReplied,
        "status_changed": TicketStatusChanged,
        "fields_changed": FieldsChanged,
        "priority_changed": PriorityChanged,
        "resolved": None,
        "closed": None,
    } == EVENT_DATA
    assert get_args(get_type_hints(StatusChanged)["status"]) == (OPEN, PENDING_CUSTOMER)


def test_event_data_decodes_to_its_dataclass_and_ignores_extra_fields() -> None:
    event = ProcessEvent("status_changed", {"status": "pending_customer", "by": "agent-ivy"})
    assert event_data(StatusChanged, event) == StatusChanged(status="pending_customer")
    event = ProcessEvent("priority_changed", {"priority": "high"})
    assert event_data(PriorityChanged, event) == PriorityChanged(priority="high")


@pytest.mark.parametrize(
    ("data_type", "data", "error"),
    [
        (StatusChanged, {"status": "closed"}, TypeError),
        (StatusChanged, {}, TypeError),
        (PriorityChanged, {"priority": 3}, TypeError),
        (PriorityChanged, {"priority": "  "}, ValueError),
    ],
)
def test_event_data_that_does_not_fit_is_refused(
    data_type: type, data: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        event_data(data_type, ProcessEvent("event", data))


# Properties over any sequence of events.

TERMS = {zone: sla_terms(zone) for zone in ("Europe/Stockholm", "America/New_York")}
priorities = st.sampled_from(["urgent", "high", "normal", "low"])
gaps = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=2))
actions = st.one_of(
    st.sampled_from(["pause", "resume", "reply", "look"]),
    priorities.map(lambda priority: f"priority:{priority}"),
)
histories = st.lists(st.tuples(gaps, actions), max_size=12)
starts = st.datetimes(
    min_value=datetime(2026, 3, 1), max_value=datetime(2026, 11, 30), timezones=st.just(UTC)
)


def replay(ticket: TicketClocks, start: datetime, history: list[tuple[timedelta, str]]) -> datetime:
    """Apply ``history`` (time passes, then something happens) to ``ticket``; the time after."""
    now = start
    for gap, action in history:
        now += gap
        if action == "pause":
            ticket.set_status(PENDING_CUSTOMER, now)
        elif action == "resume":
            ticket.set_status(OPEN, now)
        elif action == "reply":
            ticket.reply(now)
        elif action == "look":
            for name in ticket.clocks:
                ticket.reach_levels(name, now)
        else:
            ticket.change_priority(action.removeprefix("priority:"), now)
    return now


@settings(max_examples=200, deadline=None)
@given(
    zone=st.sampled_from(sorted(TERMS)),
    priority=priorities,
    start=starts,
    history=histories,
    later=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)),
)
def test_a_paused_clock_never_gains_business_time(
    zone: str,
    priority: str,
    start: datetime,
    history: list[tuple[timedelta, str]],
    later: timedelta,
) -> None:
    ticket = opened_ticket(priority, at=start, terms=TERMS[zone])
    now = replay(ticket, start, [*history, (timedelta(0), "pause")])
    for name, clock in ticket.clocks.items():
        assert clock.used_at(now + later) == used(ticket, now)[name]
        assert clock.due(1.0) is None
    assert ticket.next_deadline() is None


@settings(max_examples=200, deadline=None)
@given(
    zone=st.sampled_from(sorted(TERMS)),
    priority=priorities,
    start=starts,
    history=histories,
    new_priority=priorities,
)
def test_a_priority_change_keeps_the_time_used(
    zone: str,
    priority: str,
    start: datetime,
    history: list[tuple[timedelta, str]],
    new_priority: str,
) -> None:
    ticket = opened_ticket(priority, at=start, terms=TERMS[zone])
    now = replay(ticket, start, history)
    before = used(ticket, now)
    ticket.change_priority(new_priority, now)
    assert used(ticket, now) == before
    for name, clock in ticket.clocks.items():
        if not clock.stopped:
            assert clock.target == TERMS[zone].targets[new_priority].target(name)


@settings(max_examples=200, deadline=None)
@given(
    zone=st.sampled_from(sorted(TERMS)),
    priority=priorities,
    start=starts,
    history=histories,
)
def test_levels_are_reached_in_order_warning_breach_manager(
    zone: str, priority: str, start: datetime, history: list[tuple[timedelta, str]]
) -> None:
    ticket = opened_ticket(priority, at=start, terms=TERMS[zone])
    now = start
    for gap, action in history:
        now = replay(ticket, now, [(gap, action)])
        for name in ticket.clocks:
            levels = ticket.reach_levels(name, now).levels
            assert levels == [level for level in LEVELS if level in levels]
    for clock in ticket.clocks.values():
        reached = clock.levels_reached
        assert reached == list(LEVELS[: len(reached)])  # never a breach without a warning
        times = [clock.reached[level] for level in reached]
        assert times == sorted(times)


@settings(max_examples=200, deadline=None)
@given(
    zone=st.sampled_from(sorted(TERMS)),
    priority=priorities,
    start=starts,
    opened_before=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3)),
)
def test_deadlines_are_monotone_while_the_clocks_run(
    zone: str, priority: str, start: datetime, opened_before: timedelta
) -> None:
    ticket = TicketClocks(TERMS[zone], priority, created_at=start - opened_before, now=start)
    now = start
    previous = None
    for _ in range(len(LEVELS) * len(ticket.clocks) + 1):
        for name in ticket.clocks:
            ticket.reach_levels(name, now)
        deadline = ticket.next_deadline()
        if deadline is None:
            break
        due, label = deadline
        assert previous is None or due >= previous
        clock_label, level = label.rsplit(" ", 1)
        name = clock_label.replace(" ", "_")
        # The level the deadline names is reached then, not a moment before.
        assert ticket.clocks[name].reached_at(TERMS[zone].fraction(level), max(due, now))
        previous, now = due, max(due, now)
    assert deadline is None
    for clock in ticket.clocks.values():
        assert clock.levels_reached == [WARNING, BREACH, MANAGER]
