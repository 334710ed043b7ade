"""Factories for lead inputs, and readers for what a user of a lead's run sees.

A salesperson checks a lead by the emails in the lead's and the rep's inbox
(the SMTP sink), the lead record, tasks and marketing list in the CRM
database, and the run's ``state`` query; the helpers here read exactly those.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path

from sqlmodel import col, select
from temporalio.client import Client, WorkflowHandle

from crm.domain.lead_scoring import ScoringModel, ScoringRule
from crm.policy import Policy
from crm.store.db import Database
from crm.store.models import Lead, MarketingListEntry, Task
from devstack.mailsink import StoredMessage, read_messages
from workflows.common import ProcessEvent
from workflows.lead import LeadWorkflow
from workflows.lead_types import LeadInput, LeadResult, lead_process_id

LeadHandle = WorkflowHandle[LeadWorkflow, LeadResult]

#: Scoring by source alone, so each test picks its branch by the form's source:
#: demo_request is high (70), webinar medium (40), anything else low (0);
#: a reply adds 30, which takes a webinar lead to high.
SCORING_BY_SOURCE = ScoringModel(
    rules=[
        ScoringRule("demo_request", "source", 70, any_of=["demo_request"]),
        ScoringRule("webinar", "source", 40, any_of=["webinar"]),
        ScoringRule("replied", "event", 30, any_of=["replied"]),
        ScoringRule("meeting_booked", "event", 50, any_of=["meeting_booked"]),
    ],
    high=60,
    medium=30,
)


def zone_at_local_hour(now: datetime, hour: int) -> str:
    """A fixed-offset IANA zone (``Etc/GMT...``) in which ``now`` falls in ``hour`` local time."""
    offset = (hour - now.hour) % 24
    if offset > 14:
        offset -= 24
    # POSIX-style names: Etc/GMT-3 is three hours *ahead* of UTC.
    return "Etc/UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"


def lead_input(
    policy: Policy,
    *,
    timezone: str = "UTC",
    source: str = "webinar",
    country: str | None = "DE",
    scoring: ScoringModel | None = SCORING_BY_SOURCE,
    email: str | None = None,
    lead_id: str | None = None,
) -> LeadInput:
    """A lead from a webinar in Germany, with an address unique to it."""
    lead_id = lead_id or f"l-{uuid.uuid4().hex[:12]}"
    terms = policy.leads.terms(timezone)
    if scoring is not None:
        terms.scoring = scoring
    return LeadInput(
        lead_id=lead_id,
        email=email or f"lena.{lead_id}@acme-corp.io",
        name="Lena Vogel",
        source=source,
        company="Acme Corp",
        title="Head of Operations",
        country=country,
        terms=terms,
    )


async def start_lead(client: Client, task_queue: str, lead: LeadInput) -> LeadHandle:
    """Start the lead's qualification under its business key."""
    return await client.start_workflow(
        LeadWorkflow.run, lead, id=lead_process_id(lead.lead_id), task_queue=task_queue
    )


async def send_event(handle: LeadHandle, event_type: str) -> None:
    """Send what the lead did (``replied``, ``unsubscribed``...) to the run."""
    await handle.signal(LeadWorkflow.event, ProcessEvent(type=event_type))


def inbox(maildir: Path, address: str, process_id: str | None = None) -> list[StoredMessage]:
    """Messages to ``address`` (sent by ``process_id`` when given), oldest first."""
    messages = read_messages(maildir, to=address)
    if process_id is None:
        return messages
    return [m for m in messages if m.header("X-Crmflow-Process") == process_id]


def step_of(message: StoredMessage) -> str | None:
    """The process step that sent ``message`` (``email_first_touch``...)."""
    return message.header("X-Crmflow-Step")


async def lead_row(database: Database, lead_id: str) -> Lead | None:
    return await database.run(lambda session: session.get(Lead, lead_id))


async def tasks_of(database: Database, lead_id: str) -> list[Task]:
    query = select(Task).where(Task.customer_id == lead_id).order_by(col(Task.id))
    return await database.all(query)


async def marketing_list(database: Database, list_name: str) -> list[MarketingListEntry]:
    query = (
        select(MarketingListEntry)
        .where(MarketingListEntry.list_name == list_name)
        .order_by(col(MarketingListEntry.id))
    )
    return await database.all(query)
