"""Users' automations end to end on the time-skipping server: the shipped examples and how
a run fails.

The production worker runs every real activity (email to the SMTP sink, tasks
to the test's database); only the clock is fake, so two business days or two
birthdays pass in seconds. Runs start as the API starts them once a trigger
matched (``tests.support.automations.start_run``).
"""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import select
from temporalio.client import WorkflowFailureError

from crm.domain.calendar import BusinessCalendar, CalendarSpec
from crm.store.models import WebhookEvent, as_utc
from tests.support.automations import (
    audit_steps,
    example,
    mail_about,
    new_record_id,
    record_event,
    start_run,
    tasks_for_record,
)
from tests.support.stack import Stack
from workflows.automation import AutomationWorkflow
from workflows.common import PROCESS, RECORD_ID, STAGE

BUSINESS = BusinessCalendar.from_spec(CalendarSpec())


def won_deal(deal_id: str, **fields: object) -> dict[str, object]:
    return {
        "name": f"Deal {deal_id}",
        "stage": "won",
        "amount": 25000,
        "owner_id": "csm-ana",
        "onboarding_started": False,
        **fields,
    }


async def test_won_deal_without_onboarding_is_escalated_to_the_owners_manager(
    stack: Stack,
) -> None:
    definition = example("deal-won-handoff")
    deal_id = new_record_id("d")
    now = await stack.env.get_current_time()
    event = record_event(
        definition, deal_id, "updated", won_deal(deal_id), {"stage": "negotiation"}, at=now
    )
    handle = await start_run(stack.client, stack.task_queue, definition, event)

    result = await handle.result()

    started = (await handle.describe()).start_time
    assert started is not None
    assert result.outcome == "escalated"
    assert result.last_step == "escalated"
    [email] = mail_about(stack.maildir, "hana.berg@example.com", f"Deal {deal_id}")
    assert email.subject == f"Won: Deal {deal_id} (25000)"
    assert "Its owner now hands it to customer success." in email.body
    handoff, escalation = await tasks_for_record(stack.database, deal_id)
    assert (handoff.kind, handoff.assignee_id) == ("handoff", "csm-ana")
    assert handoff.title == f"Hand off Deal {deal_id} to customer success"
    assert abs(as_utc(handoff.due_at) - BUSINESS.add_business_days(started, 1)) < timedelta(
        seconds=5
    )
    assert (escalation.kind, escalation.assignee_id) == ("escalate", "mgr-hana")
    timed_out = BUSINESS.add_business_days(started, 2)
    expected_due = BUSINESS.add(timed_out, timedelta(hours=4))
    assert abs(as_utc(escalation.due_at) - expected_due) < timedelta(seconds=5)
    described = await handle.describe()
    attributes = described.typed_search_attributes
    assert attributes.get(PROCESS) == "automation"
    assert attributes.get(RECORD_ID) == deal_id
    assert attributes.get(STAGE) == "escalated"
    assert (await audit_steps(stack.database, handle.id))[-1] == "outcome"


async def test_onboarding_started_in_time_hands_the_deal_off_without_escalation(
    stack: Stack,
) -> None:
    definition = example("deal-won-handoff")
    deal_id = new_record_id("d")
    now = await stack.env.get_current_time()
    handle = await start_run(
        stack.client,
        stack.task_queue,
        definition,
        record_event(definition, deal_id, "updated", won_deal(deal_id), at=now),
    )
    await stack.env.sleep(timedelta(hours=20))
    later = await stack.env.get_current_time()
    started = record_event(
        definition,
        deal_id,
        "updated",
        won_deal(deal_id, onboarding_started=True),
        {"onboarding_started": False},
        at=later,
    )
    await handle.signal(AutomationWorkflow.record_event, started)
    await handle.signal(AutomationWorkflow.record_event, started)  # delivered twice: taken once

    result = await handle.result()

    assert result.outcome == "handed_off"
    assert [t.kind for t in await tasks_for_record(stack.database, deal_id)] == ["handoff"]
    state = await handle.query(AutomationWorkflow.state)
    assert [s.step for s in state.steps].count("event:updated") == 1


async def test_a_deal_lost_while_waiting_meets_the_goal_and_ends_the_run(stack: Stack) -> None:
    definition = example("deal-won-handoff")
    deal_id = new_record_id("d")
    now = await stack.env.get_current_time()
    handle = await start_run(
        stack.client,
        stack.task_queue,
        definition,
        record_event(definition, deal_id, "updated", won_deal(deal_id), at=now),
    )
    await stack.env.sleep(timedelta(hours=2))
    lost = record_event(
        definition,
        deal_id,
        "updated",
        won_deal(deal_id, stage="lost"),
        {"stage": "won"},
        at=await stack.env.get_current_time(),
    )
    await handle.signal(AutomationWorkflow.record_event, lost)

    result = await handle.result()

    assert result.outcome == "goal_met"
    assert result.last_step == "wait_for_onboarding"
    assert [t.kind for t in await tasks_for_record(stack.database, deal_id)] == ["handoff"]


async def test_a_record_without_an_owner_fails_the_step_visibly(stack: Stack) -> None:
    definition = example("deal-won-handoff")
    deal_id = new_record_id("d")
    now = await stack.env.get_current_time()
    record = won_deal(deal_id)
    del record["owner_id"]
    handle = await start_run(
        stack.client,
        stack.task_queue,
        definition,
        record_event(definition, deal_id, "updated", record, at=now),
    )

    result = await handle.result()

    assert result.outcome == "failed"
    assert result.last_step == "tell_manager"
    assert result.failure == "tell_manager: record.owner_id names no staff member: None"
    assert await audit_steps(stack.database, handle.id) == ["failed:tell_manager", "outcome"]
    attributes = (await handle.describe()).typed_search_attributes
    assert attributes.get(STAGE) == "failed"
    state = await handle.query(AutomationWorkflow.state)
    assert state.outcome == "failed"


async def test_negative_feedback_two_days_after_resolution_alerts_the_team_lead(
    stack: Stack,
) -> None:
    definition = example("csat-after-resolution")
    ticket_id = new_record_id("t")
    requester = f"{ticket_id}@example.com"
    ticket = {"subject": f"Login broken {ticket_id}", "status": "resolved"}
    ticket["requester_email"] = requester
    now = await stack.env.get_current_time()
    handle = await start_run(
        stack.client,
        stack.task_queue,
        definition,
        record_event(definition, ticket_id, "updated", ticket, {"status": "open"}, at=now),
    )
    await stack.env.sleep(timedelta(days=2, hours=1))
    [ask] = mail_about(stack.maildir, requester, "How did we do")
    assert ask.subject == f'How did we do with "Login broken {ticket_id}"?'
    state = await handle.query(AutomationWorkflow.state)
    assert state.stage == "wait_for_score"

    reply = record_event(
        definition,
        ticket_id,
        "updated",
        {**ticket, "csat_score": 1},
        {"csat_score": None},
        at=await stack.env.get_current_time(),
    )
    await handle.signal(AutomationWorkflow.record_event, reply)
    result = await handle.result()

    assert result.outcome == "negative_feedback"
    [alert] = await tasks_for_record(stack.database, ticket_id)
    assert alert.assignee_id == "lead-sam"
    assert alert.title == f'Negative feedback (1/5) on "Login broken {ticket_id}"'


async def test_a_branch_condition_failing_on_the_records_data_fails_the_run(
    stack: Stack,
) -> None:
    definition = example("csat-after-resolution")
    ticket_id = new_record_id("t")
    ticket = {"subject": "S", "status": "resolved", "requester_email": f"{ticket_id}@example.com"}
    now = await stack.env.get_current_time()
    handle = await start_run(
        stack.client,
        stack.task_queue,
        definition,
        record_event(definition, ticket_id, "updated", ticket, at=now),
    )
    await stack.env.sleep(timedelta(days=2, hours=1))
    reply = record_event(
        definition,
        ticket_id,
        "updated",
        {**ticket, "csat_score": "terrible"},
        {"csat_score": None},
        at=await stack.env.get_current_time(),
    )
    await handle.signal(AutomationWorkflow.record_event, reply)

    result = await handle.result()

    assert result.outcome == "failed"
    assert result.last_step == "check_score"
    assert result.failure is not None and "No such overload" in result.failure
    assert "failed:check_score" in await audit_steps(stack.database, handle.id)


async def test_stale_deal_nudge_restarts_its_wait_on_every_update(stack: Stack) -> None:
    definition = example("stale-deal-nudge")
    deal_id = new_record_id("d")
    deal = {"name": f"Deal {deal_id}", "stage": "qualified", "owner_id": "csm-ben"}
    handle = await start_run(
        stack.client,
        stack.task_queue,
        definition,
        record_event(definition, deal_id, "created", deal, at=await stack.env.get_current_time()),
    )
    first_run = (await handle.describe()).run_id
    for _ in range(2):  # touched every 10 days: never stale
        await stack.env.sleep(timedelta(days=10))
        touched = record_event(
            definition, deal_id, "updated", deal, at=await stack.env.get_current_time()
        )
        await handle.signal(AutomationWorkflow.record_event, touched)
    await stack.env.sleep(timedelta(days=10))
    assert await tasks_for_record(stack.database, deal_id) == []

    await stack.env.sleep(timedelta(days=5))  # 15 quiet days
    [nudge] = await tasks_for_record(stack.database, deal_id)
    assert nudge.assignee_id == "csm-ben"
    assert nudge.title == f"Deal {deal_id} has not moved for 14 days"
    latest = await handle.describe()
    assert latest.run_id != first_run  # each loop back continued as new
    assert latest.typed_search_attributes.get(RECORD_ID) == deal_id  # kept across runs
    assert latest.typed_search_attributes.get(PROCESS) == "automation"

    won = record_event(
        definition,
        deal_id,
        "updated",
        {**deal, "stage": "won"},
        {"stage": "qualified"},
        at=await stack.env.get_current_time(),
    )
    await stack.client.get_workflow_handle(handle.id).signal(AutomationWorkflow.record_event, won)
    result = await stack.client.get_workflow_handle_for(AutomationWorkflow.run, handle.id).result()
    assert result.outcome == "goal_met"
    assert result.steps_taken >= 4


async def test_birthday_greetings_come_every_year_at_nine_in_the_contacts_time_zone(
    stack: Stack,
) -> None:
    definition = example("birthday-greeting")
    contact_id = new_record_id("c")
    now = await stack.env.get_current_time()
    paris = ZoneInfo("Europe/Paris")
    birthday = (now + timedelta(days=3)).astimezone(paris).date()
    address = f"{contact_id}@example.com"
    contact = {"name": "Ann", "email": address, "timezone": "Europe/Paris"}
    contact["birthday"] = birthday.replace(year=1990).isoformat()
    handle = await start_run(
        stack.client,
        stack.task_queue,
        definition,
        record_event(definition, contact_id, "created", contact, at=now),
    )

    await stack.env.sleep(timedelta(days=3) + timedelta(days=366))
    greetings = mail_about(stack.maildir, address, "Happy birthday")
    assert len(greetings) == 2
    state = await handle.query(AutomationWorkflow.state)
    [due] = state.due.values()
    assert due.astimezone(paris).hour == 9
    assert (due.astimezone(paris).month, due.astimezone(paris).day) == (
        birthday.month,
        birthday.day,
    )

    deleted = record_event(
        definition, contact_id, "deleted", contact, at=await stack.env.get_current_time()
    )
    await handle.signal(AutomationWorkflow.record_event, deleted)
    result = await stack.client.get_workflow_handle_for(AutomationWorkflow.run, handle.id).result()
    assert result.outcome == "goal_met"
    assert result.steps_taken == 5  # wait, greet, wait, greet, and the wait the goal ended


async def test_an_event_that_came_while_the_steps_before_the_wait_ran_ends_the_wait(
    idle_stack: Stack,
) -> None:
    stack = idle_stack
    definition = example("deal-won-handoff")
    deal_id = new_record_id("d")
    now = await stack.env.get_current_time()
    won = record_event(definition, deal_id, "updated", won_deal(deal_id), at=now)
    started = record_event(
        definition,
        deal_id,
        "updated",
        won_deal(deal_id, onboarding_started=True),
        {"onboarding_started": False},
        at=now,
    )
    # Both reach the run before a worker does: the event is there before the wait begins.
    handle = await start_run(stack.client, stack.task_queue, definition, won)
    await handle.signal(AutomationWorkflow.record_event, started)
    async with stack.worker():
        result = await handle.result()
        state = await handle.query(AutomationWorkflow.state)

    assert result.outcome == "handed_off"
    steps = [s.step for s in state.steps]
    assert steps.index("event:updated") < steps.index("waiting:wait_for_onboarding")
    assert [t.kind for t in await tasks_for_record(stack.database, deal_id)] == ["handoff"]


async def test_a_cancelled_run_records_why_and_is_not_taken_for_a_failed_step(
    stack: Stack,
) -> None:
    definition = example("deal-won-handoff")
    deal_id = new_record_id("d")
    now = await stack.env.get_current_time()
    handle = await start_run(
        stack.client,
        stack.task_queue,
        definition,
        record_event(definition, deal_id, "updated", won_deal(deal_id), at=now),
    )
    await stack.env.sleep(timedelta(hours=2))  # waiting for the onboarding

    await handle.cancel(reason="deal dropped")
    with pytest.raises(WorkflowFailureError):
        await handle.result()

    audited = await audit_steps(stack.database, handle.id)
    assert audited[-1] == "outcome"
    assert not [step for step in audited if step.startswith("failed:")]
    state = await handle.query(AutomationWorkflow.state)
    assert state.outcome == "cancelled"
    emitted = await stack.database.all(
        select(WebhookEvent.data).where(
            WebhookEvent.process_id == handle.id, WebhookEvent.type == "automation.cancelled"
        )
    )
    assert [(data["outcome"], data["reason"], "step" in data) for data in emitted] == [
        ("cancelled", "deal dropped", False)
    ]
    # Its handoff task is closed with it (CANCELLED_CLOSES_TASKS): nobody works on it now.
    tasks = await tasks_for_record(stack.database, deal_id)
    assert tasks and {task.status for task in tasks} == {"done"}
