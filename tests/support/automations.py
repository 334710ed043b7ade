"""Automation runs for tests: the shipped examples, record events, and starting a run."""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from sqlmodel import col, select
from temporalio.client import Client, WorkflowHandle

from crm.automations.validation import parse_definition
from crm.domain.automation import AutomationDefinition
from crm.policy import Policy
from crm.store.db import Database
from crm.store.models import AuditEntry, Task
from devstack.mailsink import StoredMessage, read_messages
from workflows.automation import AutomationWorkflow
from workflows.automation_types import (
    AutomationInput,
    AutomationResult,
    RecordEvent,
    automation_run_id,
)

EXAMPLES = Path(__file__).parents[2] / "examples" / "automations"

AutomationHandle = WorkflowHandle[AutomationWorkflow, AutomationResult]


def example(name: str, policy: Policy | None = None) -> AutomationDefinition:
    """The shipped example ``examples/automations/<name>.yaml``, validated."""
    document = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    return parse_definition(document, policy or Policy())


def record_event(
    definition: AutomationDefinition,
    record_id: str,
    event_type: str,
    record: dict[str, Any],
    previous: dict[str, Any] | None = None,
    *,
    at: datetime,
    event_id: str | None = None,
) -> RecordEvent:
    return RecordEvent(
        event_id=event_id or f"evt-{uuid.uuid4().hex[:12]}",
        object=definition.object,
        record_id=record_id,
        type=event_type,
        occurred_at=at,
        record=record,
        previous=previous or {},
    )


async def start_run(
    client: Client,
    task_queue: str,
    definition: AutomationDefinition,
    event: RecordEvent,
    policy: Policy | None = None,
) -> AutomationHandle:
    """Start the run ``event`` enrols, with the input and id ``crm.automations.enrolment.enroll``
    gives it (the API's path is tested in tests/api; this handle is the time-skipping
    environment's own, whose ``result()`` lets time pass)."""
    calendar = (policy or Policy()).calendars[definition.calendar].spec()
    return await client.start_workflow(
        AutomationWorkflow.run,
        AutomationInput(
            automation_id=definition.id,
            version=1,
            definition=definition,
            calendar=calendar,
            record_id=event.record_id,
            record=event.record,
            event=event,
            enrolled_at=event.occurred_at,
        ),
        id=automation_run_id(definition.id, definition.object, event.record_id),
        task_queue=task_queue,
    )


def new_record_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def mail_about(maildir: Path, to: str, text: str) -> list[StoredMessage]:
    """The messages to ``to`` whose subject contains ``text`` (the sink is shared)."""
    return [m for m in read_messages(maildir, to=to) if text in m.subject]


async def tasks_for_record(database: Database, record_id: str) -> list[Task]:
    query = select(Task).where(Task.customer_id == record_id).order_by(col(Task.id))
    return await database.all(query)


async def audit_steps(database: Database, process_id: str) -> list[str]:
    query = (
        select(AuditEntry).where(AuditEntry.process_id == process_id).order_by(col(AuditEntry.id))
    )
    return [entry.step for entry in await database.all(query)]
