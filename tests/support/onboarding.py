"""Factories for onboarding inputs, and readers for what a user of a run sees.

A user checks an onboarding by the email in the customer's inbox (the SMTP
sink), the tasks and records in the CRM database, and the run's ``state``
query; the helpers here read exactly those.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlmodel import col, select
from temporalio.client import Client, WorkflowHandle

from crm.domain.schedules import OnboardingSchedule
from crm.store.db import Database
from crm.store.models import Assignment, AuditEntry, Customer, OutboundEmail, Task
from devstack.mailsink import StoredMessage, read_messages
from workflows.common import ProcessEvent, ProcessState
from workflows.onboarding import OnboardingWorkflow
from workflows.onboarding_types import OnboardingInput, OnboardingResult, onboarding_id

OnboardingHandle = WorkflowHandle[OnboardingWorkflow, OnboardingResult]


def new_customer_id() -> str:
    """A customer id no other test uses, so workflow ids never collide."""
    return f"c-{uuid.uuid4().hex[:12]}"


def onboarding_input(
    *,
    customer_id: str | None = None,
    domain: str = "acme-corp.io",
    contact_email: str | None = None,
    schedule: OnboardingSchedule | None = None,
    **overrides: Any,
) -> OnboardingInput:
    """A valid sign-up on the starter plan; the contact's address is unique to it."""
    customer_id = customer_id or new_customer_id()
    customer = OnboardingInput(
        customer_id=customer_id,
        company_name="Acme Corp",
        contact_name="Ann Lee",
        contact_email=contact_email or f"ann.{customer_id}@{domain}",
        plan="starter",
        csm_pool="csm-smb",
        schedule=schedule or OnboardingSchedule(),
    )
    return replace(customer, **overrides)


async def start_onboarding(
    client: Client, task_queue: str, customer: OnboardingInput
) -> OnboardingHandle:
    """Start the customer's onboarding under its business key."""
    return await client.start_workflow(
        OnboardingWorkflow.run,
        customer,
        id=onboarding_id(customer.customer_id),
        task_queue=task_queue,
    )


async def send_event(handle: OnboardingHandle, event_type: str) -> None:
    """Send a business event (a milestone) to the run."""
    await handle.signal(OnboardingWorkflow.event, ProcessEvent(type=event_type))


async def wait_for_stage(
    handle: OnboardingHandle, stage: str, *, within: float = 10.0
) -> ProcessState:
    """Poll the ``state`` query until the run reaches ``stage``; fail after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        state = await handle.query(OnboardingWorkflow.state)
        if state.stage == stage:
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"run stayed in stage {state.stage!r}, expected {stage!r}")
        await asyncio.sleep(0.05)


def inbox(maildir: Path, customer: OnboardingInput) -> list[StoredMessage]:
    """Every message the SMTP sink received for the customer's contact, oldest first."""
    return read_messages(maildir, to=customer.contact_email)


def step_of(message: StoredMessage) -> str | None:
    """The process step that sent ``message`` (``email_welcome``, ``email_nudge_day_3``...)."""
    return message.header("X-Crmflow-Step")


async def tasks_of(database: Database, customer_id: str) -> list[Task]:
    """The customer's tasks, in creation order."""
    query = select(Task).where(Task.customer_id == customer_id).order_by(col(Task.id))
    return await database.all(query)


async def customer_row(database: Database, customer_id: str) -> Customer | None:
    return await database.run(lambda session: session.get(Customer, customer_id))


async def assignments_of(database: Database, process_id: str) -> list[Assignment]:
    query = select(Assignment).where(Assignment.process_id == process_id)
    return await database.all(query)


async def audit_trail(database: Database, process_id: str) -> list[AuditEntry]:
    """The run's audit entries in the order they were recorded."""
    query = (
        select(AuditEntry).where(AuditEntry.process_id == process_id).order_by(col(AuditEntry.id))
    )
    return await database.all(query)


async def outbox_of(database: Database, process_id: str) -> list[OutboundEmail]:
    query = (
        select(OutboundEmail)
        .where(OutboundEmail.process_id == process_id)
        .order_by(col(OutboundEmail.id))
    )
    return await database.all(query)
