"""The reports over known outcomes, on SQLite and PostgreSQL: counts, rates and medians
per period and group, totals, tenants, ranges, CSV."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import functools
import io
import itertools
import threading
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event as sqlalchemy_events
from sqlmodel import Session, select

from crm.reports import REPORTS, ReportQuery, ReportTable, report_csv
from crm.reports.facts import store_sla_outcome
from crm.reports.rollups import PERCENTILE_ERROR, Contribution, add_to_rollups, cover
from crm.store.db import Database
from crm.store.models import ProcessOutcome, RenewalTerm, ReportRollup, SlaOutcome
from crm.store.webhooks import Emitted, emit
from tests.db.test_database import db  # noqa: F401  (the fixture: each test on both databases)

MONDAY = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
_ids = itertools.count(1)


def event(
    event_type: str,
    at: datetime,
    *,
    tenant: str | None = None,
    started_at: datetime | None = None,
    event_id: str | None = None,
    **data: Any,
) -> Emitted:
    number = next(_ids)
    return Emitted(
        tenant=tenant,
        event_id=event_id or f"process-{number}/offer_outcome@run-{number}",
        type=event_type,
        process_id=f"process-{number}",
        occurred_at=at,
        data={"process_id": f"process-{number}", "customer_id": f"c-{number}", **data},
        started_at=started_at,
    )


def ticket(
    at: datetime,
    *,
    priority: str = "high",
    tier: str | None = "gold",
    assignee: str = "agent-ana",
    first: tuple[str, float] = ("met", 600),
    resolution: tuple[str, float] = ("met", 7200),
    escalations: tuple[str, ...] = (),
    tenant: str | None = None,
) -> SlaOutcome:
    number = next(_ids)
    return SlaOutcome(
        key=f"ticket-t{number}/sla_outcome",
        tenant=tenant,
        process_id=f"ticket-t{number}",
        ticket_id=f"t{number}",
        customer_id="c-1",
        priority=priority,
        tier=tier,
        assignee_id=assignee,
        outcome="breached" if "breached" in (first[0], resolution[0]) else "met",
        first_response=first[0],
        resolution=resolution[0],
        first_response_used_seconds=first[1],
        resolution_used_seconds=resolution[1],
        escalations=[{"clock": "resolution", "level": level} for level in escalations],
        ended_at=at,
    )


async def emit_all(database: Database, *events: Emitted) -> None:
    for one in events:
        await database.run(functools.partial(_emit, event=one))


def _emit(session: Session, event: Emitted) -> None:
    emit(session, event)


async def store_tickets(database: Database, *tickets: SlaOutcome) -> None:
    for one in tickets:
        await database.run(functools.partial(_store, outcome=one))


def _store(session: Session, outcome: SlaOutcome) -> None:
    store_sla_outcome(session, outcome)


async def report(
    database: Database,
    name: str,
    *,
    tenant: str | None = None,
    days: int = 14,
    period: str = "week",
    by: str | None = None,
) -> ReportTable:
    start = MONDAY.replace(hour=0)
    query = ReportQuery(start, start + timedelta(days=days), period, by)  # type: ignore[arg-type]
    return await REPORTS[name].run(database, tenant, query)


def near(value: float | None, exact: float) -> bool:
    return value is not None and abs(value - exact) <= exact * PERCENTILE_ERROR + 1


async def test_sla_report_counts_each_clock_and_its_compliance_per_week(
    db: Database,  # noqa: F811
) -> None:
    await store_tickets(
        db,
        ticket(MONDAY, first=("met", 600), resolution=("met", 3600)),
        ticket(MONDAY + timedelta(hours=1), first=("met", 1200), resolution=("met", 7200)),
        ticket(
            MONDAY + timedelta(days=2),
            first=("breached", 4000),
            resolution=("breached", 90000),
            escalations=("warning", "breach", "manager"),
        ),
        ticket(MONDAY + timedelta(days=8), first=("met", 300), resolution=("cancelled", 10)),
    )

    table = await report(db, "sla")

    first_week, second_week = table.rows
    assert [row["period"] for row in table.rows] == ["2026-03-02", "2026-03-09"]
    assert first_week["tickets"] == 3
    assert (first_week["first_response_met"], first_week["first_response_breached"]) == (2, 1)
    assert first_week["first_response_compliance"] == 66.7
    assert first_week["resolution_compliance"] == 66.7
    assert near(first_week["first_response_median"], 1200)
    assert near(first_week["first_response_p90"], 4000)
    assert near(first_week["resolution_median"], 7200)
    assert first_week["escalations_warning"] == 1
    assert first_week["escalations_manager"] == 1
    assert second_week["tickets"] == 1
    assert second_week["resolution_met"] + second_week["resolution_breached"] == 0
    assert second_week["resolution_compliance"] is None  # no resolution clock ended
    assert second_week["resolution_median"] is None
    assert table.totals["tickets"] == 4
    assert table.totals["first_response_compliance"] == 75.0
    assert near(table.totals["first_response_median"], 600)


async def test_sla_report_shows_next_reply_and_periodic_update_clocks_and_their_breaches(
    db: Database,  # noqa: F811
) -> None:
    under_policies = ticket(MONDAY, first=("met", 600), resolution=("met", 7200))
    under_policies.clocks = {
        "next_reply": {"status": "breached", "used_seconds": 10500, "breaches": 2, "cycles": 3},
        "periodic_update": {"status": "met", "used_seconds": 5400, "breaches": 0, "cycles": 2},
        "first_response": {"status": "met", "used_seconds": 600, "breaches": 0, "cycles": 1},
    }
    before_policies = ticket(MONDAY, first=("breached", 4000), resolution=("met", 3600))
    await store_tickets(db, under_policies, before_policies)

    totals = (await report(db, "sla")).totals

    assert (totals["next_reply_met"], totals["next_reply_breached"]) == (0, 1)
    assert totals["next_reply_breaches"] == 2
    assert totals["next_reply_compliance"] == 0.0
    assert near(totals["next_reply_median"], 10500)
    assert (totals["periodic_update_met"], totals["periodic_update_breaches"]) == (1, 0)
    assert totals["first_response_breaches"] == 1  # a run before policies breached once
    assert totals["resolution_compliance"] == 100.0


async def test_sla_report_by_priority_has_a_row_per_week_and_priority(
    db: Database,  # noqa: F811
) -> None:
    await store_tickets(
        db,
        ticket(MONDAY, priority="urgent", first=("breached", 900)),
        ticket(MONDAY, priority="urgent", first=("met", 100)),
        ticket(MONDAY, priority="low"),
        ticket(MONDAY + timedelta(days=7), priority="low"),
    )

    table = await report(db, "sla", by="priority")

    assert [c.key for c in table.columns[:2]] == ["period", "priority"]
    assert [(r["period"], r["priority"], r["tickets"]) for r in table.rows] == [
        ("2026-03-02", "low", 1),
        ("2026-03-02", "urgent", 2),
        ("2026-03-09", "low", 1),
    ]
    assert table.rows[1]["first_response_compliance"] == 50.0
    assert table.totals["tickets"] == 4


async def test_onboarding_report_rates_activation_and_times_it_from_the_runs_start(
    db: Database,  # noqa: F811
) -> None:
    start = MONDAY - timedelta(days=10)
    await emit_all(
        db,
        event(
            "onboarding.activated",
            MONDAY,
            started_at=start,
            plan="growth",
            csm_id="csm-ana",
            nudges_sent=1,
        ),
        event(
            "onboarding.activated",
            MONDAY + timedelta(days=1),
            started_at=start,
            plan="starter",
            csm_id="csm-bo",
            nudges_sent=2,
        ),
        event("onboarding.activated", MONDAY + timedelta(days=2), plan="growth", csm_id="csm-ana"),
        event("onboarding.stalled", MONDAY + timedelta(days=3), plan="growth", csm_id="csm-ana"),
        event("onboarding.cancelled", MONDAY + timedelta(days=20), plan="growth"),
    )

    table = await report(db, "onboarding", days=30, period="month")
    by_plan = await report(db, "onboarding", days=30, period="month", by="plan")

    (march,) = table.rows
    assert march["period"] == "2026-03-01"
    assert (march["activated"], march["stalled"], march["cancelled"]) == (3, 1, 1)
    assert march["activation_rate"] == 60.0
    assert march["nudges_before_activation"] == 3
    # Ten and eleven days from the runs' starts; the third run's start is unknown.
    assert near(march["time_to_activation_median"], 10 * 86400)
    assert {r["plan"]: r["activated"] for r in by_plan.rows} == {"growth": 2, "starter": 1}
    assert {r["plan"]: r["activation_rate"] for r in by_plan.rows} == {
        "growth": 50.0,
        "starter": 100.0,
    }


_OUTCOME_COLUMNS = (
    "renewed",
    "auto_renewed",
    "lapsed",
    "cancelled",
    "renewal_rate",
    "value_renewed",
    "value_lapsed",
    "reminders",
)


async def test_renewals_report_sums_the_value_renewed_and_lapsed_per_owner(
    db: Database,  # noqa: F811
) -> None:
    owner: dict[str, Any] = {"plan": "growth", "owner_id": "am-kim"}
    await emit_all(
        db,
        event("renewal.renewed", MONDAY, annual_value=1200.5, **owner),
        event("renewal.auto_renewed", MONDAY, annual_value=800, **owner),
        event("renewal.lapsed", MONDAY, annual_value=500, plan="starter", owner_id="am-lee"),
        event("renewal.cancelled", MONDAY, annual_value=900, **owner),
        event("renewal.reminded", MONDAY, days_before=30, term=1),
    )

    table = await report(db, "renewals")
    by_owner = await report(db, "renewals", by="owner")

    assert {key: table.totals[key] for key in _OUTCOME_COLUMNS} == {
        "renewed": 1,
        "auto_renewed": 1,
        "lapsed": 1,
        "cancelled": 1,
        "renewal_rate": 66.7,
        "value_renewed": 2000.5,
        "value_lapsed": 500.0,
        "reminders": 1,
    }
    rows = {r["owner"]: r for r in by_owner.rows}
    assert rows["am-kim"]["value_renewed"] == 2000.5
    assert rows["am-lee"]["value_lapsed"] == 500.0
    assert rows[""]["reminders"] == 1  # a reminder does not say whose renewal it is


async def test_leads_report_shows_outcomes_by_score_band(
    db: Database,  # noqa: F811
) -> None:
    await emit_all(
        db,
        event("lead.routed", MONDAY, owner_id="rep-1"),
        event("lead.routed", MONDAY, owner_id="rep-2"),
        event("lead.qualified", MONDAY, score=80, grade="A", owner_id="rep-1"),
        event("lead.nurture", MONDAY, score=40, grade="C", owner_id="rep-2"),
        event("lead.unresponsive", MONDAY, score=85, grade="A", owner_id="rep-1"),
    )

    by_grade = await report(db, "leads", by="grade")
    by_owner = await report(db, "leads", by="owner")

    grades = {r["grade"]: r for r in by_grade.rows}
    assert (grades["A"]["qualified"], grades["A"]["unresponsive"]) == (1, 1)
    assert grades["A"]["qualified_rate"] == 50.0
    assert grades["C"]["nurture"] == 1
    assert grades[""]["routed"] == 2  # routing happens before the lead is graded
    assert {r["owner"]: r["routed"] for r in by_owner.rows} == {"rep-1": 1, "rep-2": 1}
    assert by_grade.totals["qualified_rate"] == round(100 / 3, 1)


async def test_automations_report_counts_each_end_per_version(
    db: Database,  # noqa: F811
) -> None:
    run: dict[str, Any] = {
        "automation_id": "rescue",
        "object": "crmflow.onboarding",
        "record_id": "c-1",
    }
    await emit_all(
        db,
        event("automation.enrolled", MONDAY, version=1, **run),
        event("automation.enrolled", MONDAY, version=2, **run),
        event("automation.goal_met", MONDAY, version=1, outcome="goal_met", **run),
        event("automation.step_failed", MONDAY, version=2, outcome="failed", step="s", **run),
    )

    table = await report(db, "automations", by="version")

    rows = {r["version"]: r for r in table.rows}
    assert (rows["rescue v1"]["enrolled"], rows["rescue v1"]["goal_met"]) == (1, 1)
    assert (rows["rescue v2"]["enrolled"], rows["rescue v2"]["step_failed"]) == (1, 1)
    assert table.totals["goal_rate"] == 50.0


async def test_goal_rate_counts_only_runs_of_automations_with_a_goal(
    db: Database,  # noqa: F811
) -> None:
    def run(automation: str, has_goal: bool | None) -> dict[str, Any]:
        fields: dict[str, Any] = {"automation_id": automation, "version": 1, "record_id": "c-1"}
        return fields | ({} if has_goal is None else {"has_goal": has_goal})

    await emit_all(
        db,
        event("automation.goal_met", MONDAY, outcome="goal_met", **run("rescue", True)),
        event("automation.completed", MONDAY, outcome="completed", **run("rescue", True)),
        event("automation.completed", MONDAY, outcome="completed", **run("welcome", False)),
        event("automation.completed", MONDAY, outcome="completed", **run("welcome", False)),
        event("automation.completed", MONDAY, outcome="completed", **run("before", None)),
    )

    table = await report(db, "automations", by="automation")

    rows = {r["automation"]: r for r in table.rows}
    assert rows["rescue"]["goal_rate"] == 50.0
    assert rows["welcome"]["completed"] == 2
    assert rows["welcome"]["goal_rate"] is None  # no goal: no rate, not 0%
    assert rows["before"]["goal_rate"] == 0.0  # emitted before has_goal: taken to have one
    assert table.totals["goal_rate"] == round(100 / 3, 1)


async def test_a_tenant_sees_only_its_own_outcomes(
    db: Database,  # noqa: F811
) -> None:
    await emit_all(
        db,
        event("onboarding.activated", MONDAY, tenant="acme", plan="growth"),
        event("onboarding.stalled", MONDAY, tenant="globex", plan="growth"),
        event("onboarding.cancelled", MONDAY, plan="growth"),
    )
    await store_tickets(db, ticket(MONDAY, tenant="acme"), ticket(MONDAY))

    acme = await report(db, "onboarding", tenant="acme")
    none = await report(db, "onboarding")

    assert (acme.totals["activated"], acme.totals["stalled"], acme.totals["cancelled"]) == (1, 0, 0)
    assert (none.totals["activated"], none.totals["cancelled"]) == (0, 1)
    assert (await report(db, "sla", tenant="acme")).totals["tickets"] == 1
    assert (await report(db, "sla", tenant="globex")).totals["tickets"] == 0
    assert (await report(db, "sla")).totals["tickets"] == 1


async def test_a_repeated_event_counts_once_and_is_one_fact(
    db: Database,  # noqa: F811
) -> None:
    once = event("renewal.renewed", MONDAY, annual_value=100, plan="growth", owner_id="am-kim")
    await emit_all(db, once, once)
    same_ticket = ticket(MONDAY)
    await store_tickets(db, same_ticket, same_ticket.model_copy())

    facts = await db.all(select(ProcessOutcome))

    assert [(f.process, f.outcome, f.plan, f.owner_id, f.annual_value) for f in facts] == [
        ("renewal", "renewed", "growth", "am-kim", 100.0)
    ]
    assert (await report(db, "renewals")).totals["value_renewed"] == 100.0
    assert (await report(db, "sla")).totals["tickets"] == 1


async def test_only_the_days_of_the_range_count(
    db: Database,  # noqa: F811
) -> None:
    await emit_all(
        db,
        event("lead.qualified", MONDAY - timedelta(hours=10), grade="A"),
        event("lead.qualified", MONDAY, grade="A"),
        event("lead.qualified", MONDAY + timedelta(days=7), grade="A"),
    )

    table = await report(db, "leads", days=7)

    assert [(r["period"], r["qualified"]) for r in table.rows] == [("2026-03-02", 1)]
    assert table.totals["qualified"] == 1


async def test_an_empty_range_has_every_period_with_nothing_in_it(
    db: Database,  # noqa: F811
) -> None:
    table = await report(db, "sla", days=21)

    assert [(r["period"], r["tickets"]) for r in table.rows] == [
        ("2026-03-02", 0),
        ("2026-03-09", 0),
        ("2026-03-16", 0),
    ]
    assert table.totals["first_response_median"] is None


async def test_an_unknown_dimension_or_a_backwards_range_is_refused(
    db: Database,  # noqa: F811
) -> None:
    with pytest.raises(ValueError, match="by: one of priority, tier, assignee"):
        await report(db, "sla", by="plan")
    with pytest.raises(ValueError, match="end must be after start"):
        await report(db, "sla", days=-1)


async def test_a_range_may_end_on_the_last_day_a_report_can_count_and_no_later(
    db: Database,  # noqa: F811
) -> None:
    automations = REPORTS["automations"]
    last = datetime(9999, 12, 1, tzinfo=UTC)

    months = await automations.run(db, None, ReportQuery(last - timedelta(days=61), last, "month"))
    weeks = await automations.run(db, None, ReportQuery(last - timedelta(days=3), last, "week"))

    assert [row["period"] for row in months.rows] == ["9999-10-01", "9999-11-01"]
    assert [row["period"] for row in weeks.rows] == ["9999-11-22", "9999-11-29"]
    for period in ("week", "month"):
        for past in (last + timedelta(days=30), last + timedelta(hours=1)):
            query = ReportQuery(last - timedelta(days=1), past, period)
            with pytest.raises(ValueError, match="end must be at most 9999-12-01"):
                await automations.run(db, None, query)


async def test_the_csv_has_the_labels_the_rows_and_the_totals(
    db: Database,  # noqa: F811
) -> None:
    await emit_all(db, event("lead.qualified", MONDAY, grade="A", owner_id="=cmd|' /C calc'!A0"))

    table = await report(db, "leads", days=7, by="owner")
    lines = list(csv.reader(io.StringIO(report_csv(table))))

    assert lines[0][:3] == ["Period", "Owner", "Routed"]
    assert lines[1][:2] == ["2026-03-02", "'=cmd|' /C calc'!A0"]  # no formula in a spreadsheet
    assert lines[1][lines[0].index("Qualified")] == "1"
    assert lines[-1][0] == "total"
    assert lines[-1][lines[0].index("Qualified rate")] == "100.0"


async def test_whole_months_and_weeks_count_the_same_as_their_days(
    db: Database,  # noqa: F811
) -> None:
    await emit_all(
        db,
        *(
            event("lead.qualified", datetime(2026, 3, 1, tzinfo=UTC) + timedelta(days=n), grade="A")
            for n in range(0, 61, 3)
        ),
    )
    start = datetime(2026, 3, 1, tzinfo=UTC)
    spec = REPORTS["leads"]

    months = await spec.run(db, None, ReportQuery(start, start + timedelta(days=61), "month"))
    weeks = await spec.run(db, None, ReportQuery(start, start + timedelta(days=61), "week"))
    ragged = await spec.run(
        db, None, ReportQuery(start + timedelta(days=2), start + timedelta(days=40), "month")
    )

    assert [(r["period"], r["qualified"]) for r in months.rows] == [
        ("2026-03-01", 11),
        ("2026-04-01", 10),
    ]
    assert sum(r["qualified"] for r in weeks.rows) == 21
    assert weeks.rows[0]["period"] == "2026-02-23"  # the week of March 1st, a Sunday
    assert [(r["period"], r["qualified"]) for r in ragged.rows] == [
        ("2026-03-01", 10),
        ("2026-04-01", 3),
    ]


def test_a_range_is_covered_by_whole_months_weeks_and_days_never_across_a_period() -> None:
    spans = cover(date(2026, 3, 1), date(2026, 5, 1), "month")
    weekly = cover(date(2026, 3, 1), date(2026, 4, 6), "week")
    ragged = cover(date(2026, 3, 28), date(2026, 4, 14), "month")

    assert spans == [("month", date(2026, 3, 1)), ("month", date(2026, 4, 1))]
    assert weekly[0] == ("day", date(2026, 3, 1))
    assert weekly[1:] == [("week", date(2026, 3, d)) for d in (2, 9, 16, 23, 30)]
    assert ragged == [
        *(("day", date(2026, 3, d)) for d in range(28, 32)),
        *(("day", date(2026, 4, d)) for d in range(1, 6)),
        ("week", date(2026, 4, 6)),
        ("day", date(2026, 4, 13)),
    ]


def of_process(
    event_type: str, process_id: str, at: datetime, *, tenant: str | None = None, **data: Any
) -> Emitted:
    """An event of one run (``process_id``), as its emissions carry it."""
    number = next(_ids)
    return Emitted(
        tenant=tenant,
        event_id=f"{process_id}/emit_{number}@run",
        type=event_type,
        process_id=process_id,
        occurred_at=at,
        data={"process_id": process_id, "customer_id": "c-1", **data},
    )


async def test_onboarding_report_counts_starts_and_the_median_time_to_each_milestone(
    db: Database,  # noqa: F811
) -> None:
    growth: dict[str, Any] = {"plan": "growth", "csm_id": "csm-ana"}
    await emit_all(
        db,
        event("onboarding.started", MONDAY, **growth),
        event("onboarding.started", MONDAY, **growth),
        event("onboarding.started", MONDAY + timedelta(days=1), plan="starter", csm_id="csm-bo"),
        *(
            event(
                "onboarding.milestone_reached",
                MONDAY + timedelta(days=2),
                milestone=milestone,
                seconds_since_start=seconds,
                **growth,
            )
            for milestone, seconds in (
                ("account_configured", 3600),
                ("account_configured", 7200),
                ("account_configured", 86400),
                ("first_value", 3 * 86400),
            )
        ),
        event("onboarding.activated", MONDAY + timedelta(days=3), **growth),
    )

    table = await report(db, "onboarding")
    by_owner = await report(db, "onboarding", by="owner")

    totals = table.totals
    assert (totals["started"], totals["activated"]) == (3, 1)
    assert near(totals["time_to_account_configured_median"], 7200)
    assert near(totals["time_to_first_value_median"], 3 * 86400)
    assert {r["owner"]: r["started"] for r in by_owner.rows} == {"csm-ana": 2, "csm-bo": 1}
    labels = [c.label for c in table.columns]
    assert "Median time to account configured" in labels
    assert "Median time to first value" in labels


async def test_renewals_report_counts_terms_due_on_their_renewal_date_and_upsells(
    db: Database,  # noqa: F811
) -> None:
    term: dict[str, Any] = {"term": 1, "plan": "growth", "owner_id": "am-kim"}
    due_first_week = (MONDAY + timedelta(days=3)).isoformat()
    due_second_week = (MONDAY + timedelta(days=9)).isoformat()
    await emit_all(
        db,
        # Started long before: counted as due on the renewal date, not when it started.
        of_process(
            "renewal.term_started",
            "renewal-s1",
            MONDAY - timedelta(days=300),
            renewal_date=due_first_week,
            annual_value=1000,
            **term,
        ),
        of_process(
            "renewal.term_started",
            "renewal-s2",
            MONDAY - timedelta(days=300),
            renewal_date=due_first_week,
            annual_value=500,
            **term,
        ),
        # Moved into the second week: it leaves the first.
        of_process(
            "renewal.date_changed",
            "renewal-s2",
            MONDAY - timedelta(days=30),
            renewal_date=due_second_week,
            previous_date=due_first_week,
            annual_value=500,
            **term,
        ),
        of_process(
            "renewal.upsell_offered",
            "renewal-s1",
            MONDAY,
            renewal_date=due_first_week,
            offered_plan="enterprise",
            annual_value=1000,
            **term,
        ),
        of_process(
            "renewal.upsell_offered",
            "renewal-s2",
            MONDAY,
            renewal_date=due_second_week,
            offered_plan="enterprise",
            annual_value=500,
            **term,
        ),
        of_process(
            "renewal.upsell_accepted",
            "renewal-s1",
            MONDAY + timedelta(days=1),
            renewal_date=due_first_week,
            offered_plan="enterprise",
            annual_value=1000,
            **term,
        ),
    )

    table = await report(db, "renewals")

    first_week, second_week = table.rows
    assert (first_week["due"], first_week["value_due"]) == (1, 1000.0)
    assert (second_week["due"], second_week["value_due"]) == (1, 500.0)
    assert (first_week["upsells_offered"], first_week["upsells_accepted"]) == (2, 1)
    assert table.totals["upsell_acceptance"] == 50.0
    assert (table.totals["due"], table.totals["value_due"]) == (2, 1500.0)


async def test_value_due_in_the_next_90_days_counts_open_terms_of_the_tenant_only(
    db: Database,  # noqa: F811
) -> None:
    today = MONDAY.date()
    started = MONDAY - timedelta(days=200)

    def term_started(process_id: str, days_ahead: int, value: float, **more: Any) -> Emitted:
        renewal_date = (MONDAY + timedelta(days=days_ahead)).isoformat()
        return of_process(
            "renewal.term_started",
            process_id,
            started,
            term=1,
            renewal_date=renewal_date,
            annual_value=value,
            plan="growth",
            **more,
        )

    await emit_all(
        db,
        term_started("renewal-open", 10, 1000),
        term_started("renewal-last-day", 89, 250.5),
        term_started("renewal-too-late", 90, 9000),
        term_started("renewal-past", -1, 9000),
        term_started("renewal-renewed", 20, 9000),
        term_started("renewal-moved-out", 30, 9000),
        term_started("renewal-acme", 10, 9000, tenant="acme"),
        of_process(
            "renewal.renewed", "renewal-renewed", MONDAY - timedelta(days=1), term=1, plan="growth"
        ),
        of_process(
            "renewal.date_changed",
            "renewal-moved-out",
            MONDAY - timedelta(days=1),
            term=1,
            renewal_date=(MONDAY + timedelta(days=120)).isoformat(),
        ),
        # An outcome of a term opened before the report-milestones patch: stored as ended.
        of_process("renewal.lapsed", "renewal-old-run", MONDAY, term=3, plan="growth"),
    )
    start = MONDAY.replace(hour=0)
    query = ReportQuery(start, start + timedelta(days=7), as_of=today)

    outlook = {f.key: f for f in (await REPORTS["renewals"].run(db, None, query)).outlook}
    acme = {f.key: f.value for f in (await REPORTS["renewals"].run(db, "acme", query)).outlook}

    assert outlook["due_next_90_days"].value == 2
    assert outlook["value_due_next_90_days"].value == 1250.5
    assert outlook["value_due_next_90_days"].as_of == today
    assert acme == {"due_next_90_days": 1, "value_due_next_90_days": 9000.0}
    terms = await db.all(select(RenewalTerm).where(RenewalTerm.process_id == "renewal-old-run"))
    assert [(t.term, t.outcome) for t in terms] == [(3, "lapsed")]


async def test_leads_report_shows_the_median_time_to_first_contact(
    db: Database,  # noqa: F811
) -> None:
    await emit_all(
        db,
        *(
            event("lead.first_contacted", MONDAY, channel="email", seconds_since_arrival=seconds)
            for seconds in (60, 600, 3600)
        ),
        event("lead.routed", MONDAY, owner_id="rep-1"),
    )

    totals = (await report(db, "leads")).totals

    assert totals["first_contacted"] == 3
    assert near(totals["time_to_first_contact_median"], 600)
    assert totals["routed"] == 1


async def test_writers_moving_renewal_dates_in_opposite_directions_do_not_deadlock(
    db: Database,  # noqa: F811
) -> None:
    """One writer moves a renewal from March to April while another moves one back; each
    takes its first roll-up row and waits (up to a second) for the other to take its own
    before going on. Were each to take its rows in its own order, PostgreSQL would find
    them waiting on each other and abort one."""
    march, april = date(2026, 3, 2), date(2026, 4, 6)

    def moved(away: date, to: date) -> list[Contribution]:
        return [
            Contribution("renewals", "acme", away, {"owner_id": "am-kim"}, counts={"due": -1}),
            Contribution("renewals", "acme", to, {"owner_id": "am-kim"}, counts={"due": 1}),
        ]

    both_locked = threading.Barrier(2, timeout=1)
    taken = threading.local()

    def after_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FOR UPDATE" in statement and not getattr(taken, "first", False):
            taken.first = True
            with contextlib.suppress(threading.BrokenBarrierError):  # the other one waits
                both_locked.wait()

    sqlalchemy_events.listen(db.engine, "after_cursor_execute", after_execute)
    try:
        await asyncio.gather(
            db.run(lambda session: add_to_rollups(session, *moved(march, april))),
            db.run(lambda session: add_to_rollups(session, *moved(april, march))),
        )
    finally:
        sqlalchemy_events.remove(db.engine, "after_cursor_execute", after_execute)
    rows = await db.all(select(ReportRollup).where(ReportRollup.tenant == "acme"))
    assert len(rows) == 2 * 2 * 3  # two days; the whole report and the owner; three grains
    assert {row.counts["due"] for row in rows} == {0}
