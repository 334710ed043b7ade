"""Retried side effects happen once: one email in the inbox, one task in the CRM.

Temporal runs an activity at least once; an attempt whose result is lost
(timeout, crash, network) runs again. These tests retry the email and task
activities both directly and through a real onboarding run, and check what
the customer and the CSM would see.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, TypeVar

import pytest
from sqlmodel import col, func, select
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities.email import EmailActivities, message_id_for
from activities.mailer import SmtpMailer
from activities.sla import SlaActivities
from activities.tasks import TaskActivities
from crm.platform.settings import Settings
from crm.policy import Policy
from crm.store.db import Database
from crm.store.models import Notification, OutboundEmail, Task, WebhookEvent
from devstack.mailsink import MailSink, read_messages
from tests.support.onboarding import (
    OnboardingHandle,
    audit_trail,
    inbox,
    new_customer_id,
    onboarding_input,
    outbox_of,
    send_event,
    start_onboarding,
    step_of,
    tasks_of,
)
from tests.support.servers import free_port
from tests.support.stack import Stack
from worker.main import build_activities
from workflows.contracts import (
    CREATE_TASK,
    SEND_EMAIL,
    EmailReceipt,
    EmailRequest,
    LevelRecords,
    NotificationRequest,
    TaskRef,
    TaskRequest,
    step_key,
)
from workflows.onboarding import OnboardingWorkflow
from workflows.webhook_types import MilestoneEvent

ResultT = TypeVar("ResultT")


def email_request(**overrides: Any) -> EmailRequest:
    """The welcome email of a fresh process, to an address no other test uses."""
    process_id = f"onboarding-{new_customer_id()}"
    request = EmailRequest(
        key=step_key(process_id, "email_welcome"),
        process_id=process_id,
        to=f"ann.{process_id}@acme-corp.io",
        template="welcome",
        context={
            "company_name": "Acme Corp",
            "contact_name": "Ann Lee",
            "plan": "starter",
            "csm_name": "Ben Okafor",
            "csm_email": "ben.okafor@example.com",
            "milestones": ["account_configured", "first_value"],
        },
    )
    return dataclasses.replace(request, **overrides)


def task_request(**overrides: Any) -> TaskRequest:
    """The kickoff task of a fresh process."""
    process_id = f"onboarding-{new_customer_id()}"
    request = TaskRequest(
        key=step_key(process_id, "task_kickoff"),
        process_id=process_id,
        customer_id=process_id.removeprefix("onboarding-"),
        assignee_id="csm-ben",
        kind="kickoff",
        title="Kickoff call with Acme Corp",
        due_at=datetime(2030, 1, 3, 17, tzinfo=UTC),
        detail="Plan starter; contact Ann Lee.",
    )
    return dataclasses.replace(request, **overrides)


def email_activities(database: Database, settings: Settings, mailer: SmtpMailer) -> EmailActivities:
    return EmailActivities(database, mailer, sender=settings.mail_from)


@pytest.fixture
def mailer(mail_sink: MailSink) -> SmtpMailer:
    return SmtpMailer(mail_sink.host, mail_sink.port)


async def count_rows(database: Database, model: type[Task | OutboundEmail], key: str) -> int:
    query = select(func.count()).select_from(model).where(col(model.key) == key)
    return int(await database.run(lambda session: session.exec(query).one()))


# Retried directly: the second attempt finds the first one's effect.


async def test_send_email_twice_with_one_key_delivers_one_message(
    database: Database, settings: Settings, mailer: SmtpMailer, mail_sink: MailSink
) -> None:
    email = email_activities(database, settings, mailer)
    request = email_request()

    first = await ActivityEnvironment().run(email.send_email, request)
    retried = await ActivityEnvironment().run(email.send_email, request)

    [message] = read_messages(mail_sink.maildir, to=request.to)
    assert message.subject == "Welcome to crmflow, Acme Corp"
    assert message.message_id == first.message_id == retried.message_id
    assert message.message_id == message_id_for(request.key, settings.mail_from)
    assert (first.sent, retried.sent) == (True, False)
    assert retried.subject == first.subject
    [outbox] = await outbox_of(database, request.process_id)
    assert outbox.status == "sent"
    audit = await audit_trail(database, request.process_id)
    assert [e.step for e in audit] == ["email:welcome"]


async def test_create_task_twice_with_one_key_creates_one_task(database: Database) -> None:
    tasks = TaskActivities(database)
    request = task_request()

    first = await ActivityEnvironment().run(tasks.create_task, request)
    retried = await ActivityEnvironment().run(tasks.create_task, request)

    assert retried.task_id == first.task_id
    assert (first.created, retried.created) == (True, False)
    [task] = await tasks_of(database, request.customer_id)
    assert (task.id, task.key, task.assignee_id) == (first.task_id, request.key, "csm-ben")
    audit = await audit_trail(database, request.process_id)
    assert [(e.step, e.detail) for e in audit] == [
        ("task:kickoff", {"task_id": first.task_id, "assignee_id": "csm-ben"})
    ]


async def test_a_level_recorded_twice_stores_its_notice_task_and_milestone_once(
    database: Database, policy: Policy
) -> None:
    sla = SlaActivities(database, policy)
    task = task_request(kind="sla_breach")
    records = LevelRecords(
        notification=NotificationRequest(
            key=step_key(task.process_id, "notify_breach"),
            process_id=task.process_id,
            staff_id="csm-ben",
            kind="sla_breach",
            message="Ticket breached",
        ),
        task=task,
        milestone=MilestoneEvent(
            event_id=f"{step_key(task.process_id, 'emit_breach')}@run-1",
            type="ticket.escalated",
            process_id=task.process_id,
            occurred_at=datetime(2030, 1, 3, 16, tzinfo=UTC),
            data={"process_id": task.process_id, "clock": "resolution"},
        ),
    )

    first = await ActivityEnvironment().run(sla.record_level, records)
    retried = await ActivityEnvironment().run(sla.record_level, records)

    assert first.task is not None and retried.task is not None
    assert retried.task.task_id == first.task.task_id
    assert (first.task.created, retried.task.created) == (True, False)
    assert (first.endpoints, retried.endpoints) == (0, 0)
    [notice] = await database.all(
        select(Notification).where(Notification.process_id == task.process_id)
    )
    assert (notice.staff_id, notice.kind) == ("csm-ben", "sla_breach")
    events = await database.all(
        select(WebhookEvent).where(WebhookEvent.process_id == task.process_id)
    )
    assert sorted(e.type for e in events) == ["task.created", "ticket.escalated"]
    audit = await audit_trail(database, task.process_id)
    assert [e.step for e in audit] == ["task:sla_breach"]


async def test_steps_of_one_process_are_not_mistaken_for_each_other(
    database: Database, settings: Settings, mailer: SmtpMailer, mail_sink: MailSink
) -> None:
    email = email_activities(database, settings, mailer)
    welcome = email_request()
    nudge = dataclasses.replace(
        welcome,
        key=step_key(welcome.process_id, "email_nudge_day_3"),
        template="onboarding_nudge",
        context={**welcome.context, "day": 3, "missing": ["first_value"]},
    )

    for request in (welcome, nudge, welcome, nudge):
        await ActivityEnvironment().run(email.send_email, request)

    messages = read_messages(mail_sink.maildir, to=welcome.to)
    assert [step_of(m) for m in messages] == ["email_welcome", "email_nudge_day_3"]
    assert len({m.message_id for m in messages}) == 2


# The window the outbox is built for: SMTP accepted, the attempt died before
# marking the row sent. The retry must send the very same message again
# (same Message-ID, so receiving systems keep one), never a different one.


class AcceptedThenDied(SmtpMailer):
    """Delivers like the real mailer, then the worker "dies" before anything else runs."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.delivered: list[EmailMessage] = []

    async def send(self, message: EmailMessage) -> None:
        await super().send(message)
        self.delivered.append(message)
        raise RuntimeError("worker process killed right after the SMTP server said 250")


async def test_retry_after_crash_between_smtp_accept_and_outbox_mark_resends_same_message(
    database: Database, settings: Settings, mailer: SmtpMailer, mail_sink: MailSink
) -> None:
    request = email_request()
    dying = AcceptedThenDied(mail_sink.host, mail_sink.port)

    with pytest.raises(RuntimeError, match="killed"):
        await ActivityEnvironment().run(
            email_activities(database, settings, dying).send_email, request
        )
    assert len(dying.delivered) == 1
    [outbox] = await outbox_of(database, request.process_id)
    assert outbox.status == "sending"
    assert await audit_trail(database, request.process_id) == []

    restarted_worker = email_activities(database, settings, mailer)
    receipt = await ActivityEnvironment().run(restarted_worker.send_email, request)
    again = await ActivityEnvironment().run(restarted_worker.send_email, request)

    copies = read_messages(mail_sink.maildir, to=request.to)
    assert len(copies) == 2, "the crash window is re-sent, not lost"
    assert {m.message_id for m in copies} == {outbox.message_id}
    assert {(m.subject, m.body) for m in copies} == {(copies[0].subject, copies[0].body)}
    assert receipt.message_id == outbox.message_id and receipt.sent is True
    assert again.sent is False
    [outbox] = await outbox_of(database, request.process_id)
    assert outbox.status == "sent"
    assert [e.step for e in await audit_trail(database, request.process_id)] == ["email:welcome"]


async def test_retry_after_smtp_failure_sends_the_email_once(
    database: Database, settings: Settings, mailer: SmtpMailer, mail_sink: MailSink
) -> None:
    request = email_request()
    closed_port = SmtpMailer("127.0.0.1", free_port(), timeout_seconds=1)

    with pytest.raises(ApplicationError) as unavailable:
        await ActivityEnvironment().run(
            email_activities(database, settings, closed_port).send_email, request
        )
    assert unavailable.value.type == "SmtpUnavailable"
    assert unavailable.value.non_retryable is False

    receipt = await ActivityEnvironment().run(
        email_activities(database, settings, mailer).send_email, request
    )

    [message] = read_messages(mail_sink.maildir, to=request.to)
    assert message.message_id == receipt.message_id and receipt.sent is True


# Retried by Temporal in a real onboarding run: the first attempt of each
# activity does its work and then fails as if its result were lost.


class LosesFirstResult:
    """The real email and task activities, registered under their own names,
    whose first attempt completes its side effect and then fails retryably."""

    def __init__(self, settings: Settings, policy: Policy, database: Database) -> None:
        self.built = build_activities(settings, policy, database)
        activities = self.built.functions
        wrapped = {SEND_EMAIL, CREATE_TASK}
        real = {a.__name__: a for a in activities if getattr(a, "__name__", "") in wrapped}
        self._send_email = real[SEND_EMAIL]
        self._create_task = real[CREATE_TASK]
        self.others = [a for a in activities if getattr(a, "__name__", "") not in wrapped]
        self.calls: Counter[str] = Counter()

    @activity.defn(name=SEND_EMAIL)
    async def send_email(self, request: EmailRequest) -> EmailReceipt:
        receipt: EmailReceipt = await self._send_email(request)
        return self._lose_first(SEND_EMAIL, receipt)

    @activity.defn(name=CREATE_TASK)
    async def create_task(self, request: TaskRequest) -> TaskRef:
        task: TaskRef = await self._create_task(request)
        return self._lose_first(CREATE_TASK, task)

    def _lose_first(self, name: str, result: ResultT) -> ResultT:
        self.calls[name] += 1
        if activity.info().attempt == 1:
            raise ApplicationError(f"{name}: result lost after the side effect", type="Lost")
        return result


@pytest.fixture
async def flaky_worker(idle_stack: Stack) -> AsyncIterator[LosesFirstResult]:
    flaky = LosesFirstResult(idle_stack.settings, idle_stack.policy, idle_stack.database)
    worker = Worker(
        idle_stack.client,
        task_queue=idle_stack.task_queue,
        workflows=[OnboardingWorkflow],
        activities=[flaky.send_email, flaky.create_task, *flaky.others],
    )
    try:
        async with worker:
            yield flaky
    finally:
        await flaky.built.aclose()


async def attempts_of(handle: OnboardingHandle, activity_name: str) -> list[int]:
    """The attempt number that completed each execution of ``activity_name`` in the run."""
    history = await handle.fetch_history()
    scheduled = {
        event.event_id: event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    return [
        event.activity_task_started_event_attributes.attempt
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and scheduled[event.activity_task_started_event_attributes.scheduled_event_id]
        == activity_name
    ]


async def test_onboarding_with_retried_email_and_task_activities_has_one_of_each(
    idle_stack: Stack, flaky_worker: LosesFirstResult
) -> None:
    customer = onboarding_input()
    handle = await start_onboarding(idle_stack.client, idle_stack.task_queue, customer)
    await send_event(handle, "account_configured")
    await send_event(handle, "first_value")

    result = await handle.result()

    assert result.outcome == "activated"
    assert await attempts_of(handle, SEND_EMAIL) == [2]
    assert await attempts_of(handle, CREATE_TASK) == [2]
    assert flaky_worker.calls == {SEND_EMAIL: 2, CREATE_TASK: 2}
    assert [step_of(m) for m in inbox(idle_stack.maildir, customer)] == ["email_welcome"]
    [kickoff] = await tasks_of(idle_stack.database, customer.customer_id)
    assert kickoff.kind == "kickoff"
    assert await count_rows(idle_stack.database, Task, kickoff.key) == 1
    [outbox] = await outbox_of(idle_stack.database, handle.id)
    assert outbox.status == "sent"
    audit_steps = Counter(e.step for e in await audit_trail(idle_stack.database, handle.id))
    assert audit_steps["task:kickoff"] == 1
    assert audit_steps["email:welcome"] == 1
