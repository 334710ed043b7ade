"""Factories for renewal and approval inputs, and readers for what their users see.

Inputs are built from the default policy by the same function the API uses,
so the tests run the schedule, upsell rules and approver chains a deployment
gets. Users check a renewal by the email in the customer's and the
approvers' inboxes (the SMTP sink), the tasks and audit trail in the CRM
database, and the ``state`` query.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import col, select
from temporalio import activity
from temporalio.client import Client, WorkflowContinuedAsNewError, WorkflowHandle
from temporalio.worker import Worker

from activities.records import RecordActivities
from crm.platform.settings import Settings
from crm.policy import Policy
from crm.store.db import Database
from crm.store.models import AuditEntry, Task, UsageReport
from devstack.mailsink import StoredMessage, read_messages
from processes.renewals import build_renewal_input
from worker.main import WORKFLOWS, build_activities
from worker.runners import SANDBOXED_RUNNER
from workflows.approval_types import ApprovalInput, Approver
from workflows.contracts import RECORD_STEP, AuditRecord
from workflows.renewal_types import RenewalInput


def new_id(prefix: str) -> str:
    """An id no other test uses, so workflow ids and inboxes never collide."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def renewal_input(
    renewal_date: datetime,
    *,
    policy: Policy | None = None,
    plan: str = "growth",
    auto_renew: bool = False,
    owner: str = "csm-ana",
    **overrides: Any,
) -> RenewalInput:
    """A subscription of a new customer renewing on ``renewal_date``, from the policy."""
    subscription_id = new_id("sub")
    term = build_renewal_input(
        policy or Policy(),
        subscription_id=subscription_id,
        customer_id=new_id("c"),
        company_name="Acme Corp",
        contact_name="Ann Lee",
        contact_email=f"ann.{subscription_id}@acme-corp.io",
        renewal_date=renewal_date,
        plan=plan,
        annual_value=24_000.0,
        owner_id=owner,
        auto_renew=auto_renew,
    )
    return replace(term, **overrides)


def approval_input(*chain: Approver, **overrides: Any) -> ApprovalInput:
    """A discount approval asked of ``chain``; the subject id is unique to it."""
    request = ApprovalInput(
        subject_id=new_id("discount"),
        subject="15% discount for Acme Corp upgrading growth -> enterprise",
        requester_id="csm-ana",
        chain=list(chain),
        customer_id=new_id("c"),
        details={"discount_percent": 15},
    )
    return replace(request, **overrides)


def approver(staff_id: str, *, hours: int = 72, delegate_id: str | None = None) -> Approver:
    """An approver of the default policy's staff with a timeout of ``hours``."""
    member = Policy().member(staff_id)
    return Approver(
        approver_id=member.id,
        name=member.name,
        email=member.email,
        timeout_seconds=hours * 3600,
        delegate_id=delegate_id,
    )


async def report_usage(
    database: Database, subscription_id: str, used: float, included: float, at: datetime
) -> None:
    """Store a usage report as the product would through the API."""
    report = UsageReport(
        subscription_id=subscription_id,
        metric="seats",
        used=used,
        included=included,
        reported_at=at,
    )
    await database.run(lambda session: session.add(report))


def emails_of(mail_sink_dir: Path, process_id: str) -> list[StoredMessage]:
    """The messages a process sent, oldest first (staff inboxes are shared by tests)."""
    return [
        message
        for message in read_messages(mail_sink_dir)
        if message.header("X-Crmflow-Process") == process_id
    ]


def steps_of(messages: list[StoredMessage]) -> list[str]:
    """The step names of the messages, e.g. ``term1_email_reminder_90d``."""
    return [message.header("X-Crmflow-Step") or "" for message in messages]


async def tasks_of(database: Database, process_id: str) -> list[Task]:
    query = select(Task).where(Task.process_id == process_id).order_by(col(Task.id))
    return await database.all(query)


async def audit_steps(database: Database, process_id: str) -> list[str]:
    query = (
        select(AuditEntry.step)
        .where(AuditEntry.process_id == process_id)
        .order_by(col(AuditEntry.id))
    )
    return await database.all(query)


def days(n: float) -> timedelta:
    return timedelta(days=n)


def years_after(date: datetime, years: int) -> datetime:
    """The same calendar day ``years`` later (a renewal's next date)."""
    return date.replace(year=date.year + years)


@contextlib.asynccontextmanager
async def outcome_held(
    client: Client, settings: Settings, policy: Policy, database: Database
) -> AsyncIterator[tuple[asyncio.Event, asyncio.Event]]:
    """A worker whose audit write of a term's outcome waits for the test.

    Yields (recording, may_record): ``recording`` is set once the term has its
    outcome and writes it; the write goes on when the test sets ``may_record``.
    Events sent in between arrive after the outcome, before the next term.
    """
    records = RecordActivities(database)
    recording, may_record = asyncio.Event(), asyncio.Event()

    @activity.defn(name=RECORD_STEP)
    async def record_step(record: AuditRecord) -> bool:
        if record.step == "outcome" and not may_record.is_set():
            recording.set()
            await may_record.wait()
        return await records.record_step(record)

    built = build_activities(settings, policy, database)
    functions = [f for f in built.functions if getattr(f, "__name__", "") != "record_step"]
    try:
        async with Worker(
            client,
            task_queue=settings.task_queue,
            workflows=list(WORKFLOWS),
            activities=[*functions, record_step],
            workflow_runner=SANDBOXED_RUNNER,
        ):
            yield recording, may_record
    finally:
        await built.aclose()


async def next_run_id(handle: WorkflowHandle[Any, Any]) -> str:
    """Wait until the run continues as new; the new run's id.

    Only handles from ``start_workflow`` skip time while waiting for a result.
    Raises RuntimeError when the run ends without continuing as new.
    """
    try:
        await handle.result(follow_runs=False)
    except WorkflowContinuedAsNewError as continued:
        return continued.new_execution_run_id
    raise RuntimeError(f"{handle.id} ended without continuing as new")
