"""Factories for ticket SLA inputs, and readers for what a support team sees of a run.

A team sees a ticket's SLA through the email its staff receive (the SMTP
sink), the tasks and the outcome in the CRM database, the run's ``state``
query and its search attributes; the helpers here read exactly those.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import col, select
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from crm.policy import Policy
from crm.store.db import Database
from crm.store.models import Notification, SlaOutcome, Task
from devstack.mailsink import StoredMessage, read_messages
from workflows.common import ProcessEvent, ProcessState
from workflows.sla import TicketSlaWorkflow
from workflows.sla_types import TicketInput, TicketSlaResult, sla_id

TicketHandle = WorkflowHandle[TicketSlaWorkflow, TicketSlaResult]

STOCKHOLM = "Europe/Stockholm"
NEW_YORK = "America/New_York"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def new_ticket_id() -> str:
    """A ticket id no other test uses, so workflow ids never collide."""
    return f"t-{uuid.uuid4().hex[:12]}"


def ticket_input(
    *,
    priority: str = "normal",
    created_at: datetime | None = None,
    timezone: str = STOCKHOLM,
    policy: Policy | None = None,
    tier: str | None = None,
    with_policies: bool = False,
    **overrides: Any,
) -> TicketInput:
    """A ticket of customer ``c-1`` with the SLA terms of ``policy`` (default policy), and
    its SLA policies ``with_policies`` (as the API starts tickets now)."""
    sla = (policy or Policy()).sla
    terms = sla.rules_for(tier).terms(timezone)
    if with_policies:
        overrides.setdefault("policies", sla.book(terms))
    fields: dict[str, Any] = {
        "ticket_id": new_ticket_id(),
        "customer_id": "c-1",
        "subject": "Invoice shows the wrong VAT number",
        "priority": priority,
        "terms": terms,
        "created_at": created_at,
        "tier": tier,
        **overrides,
    }
    return TicketInput(**fields)


async def start_ticket(client: Client, task_queue: str, ticket: TicketInput) -> TicketHandle:
    """Start the ticket's SLA process under its business key."""
    return await client.start_workflow(
        TicketSlaWorkflow.run, ticket, id=sla_id(ticket.ticket_id), task_queue=task_queue
    )


async def send_event(
    handle: TicketHandle, event_type: str, *, occurred_at: datetime | None = None, **data: Any
) -> None:
    """Send a ticket event (``agent_replied``, ``status_changed``...) to the run, as having
    happened at ``occurred_at`` (None: when the run gets to it)."""
    event = ProcessEvent(type=event_type, data=data, occurred_at=occurred_at)
    await handle.signal(TicketSlaWorkflow.event, event)


async def state_of(handle: TicketHandle) -> ProcessState:
    return await handle.query(TicketSlaWorkflow.state)


def local(instant: datetime, timezone: str) -> datetime:
    """``instant`` as a wall-clock time in ``timezone``."""
    return instant.astimezone(ZoneInfo(timezone))


def next_local(after: datetime, weekday: str, at: time, timezone: str) -> datetime:
    """The first ``weekday`` ``at`` o'clock in ``timezone`` at least an hour after ``after``."""
    zone = ZoneInfo(timezone)
    earliest = (after + timedelta(hours=1)).astimezone(zone)
    day = earliest.date()
    while True:
        candidate = datetime.combine(day, at, tzinfo=zone)
        if WEEKDAYS[day.weekday()] == weekday and candidate >= earliest:
            return candidate.astimezone(UTC)
        day += timedelta(days=1)


def on_day(start: datetime, days: int, at: time, timezone: str) -> datetime:
    """``at`` o'clock in ``timezone`` on the day ``days`` after ``start``'s local date."""
    zone = ZoneInfo(timezone)
    day = start.astimezone(zone).date() + timedelta(days=days)
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


async def sleep_until(env: WorkflowEnvironment, instant: datetime) -> None:
    """Let the test server's clock (and every timer before it) run up to ``instant``."""
    now = await env.get_current_time()
    if instant > now:
        await env.sleep(instant - now)


def mail_of(maildir: Path, process_id: str) -> list[StoredMessage]:
    """Every message the run sent, oldest first."""
    return [
        message
        for message in read_messages(maildir)
        if message.header("X-Crmflow-Process") == process_id
    ]


async def tasks_of(database: Database, process_id: str) -> list[Task]:
    query = select(Task).where(Task.process_id == process_id).order_by(col(Task.id))
    return await database.all(query)


async def notifications_of(database: Database, process_id: str) -> list[Notification]:
    query = (
        select(Notification)
        .where(Notification.process_id == process_id)
        .order_by(col(Notification.id))
    )
    return await database.all(query)


async def outcome_of(database: Database, process_id: str) -> SlaOutcome | None:
    query = select(SlaOutcome).where(SlaOutcome.process_id == process_id)
    return await database.run(lambda session: session.exec(query).first())


def escalation_times(state_or_result: Any) -> dict[str, datetime]:
    """``{"first_response_breach": when, ...}`` from a state's details or a result."""
    escalations = (
        state_or_result.details["escalations"]
        if isinstance(state_or_result, ProcessState)
        else state_or_result.escalations
    )
    return {f"{e['clock']}_{e['level']}": datetime.fromisoformat(e["at"]) for e in escalations}


def assert_close(actual: datetime, expected: datetime, *, within: float = 5.0) -> None:
    """``actual`` is ``expected`` give or take ``within`` seconds of real test time."""
    assert abs((actual - expected).total_seconds()) <= within, f"{actual} != {expected}"
