"""The attention watch: the operator hears of new attention items once, by email and webhook
event, and the schedule that runs it follows the worker's settings."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlmodel import select
from temporalio.client import ScheduleIntervalSpec

from crm.store.models import Task, WebhookEvent
from devstack.mailsink import read_messages
from tests.support.stack import Stack
from worker.schedules import attention_schedule_id, keep_attention_schedule
from workflows.attention_types import AttentionChecked, AttentionWatch
from workflows.attention_watch import AttentionWatchWorkflow


def overdue_task(title: str, tenant: str | None = "a") -> Task:
    process_id = f"onboarding-c-{uuid.uuid4().hex[:10]}" + (f"@{tenant}" if tenant else "")
    return Task(
        key=f"{process_id}/kickoff",
        process_id=process_id,
        customer_id="c-1",
        assignee_id="csm-ana",
        kind="kickoff",
        title=title,
        due_at=datetime.now(UTC) - timedelta(hours=2),
        tenant=tenant,
    )


async def look(stack: Stack, operator: str) -> AttentionChecked:
    return await stack.client.execute_workflow(
        AttentionWatchWorkflow.run,
        AttentionWatch(operator_email=operator),
        id=f"attention-watch-test-{uuid.uuid4().hex[:8]}",
        task_queue=stack.task_queue,
    )


def mine(checked: AttentionChecked, *titles: str) -> list[str]:
    """The raised tasks among ``titles`` (the dev server has other tests' runs)."""
    return [title for item in checked.raised for title in titles if title in item.subject]


async def test_new_attention_items_reach_the_operator_once(dev_stack: Stack) -> None:
    operator = f"ops-{uuid.uuid4().hex[:6]}@example.com"
    first = overdue_task("Kickoff call with Acme")
    await dev_stack.database.run(lambda session: session.add(first))

    async with dev_stack.worker():
        checked = await look(dev_stack, operator)
        again = await look(dev_stack, operator)
        second = overdue_task("Kickoff call with Globex")
        await dev_stack.database.run(lambda session: session.add(second))
        later = await look(dev_stack, operator)

    assert mine(checked, "Kickoff call with Acme") == ["Kickoff call with Acme"]
    assert mine(again, "Kickoff call with Acme") == []
    assert mine(later, "Kickoff call with Acme", "Kickoff call with Globex") == [
        "Kickoff call with Globex"
    ]
    mails = read_messages(dev_stack.maildir, to=operator)
    assert len(mails) == 2, "one email per look that found something new"
    bodies = sorted(mail.body for mail in mails)
    assert sum("Kickoff call with Acme" in body for body in bodies) == 1
    assert sum("Kickoff call with Globex" in body for body in bodies) == 1
    events = await dev_stack.database.run(
        lambda session: session.exec(
            select(WebhookEvent).where(WebhookEvent.type == "attention.raised")
        ).all()
    )
    raised_for_a = [
        e
        for e in events
        if e.tenant == "a"
        and e.data["process_id"]
        in (
            first.process_id,
            second.process_id,
        )
    ]
    assert len(raised_for_a) == 2


async def test_the_watch_schedule_follows_the_settings(dev_stack: Stack) -> None:
    client = dev_stack.client
    settings = dev_stack.settings.model_copy(
        update={"attention_check_minutes": 15, "operator_email": "ops@example.com"}
    )
    handle = client.get_schedule_handle(attention_schedule_id(settings.task_queue))

    await keep_attention_schedule(client, settings)
    await keep_attention_schedule(client, settings)  # a second worker starting: no error
    made = await handle.describe()
    await keep_attention_schedule(
        client, settings.model_copy(update={"attention_check_minutes": 5})
    )
    changed = await handle.describe()
    await keep_attention_schedule(
        client, settings.model_copy(update={"attention_check_minutes": 0})
    )
    remaining = [s.id async for s in await client.list_schedules()]

    assert made.schedule.spec.intervals == [ScheduleIntervalSpec(every=timedelta(minutes=15))]
    assert changed.schedule.spec.intervals == [ScheduleIntervalSpec(every=timedelta(minutes=5))]
    assert attention_schedule_id(settings.task_queue) not in remaining
