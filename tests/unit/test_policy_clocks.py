"""crm.domain.policy_clocks: a ticket's clocks under SLA policies, in cycles, with ladders.

Examples for each clock and rule, and properties over random event sequences:
business time used never exceeds wall time, paused time never counts, and a
breach falls due at the exact second its target is used, across DST changes
and holidays.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm.domain.calendar import BusinessCalendar, CalendarSpec
from crm.domain.policy_clocks import PolicyClocks
from crm.domain.sla import SlaTargets, SlaTerms
from crm.domain.sla_policies import (
    BREACHED,
    NOTIFY_ASSIGNEE,
    NOTIFY_ROLE,
    REASSIGN,
    SKIPPED,
    ClockPolicy,
    EscalationLevel,
    SlaPolicyBook,
    TicketConditions,
    TicketFields,
    TicketSlaPolicy,
    terms_policy,
)

HOUR = 3600
STOCKHOLM = "Europe/Stockholm"
MANILA = "Asia/Manila"
MONDAY_9 = datetime(2026, 3, 2, 9, tzinfo=ZoneInfo(STOCKHOLM))
# Sweden's clocks go forward on Sunday 2026-03-29; Good Friday and Easter Monday are holidays.
EASTER = ["2026-04-03", "2026-04-06"]


def terms() -> SlaTerms:
    return SlaTerms(
        targets={
            "urgent": SlaTargets(1 * HOUR, 4 * HOUR, around_the_clock=True),
            "high": SlaTargets(4 * HOUR, 8 * HOUR),
            "normal": SlaTargets(8 * HOUR, 24 * HOUR),
        },
        calendar=CalendarSpec(timezone=STOCKHOLM, holidays=EASTER),
    )


def clock(name: str, hours: float, *ladder: EscalationLevel, **more: object) -> ClockPolicy:
    targets = {p: hours * HOUR for p in ("urgent", "high", "normal")}
    return ClockPolicy(name, targets, ladder=list(ladder), **more)  # type: ignore[arg-type]


def level(
    name: str, *, percent: float | None = None, offset: float | None = None
) -> EscalationLevel:
    return EscalationLevel(name, NOTIFY_ASSIGNEE, percent=percent, offset_seconds=offset)


def four_clocks() -> TicketSlaPolicy:
    breach = EscalationLevel("breach", NOTIFY_ROLE, percent=100, role="team_lead")
    return TicketSlaPolicy(
        "four",
        [
            clock("first_response", 2, level("warning", percent=75), breach),
            clock("next_reply", 1, level("reminder", offset=-600), breach),
            clock("periodic_update", 3, breach),
            clock("resolution", 16, breach),
        ],
    )


def when(policy: TicketSlaPolicy, **conditions: list[str]) -> TicketSlaPolicy:
    """``policy`` applying only to tickets that meet ``conditions``."""
    return replace(policy, conditions=TicketConditions(**conditions))


def book(*policies: TicketSlaPolicy, **calendars: CalendarSpec) -> SlaPolicyBook:
    return SlaPolicyBook(
        default=terms_policy(terms()),
        policies=list(policies),
        calendars=dict(calendars),
        calendar=terms().calendar,
    )


def ticket(policies: SlaPolicyBook, at: datetime = MONDAY_9, **fields: object) -> PolicyClocks:
    values: dict[str, object] = {"priority": "normal", **fields}
    return PolicyClocks(policies, TicketFields(**values), created_at=at, now=at)  # type: ignore[arg-type]


def at(hours: float, minutes: float = 0) -> datetime:
    return MONDAY_9 + timedelta(hours=hours, minutes=minutes)


def look(sla: PolicyClocks, now: datetime) -> list[tuple[str, str]]:
    """Every action due by ``now``, as (step, action)."""
    return [
        (action.step, action.action)
        for name in sla.clock_names()
        for action in sla.due_actions(name, now)
    ]


# Examples.


def test_a_ticket_no_policy_matches_runs_the_terms_two_clocks_and_ladder() -> None:
    sla = ticket(book(when(four_clocks(), tags=["vip"])))
    assert sla.policy.name == "default"
    assert sla.clock_names() == ["first_response", "resolution"]
    assert sla.next_deadline() == (at(6), "first response warning")
    assert look(sla, at(6)) == [("first_response_warning", NOTIFY_ASSIGNEE)]
    assert look(sla, at(8)) == [
        ("first_response_breach", NOTIFY_ROLE),
        ("first_response_breach", BREACHED),
    ]


def test_the_first_policy_whose_conditions_match_wins() -> None:
    vip = when(four_clocks(), tags=["vip", "gold"], organization=["acme"])
    manila = TicketSlaPolicy("manila", [clock("resolution", 4)], TicketConditions(group=["ph"]))
    policies = book(vip, manila)
    assert ticket(policies, tags=["gold"], organization="acme").policy.name == "four"
    assert ticket(policies, tags=["gold"], organization="other").policy.name == "default"
    assert ticket(policies, tags=["gold"], organization="acme", group="ph").policy.name == "four"
    assert ticket(policies, group="ph").policy.name == "manila"


def test_each_customer_reply_after_an_answer_restarts_the_next_reply_clock() -> None:
    sla = ticket(book(four_clocks()))
    assert "next_reply" not in {n for n in sla.clock_names() if sla.clocks[n].active}
    sla.customer_replied(at(0, 10))  # before any agent reply: first response covers it
    assert not sla.clocks["next_reply"].active
    sla.agent_replied(True, at(1))
    sla.customer_replied(at(2))
    sla.customer_replied(at(2, 30))  # still the oldest unanswered reply that counts
    assert sla.due_times()["next_reply_breach"] == at(3)
    assert sla.due_times()["next_reply_reminder"] == at(2, 50)
    assert look(sla, at(3)) == [
        ("next_reply_reminder", SKIPPED),
        ("next_reply_breach", NOTIFY_ROLE),
        ("next_reply_breach", BREACHED),
    ]
    sla.agent_replied(True, at(3, 30))
    sla.customer_replied(at(4))
    assert look(sla, at(4, 50)) == [("next_reply_2_reminder", NOTIFY_ASSIGNEE)]
    sla.agent_replied(False, at(4, 55))  # an internal note answers nobody
    sla.agent_replied(True, at(4, 58))
    outcome = {o["clock"]: o for o in sla.outcomes(at(5))}["next_reply"]
    assert (outcome["status"], outcome["breaches"], outcome["cycles"]) == ("breached", 1, 2)
    assert outcome["used_seconds"] == pytest.approx(1.5 * HOUR + 58 * 60)


def test_a_cycle_a_reply_or_the_resolution_ends_within_its_target_is_met() -> None:
    sla = ticket(book(four_clocks()))
    sla.agent_replied(True, at(1))  # first response met; periodic update starts
    sla.customer_replied(at(2))
    assert look(sla, at(3)) == [  # the first next-reply cycle breaches: not met
        ("next_reply_reminder", SKIPPED),
        ("next_reply_breach", NOTIFY_ROLE),
        ("next_reply_breach", BREACHED),
    ]
    sla.agent_replied(True, at(3, 30))  # next reply late; periodic update 2.5 h of 3: met
    sla.customer_replied(at(4))
    sla.agent_replied(True, at(4, 20))  # next reply 2 met within 20 minutes
    sla.end("resolved", at(5))
    assert [(m.step, m.ended_at, m.used) for m in sla.met()] == [
        ("first_response_met", at(1), timedelta(hours=1)),
        ("periodic_update_met", at(3, 30), timedelta(hours=2, minutes=30)),
        ("next_reply_2_met", at(4, 20), timedelta(minutes=20)),
        ("periodic_update_2_met", at(4, 20), timedelta(minutes=50)),
        ("periodic_update_3_met", at(5), timedelta(minutes=40)),
        ("resolution_met", at(5), timedelta(hours=5)),
    ]
    assert sla.met()[0].started_at == at(0) and sla.met()[0].target == timedelta(hours=2)


def test_a_cancelled_ticket_or_a_clock_the_new_policy_drops_is_not_met() -> None:
    bare = TicketSlaPolicy("bare", [clock("resolution", 16)], TicketConditions(type=["task"]))
    sla = ticket(book(bare, when(four_clocks(), type=["incident"])), type="incident")
    sla.change_fields({"type": "task"}, at(1))  # first response dropped within its target
    sla.end("cancelled", at(2))
    assert sla.met() == []
    overdue = ticket(book(four_clocks()))
    overdue.end("resolved", at(49))  # 17 business hours; no look saw either breach
    assert overdue.met() == []


def test_a_public_reply_restarts_the_periodic_update_and_a_silence_breaches_it() -> None:
    sla = ticket(book(four_clocks()))
    sla.agent_replied(True, at(0, 30))
    assert sla.due_times()["periodic_update_breach"] == at(3, 30)
    sla.agent_replied(True, at(2))
    assert sla.due_times()["periodic_update_breach"] == at(5)
    assert look(sla, at(5)) == [
        ("periodic_update_2_breach", NOTIFY_ROLE),
        ("periodic_update_2_breach", BREACHED),
    ]
    assert sla.state(at(5)) == "breached"


def test_pending_and_on_hold_pause_the_clocks_their_policy_names() -> None:
    policy = four_clocks()
    policy.clocks[3] = clock("resolution", 16, pause_on=["pending"])
    sla = ticket(book(policy))
    sla.set_status("on_hold", at(1))
    assert sla.clocks["first_response"].current.running_since is None  # type: ignore[union-attr]
    assert sla.clocks["resolution"].running
    sla.set_status("pending_customer", at(2))  # read as pending
    assert sla.status == "pending" and not sla.clocks["resolution"].running
    assert sla.state(at(2)) == "paused"
    sla.set_status("open", at(3))
    assert sla.clocks["resolution"].used_at(at(3)) == timedelta(hours=2)
    sla.set_status("solved", at(4))
    assert sla.outcome == "solved"


def test_a_changed_group_rematches_the_policy_and_keeps_the_time_used() -> None:
    manila = TicketSlaPolicy(
        "manila",
        [clock("first_response", 1), clock("resolution", 4)],
        TicketConditions(group=["ph"]),
    )
    policies = book(manila, ph=CalendarSpec(timezone=MANILA, hours={"mon": "08:00-20:00"}))
    sla = ticket(policies)
    assert sla.policy.name == "default"
    sla.change_fields({"group": "ph"}, at(0, 30))  # 09:30 Stockholm is 16:30 in Manila
    assert (sla.policy.name, sla.timezone) == ("manila", MANILA)
    # Half an hour used of the one-hour target; Manila's Monday runs to 20:00 (13:00 here).
    assert sla.due_times()["first_response_breach"] == at(1)
    assert sla.clocks["resolution"].target == timedelta(hours=4)


def test_a_clock_only_the_new_policy_runs_starts_at_the_rematch() -> None:
    bare = TicketSlaPolicy("bare", [clock("resolution", 16)], TicketConditions(type=["task"]))
    policies = book(bare, when(four_clocks(), type=["incident"]))
    sla = ticket(policies, type="task")
    assert sla.clock_names() == ["resolution"]
    sla.change_fields({"type": "incident"}, at(1))
    assert sla.clock_names() == ["resolution", "first_response", "next_reply", "periodic_update"]
    assert sla.due_times()["first_response_breach"] == at(3)
    sla.change_fields({"type": "task"}, at(2))
    assert sla.details(at(2))["clocks"]["first_response"]["state"] == "dropped"


def test_a_priority_no_clock_times_is_refused() -> None:
    sla = ticket(book())
    with pytest.raises(ValueError, match="unknown priority 'low'"):
        sla.change_fields({"priority": "low"}, at(1))


def test_a_ladder_runs_any_number_of_levels_at_percentages_and_offsets() -> None:
    ladder = [
        level("reminder", offset=-HOUR),
        level("warning", percent=90),
        EscalationLevel("breach", NOTIFY_ROLE, percent=100, role="team_lead"),
        EscalationLevel("move", REASSIGN, offset_seconds=HOUR, group="support-senior"),
        EscalationLevel("manager", NOTIFY_ROLE, percent=200, role="manager"),
    ]
    sla = ticket(book(TicketSlaPolicy("five", [clock("resolution", 4, *ladder)])))
    seen = []
    for hour in (3, 3.6, 4, 5, 8):
        seen += look(sla, at(hour))
    assert seen == [
        ("resolution_reminder", NOTIFY_ASSIGNEE),
        ("resolution_warning", NOTIFY_ASSIGNEE),
        ("resolution_breach", NOTIFY_ROLE),
        ("resolution_breach", BREACHED),
        ("resolution_move", REASSIGN),
        ("resolution_manager", NOTIFY_ROLE),
    ]


def test_a_reply_after_the_breach_instant_counts_the_breach_no_look_saw() -> None:
    sla = ticket(book(four_clocks()))
    sla.agent_replied(True, at(2, 1))
    assert sla.breached_clocks() == ["first_response"]


def test_the_policies_refuse_what_cannot_run() -> None:
    wrong = TicketSlaPolicy(
        "wrong",
        [
            ClockPolicy("time_to_lunch", {"normal": 60}),
            ClockPolicy("resolution", {"normal": -1}, pause_on=["solved"]),
            ClockPolicy(
                "next_reply",
                {"normal": 60},
                ladder=[EscalationLevel("x", REASSIGN, percent=50), EscalationLevel("x", "dance")],
            ),
        ],
    )
    problems = book(wrong).problems()
    assert len(problems) == 7, problems


# Properties.

EVENTS = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=36 * HOUR),
        st.sampled_from(
            ["customer", "public", "internal", "open", "pending", "on_hold", "group", "priority"]
        ),
    ),
    max_size=25,
)


def _policies() -> SlaPolicyBook:
    manila = TicketSlaPolicy(
        "manila",
        [clock("first_response", 1), clock("next_reply", 2), clock("resolution", 6)],
        TicketConditions(group=["ph"]),
    )
    return book(
        when(four_clocks(), group=["se"]),
        manila,
        ph=CalendarSpec(timezone=MANILA, holidays=["2026-03-30"]),
        se=CalendarSpec(timezone=STOCKHOLM, holidays=EASTER),
    )


def _run(events: list[tuple[int, str]], start: datetime, *, regroup: bool) -> None:
    """Apply ``events`` and check after each that no clock used more business time than
    wall time passed, and that a paused cycle stands still."""
    sla = ticket(_policies(), start, group="se")
    now = start
    for seconds, kind in events:
        before = {name: clock.used_at(now) for name, clock in sla.clocks.items()}
        paused = {name for name, clock in sla.clocks.items() if clock.active and not clock.running}
        now += timedelta(seconds=seconds)
        for name in paused:
            assert sla.clocks[name].used_at(now) == before[name]
        for clock in sla.clocks.values():
            assert clock.used_at(now) <= now - start
            if clock.started_at is not None:
                assert clock.cycle_used(now) <= now - clock.started_at
        if kind == "customer":
            sla.customer_replied(now)
        elif kind in ("public", "internal"):
            sla.agent_replied(kind == "public", now)
        elif kind in ("open", "pending", "on_hold"):
            sla.set_status(kind, now)
        elif regroup:
            change = {"group": "ph" if sla.fields.group == "se" else "se"}
            if kind == "priority":
                change = {"priority": "high" if sla.priority == "normal" else "normal"}
            sla.change_fields(change, now)
        for name in sla.clock_names():
            sla.due_actions(name, now)


@settings(max_examples=150, deadline=None)
@given(EVENTS, st.integers(min_value=0, max_value=60 * 24 * 40))
def test_business_time_used_never_exceeds_wall_time(
    events: list[tuple[int, str]], minutes: int
) -> None:
    _run(events, datetime(2026, 3, 9, tzinfo=UTC) + timedelta(minutes=minutes), regroup=True)


@settings(max_examples=150, deadline=None)
@given(EVENTS, st.integers(min_value=0, max_value=60 * 24 * 40))
def test_paused_time_never_counts(events: list[tuple[int, str]], minutes: int) -> None:
    """Against a reference: the resolution clock's time is the calendar's business time over
    the spans the ticket was open."""
    start = datetime(2026, 3, 9, tzinfo=UTC) + timedelta(minutes=minutes)
    sla = ticket(_policies(), start, group="se")
    calendar = BusinessCalendar.from_spec(CalendarSpec(timezone=STOCKHOLM, holidays=EASTER))
    now, expected = start, timedelta(0)
    open_since: datetime | None = start
    for seconds, kind in events:
        now += timedelta(seconds=seconds)
        if kind not in ("open", "pending", "on_hold"):
            continue
        if kind == "open" and open_since is None:
            open_since = now
        elif kind != "open" and open_since is not None:
            expected += calendar.between(open_since, now)
            open_since = None
        sla.set_status(kind, now)
    if open_since is not None:
        expected += calendar.between(open_since, now)
    assert sla.clocks["resolution"].used_at(now) == expected


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=0, max_value=60 * 24 * 60),
    st.integers(min_value=60, max_value=40 * HOUR),
    st.sampled_from(["se", "ph"]),
)
def test_a_breach_falls_due_at_the_exact_second_across_dst_and_holidays(
    minutes: int, target: int, group: str
) -> None:
    """Opened any minute from mid-March to mid-May 2026 (Sweden's DST change, Easter), the
    breach instant is when the target is used: a second earlier it is not."""
    policy = TicketSlaPolicy("one", [ClockPolicy("resolution", {"normal": float(target)})])
    policies = book(
        policy,
        ph=CalendarSpec(timezone=MANILA, holidays=["2026-04-02", "2026-04-03"]),
        se=CalendarSpec(timezone=STOCKHOLM, holidays=EASTER),
    )
    opened = datetime(2026, 3, 15, tzinfo=UTC) + timedelta(minutes=minutes)
    sla = ticket(policies, opened, group=group)
    due = sla.due_times()["resolution_breach"]
    clock = sla.clocks["resolution"]
    assert clock.used_at(due) == timedelta(seconds=target)
    assert clock.used_at(due - timedelta(seconds=1)) < timedelta(seconds=target)
    assert look(sla, due - timedelta(seconds=1)) == []
    assert look(sla, due) == [("resolution_breach", BREACHED)]


def test_a_warning_names_the_instant_its_clock_breaches_and_the_breach_its_own() -> None:
    sla = ticket(book(four_clocks()))  # first response: 2 h, warned at 75%

    [warning] = sla.due_actions("first_response", at(1, 40))  # looked at 10 min late
    assert (warning.step, warning.due) == ("first_response_warning", at(2))
    lead, breach = sla.due_actions("first_response", at(2, 5))
    assert (breach.action, breach.due) == (BREACHED, at(2))
    assert (lead.action, lead.due) == (NOTIFY_ROLE, at(2))
