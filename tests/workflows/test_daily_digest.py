"""The daily digest: at 08:00 on the staff member's wall every morning across a DST change,
and only on mornings with something to say."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle

from crm.policy import Policy
from crm.store.models import Task
from crm.store.task_completion import complete_task
from devstack.mailsink import read_messages
from tests.support.stack import Stack
from workflows.digest import DailyDigestWorkflow
from workflows.digest_types import DigestInput

#: Friday 2027-03-26, noon UTC: Stockholm moves to summer time on Sunday 2027-03-28 at 02:00.
FRIDAY_NOON = datetime(2027, 3, 26, 12, 0, tzinfo=UTC)


async def gathered_at(handle: WorkflowHandle[DailyDigestWorkflow, None]) -> list[datetime]:
    """When each morning's gathering was scheduled, to the second, from the run's history."""
    history = await handle.fetch_history()
    return [
        event.event_time.ToDatetime(tzinfo=UTC).replace(microsecond=0)
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and event.activity_task_scheduled_event_attributes.activity_type.name == "gather_digest"
    ]


async def test_the_digest_comes_at_eight_on_the_wall_across_dst_and_only_with_work(
    idle_stack: Stack,
) -> None:
    stack = idle_stack
    env = stack.env
    await env.sleep(FRIDAY_NOON - await env.get_current_time())
    policy = Policy()
    ana = policy.member("csm-ana")
    stack = Stack(
        env,
        stack.settings,
        policy.model_copy(
            update={
                "staff": [
                    m.model_copy(update={"timezone": "Europe/Stockholm"}) if m.id == ana.id else m
                    for m in policy.staff
                ]
            }
        ),
        stack.database,
        stack.mail_sink,
    )
    task = Task(
        key=f"onboarding-c-{uuid.uuid4().hex[:8]}/kickoff",
        process_id="onboarding-c-digest",
        customer_id="c-digest",
        assignee_id=ana.id,
        kind="kickoff",
        title=f"Kickoff call {uuid.uuid4().hex[:6]}",
        due_at=FRIDAY_NOON + timedelta(days=1),
    )
    await stack.database.run(lambda session: session.add(task))

    async with stack.worker():
        handle = await stack.client.start_workflow(
            DailyDigestWorkflow.run,
            DigestInput(ana.id, "Europe/Stockholm", "08:00"),
            id=f"digest-test-{uuid.uuid4().hex[:8]}",
            task_queue=stack.task_queue,
        )
        await env.sleep(timedelta(days=2, hours=12))  # Saturday's and Sunday's mornings
        await stack.database.run(lambda session: complete_task(session, task.id or 0, ana.id))
        await env.sleep(timedelta(days=2))  # Monday's and Tuesday's: nothing to say
        mornings = await gathered_at(handle)

    assert mornings[:4] == [
        datetime(2027, 3, 27, 7, 0, tzinfo=UTC),  # 08:00 CET
        datetime(2027, 3, 28, 6, 0, tzinfo=UTC),  # 08:00 CEST, the first summer morning
        datetime(2027, 3, 29, 6, 0, tzinfo=UTC),
        datetime(2027, 3, 30, 6, 0, tzinfo=UTC),
    ]
    mails = [mail for mail in read_messages(stack.maildir, to=ana.email) if task.title in mail.body]
    assert sorted(mail.subject for mail in mails) == [
        "Your work for 2027-03-27: 1 open task(s)",
        "Your work for 2027-03-28: 1 open task(s), 1 overdue",
    ]
    assert "OVERDUE since Sat 27 Mar 13:00" in next(m.body for m in mails if "03-28" in m.subject)


async def test_a_digest_ends_when_its_staff_member_leaves_the_policy(idle_stack: Stack) -> None:
    async with idle_stack.worker():
        handle = await idle_stack.client.start_workflow(
            DailyDigestWorkflow.run,
            DigestInput("csm-who-left", "Europe/Stockholm", "08:00"),
            id=f"digest-test-{uuid.uuid4().hex[:8]}",
            task_queue=idle_stack.task_queue,
        )
        await handle.result()  # the time-skipping server runs on to the first morning

    assert len(await gathered_at(handle)) == 1
