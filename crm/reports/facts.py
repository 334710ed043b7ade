"""Process outcomes as facts for the reports, and what each adds to them.

Every event a process emits (its outcomes, ``<process>.<outcome>``, and its
milestones, ``lead.routed``, ``renewal.reminded``, ``automation.enrolled``,
...; not task events) becomes one ``ProcessOutcome`` row in the transaction
that stores the webhook event, and adds to the daily roll-ups of the report
it concerns (``REPORT_OF``); a renewal's facts also keep its term
(``crm.reports.terms``), due on its renewal date. A ticket's SLA outcome
(``sla_outcomes``) adds to the ``sla`` report the same way. A repeated event
adds nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlmodel import Session

from crm.domain.webhook_events import PERSONAL_FIELDS
from crm.reports.rollups import Contribution, add_to_rollups
from crm.reports.terms import follow_term
from crm.store.db import insert_once
from crm.store.models import NO_TENANT, ProcessOutcome, SlaOutcome, as_utc

if TYPE_CHECKING:
    from crm.store.webhooks import Emitted

#: The process -> the report its facts add to.
REPORT_OF = {
    "onboarding": "onboarding",
    "renewal": "renewals",
    "lead": "leads",
    "automation": "automations",
}

#: The data fields kept in typed columns, not in ``detail``.
_TYPED = {
    "process_id",
    "customer_id",
    "plan",
    "owner_id",
    "csm_id",
    "assignee_id",
    "priority",
    "tier",
    "score",
    "grade",
    "annual_value",
    "automation_id",
    "version",
    "record_id",
}


def record_fact(session: Session, event: Emitted) -> ProcessOutcome | None:
    """Store ``event`` as a fact and add it to its report's roll-ups, once per event id;
    the stored fact (None for an event that is no process's: a task's)."""
    if event.type.partition(".")[0] == "task":
        return None
    fact = fact_of(event)
    stored, created = insert_once(session, fact)
    if created:
        own = contribution_of(stored)
        add_to_rollups(session, *([] if own is None else [own]), *follow_term(session, stored))
    return stored


def fact_of(event: Emitted) -> ProcessOutcome:
    """The fact row of an event: its dimensions in columns, the rest of its data (but the
    personal fields) in ``detail``."""
    data = event.data
    tenant = event.tenant if event.tenant is not None else NO_TENANT
    process, _, outcome = event.type.partition(".")
    version = data.get("version")
    return ProcessOutcome(
        key=f"{tenant}/{event.event_id}",
        tenant=tenant,
        process=process,
        process_id=event.process_id,
        record_id=event.record_id or _text(data.get("record_id")) or event.process_id,
        customer_id=_text(data.get("customer_id")),
        outcome=outcome,
        occurred_at=as_utc(event.occurred_at),
        started_at=as_utc(event.started_at) if event.started_at else None,
        plan=_text(data.get("plan")),
        owner_id=_text(data.get("owner_id") or data.get("csm_id") or data.get("assignee_id")),
        priority=_text(data.get("priority")),
        tier=_text(data.get("tier")),
        score=data.get("score") if isinstance(data.get("score"), int) else None,
        grade=_text(data.get("grade")),
        annual_value=_number(data.get("annual_value")),
        automation_id=_text(data.get("automation_id")) if process == "automation" else None,
        automation_version=version if isinstance(version, int) else None,
        detail={
            name: value
            for name, value in data.items()
            if name not in _TYPED and name not in PERSONAL_FIELDS
        },
    )


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def contribution_of(fact: ProcessOutcome) -> Contribution | None:
    """What ``fact`` adds to its report; None when it adds to none."""
    build = _CONTRIBUTIONS.get(fact.process)
    if build is None:
        return None
    counts, durations, groups = build(fact)
    if not counts:
        return None
    return Contribution(
        report=REPORT_OF[fact.process],
        tenant=fact.tenant,
        day=as_utc(fact.occurred_at).date(),
        groups=groups,
        counts=counts,
        durations=durations,
    )


Built = tuple[dict[str, float], dict[str, float], Mapping[str, str]]


def _onboarding(fact: ProcessOutcome) -> Built:
    groups = {"plan": fact.plan or "", "owner": fact.owner_id or ""}
    if fact.outcome == "started":
        return {"started": 1}, {}, groups
    if fact.outcome == "milestone_reached":
        milestone, seconds = (
            fact.detail.get("milestone"),
            _number(fact.detail.get("seconds_since_start")),
        )
        if not milestone or seconds is None:
            return {}, {}, groups
        return {f"reached_{milestone}": 1}, {f"time_to_{milestone}": seconds}, groups
    if fact.outcome not in ("activated", "stalled", "cancelled"):
        return {}, {}, groups
    counts: dict[str, float] = {fact.outcome: 1}
    durations = {}
    if fact.outcome == "activated":
        counts["nudges_before_activation"] = _number(fact.detail.get("nudges_sent")) or 0
        if fact.started_at is not None:
            taken = as_utc(fact.occurred_at) - as_utc(fact.started_at)
            durations["time_to_activation"] = taken.total_seconds()
    return counts, durations, groups


def _renewal(fact: ProcessOutcome) -> Built:
    groups = {"plan": fact.plan or "", "owner": fact.owner_id or ""}
    value = fact.annual_value or 0.0
    by_outcome: dict[str, dict[str, float]] = {
        "reminded": {"reminders": 1},
        "renewed": {"renewed": 1, "value_renewed": value},
        "auto_renewed": {"auto_renewed": 1, "value_renewed": value},
        "lapsed": {"lapsed": 1, "value_lapsed": value},
        "cancelled": {"cancelled": 1},
        "upsell_offered": {"upsells_offered": 1},
        "upsell_accepted": {"upsells_accepted": 1},
    }
    return by_outcome.get(fact.outcome, {}), {}, groups


_LEAD_OUTCOMES = ("routed", "qualified", "nurture", "unresponsive", "unsubscribed", "bounced")


def _lead(fact: ProcessOutcome) -> Built:
    groups = {"owner": fact.owner_id or "", "grade": fact.grade or ""}
    if fact.outcome in (*_LEAD_OUTCOMES, "cancelled"):
        return {fact.outcome: 1}, {}, groups
    seconds = _number(fact.detail.get("seconds_since_arrival"))
    if fact.outcome == "first_contacted" and seconds is not None:
        return {"first_contacted": 1}, {"time_to_first_contact": seconds}, groups
    return {}, {}, groups


#: How an automation's run ends, as its events name it.
AUTOMATION_ENDS = ("goal_met", "completed", "step_failed", "cancelled")


def _automation(fact: ProcessOutcome) -> Built:
    automation = fact.automation_id or ""
    version = f"{automation} v{fact.automation_version}" if fact.automation_version else ""
    groups = {"automation": automation, "version": version}
    if fact.outcome == "enrolled":
        return {"enrolled": 1}, {}, groups
    if fact.outcome in AUTOMATION_ENDS:
        counts: dict[str, float] = {fact.outcome: 1}
        if fact.detail.get("has_goal") is False:  # runs that emitted no has_goal had one
            counts["ended_without_goal"] = 1
        return counts, {}, groups
    return {}, {}, groups


_CONTRIBUTIONS: dict[str, Callable[[ProcessOutcome], Built]] = {
    "onboarding": _onboarding,
    "renewal": _renewal,
    "lead": _lead,
    "automation": _automation,
}


def store_sla_outcome(session: Session, outcome: SlaOutcome) -> bool:
    """Store a ticket's SLA outcome once per key and add it to the ``sla`` report; False
    when it was stored before (and added then)."""
    stored, created = insert_once(session, outcome)
    if created:
        add_to_rollups(session, sla_contribution(stored))
    return created


#: The clocks of SLA policies besides first response and resolution, read from ``clocks``.
_CYCLE_CLOCKS = ("next_reply", "periodic_update")


def sla_contribution(outcome: SlaOutcome) -> Contribution:
    """What a ticket's SLA outcome adds to the ``sla`` report: the ticket, each clock met or
    breached, the business time it used and how often it breached (a next reply may breach
    more than once), its escalations by level."""
    counts: dict[str, float] = {"tickets": 1}
    durations: dict[str, float] = {}
    clocks = [
        ("first_response", outcome.first_response, outcome.first_response_used_seconds),
        ("resolution", outcome.resolution, outcome.resolution_used_seconds),
    ]
    for name in _CYCLE_CLOCKS:
        clock = outcome.clocks.get(name)
        if isinstance(clock, dict):
            clocks.append((name, str(clock.get("status")), _number(clock.get("used_seconds")) or 0))
    for clock, status, used in clocks:
        if status in ("met", "breached"):
            counts[f"{clock}_{status}"] = 1
            durations[f"{clock}_seconds"] = used
            recorded = outcome.clocks.get(clock, {}).get("breaches")
            breaches = _number(recorded) if recorded is not None else None
            counts[f"{clock}_breaches"] = (
                breaches if breaches is not None else (1 if status == "breached" else 0)
            )
    for escalation in outcome.escalations:
        name = f"escalations_{escalation.get('level')}"
        counts[name] = counts.get(name, 0) + 1
    ended: datetime = as_utc(outcome.ended_at)
    return Contribution(
        report="sla",
        tenant=outcome.tenant if outcome.tenant is not None else NO_TENANT,
        day=ended.date(),
        groups={
            "priority": outcome.priority,
            "tier": outcome.tier or "",
            "assignee": outcome.assignee_id or "",
        },
        counts=counts,
        durations=durations,
    )
