"""The onboarding process end to end on the time-skipping server.

The real worker runs every real activity: email goes to the SMTP sink,
tasks and records to a fresh SQLite database, enrichment to the local
provider. Only the clock is fake, so thirty days pass in a second or two.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError

from crm.domain.calendar import BusinessCalendar, CalendarSpec
from crm.domain.schedules import OnboardingSchedule
from crm.store.models import as_utc
from tests.support.onboarding import (
    assignments_of,
    audit_trail,
    customer_row,
    inbox,
    onboarding_input,
    send_event,
    start_onboarding,
    step_of,
    tasks_of,
    wait_for_stage,
)
from tests.support.servers import free_port
from tests.support.stack import Stack
from workflows.common import CUSTOMER_ID, PROCESS, STAGE
from workflows.onboarding import OnboardingWorkflow
from workflows.onboarding_types import onboarding_id


async def test_customer_reaching_milestones_early_is_activated_without_nudges(stack: Stack) -> None:
    customer = onboarding_input()
    handle = await start_onboarding(stack.client, stack.task_queue, customer)
    await wait_for_stage(handle, "awaiting_milestones")

    await stack.env.sleep(timedelta(days=1))
    await send_event(handle, "account_configured")
    await stack.env.sleep(timedelta(days=1))
    await send_event(handle, "first_value")
    result = await handle.result()

    started = (await handle.describe()).start_time
    assert result.outcome == "activated"
    assert result.nudges_sent == []
    assert result.at_risk_task_id is None
    assert result.enrichment_complete is True
    assert set(result.milestones) == {"account_configured", "first_value"}
    assert timedelta(days=1) <= result.milestones["account_configured"] - started
    assert result.milestones["first_value"] - started < timedelta(days=3)

    messages = inbox(stack.maildir, customer)
    assert [step_of(m) for m in messages] == ["email_welcome"]
    welcome = messages[0]
    assert welcome.subject == "Welcome to crmflow, Acme Corp"
    assert "Hi Ann Lee," in welcome.body
    assert "Account configured" in welcome.body and "First value" in welcome.body

    expected_kickoff_due = BusinessCalendar.from_spec(CalendarSpec()).add_business_days(started, 2)
    tasks = await tasks_of(stack.database, customer.customer_id)
    assert [(t.kind, t.assignee_id) for t in tasks] == [("kickoff", result.csm_id)]
    assert as_utc(tasks[0].due_at) == expected_kickoff_due

    record = await customer_row(stack.database, customer.customer_id)
    assert record is not None
    assert (record.stage, record.csm_id) == ("activated", result.csm_id)
    [assignment] = await assignments_of(stack.database, handle.id)
    assert assignment.assignee_id == result.csm_id
    assert assignment.active is False and assignment.released_at is not None

    state = await handle.query(OnboardingWorkflow.state)
    assert state.stage == "activated" and state.outcome == "activated"
    assert state.waiting_for == []


async def test_stalled_onboarding_nudges_twice_then_flags_risk(stack: Stack) -> None:
    customer = onboarding_input()
    handle = await start_onboarding(stack.client, stack.task_queue, customer)
    await wait_for_stage(handle, "awaiting_milestones")

    await stack.env.sleep(timedelta(days=5))
    state = await handle.query(OnboardingWorkflow.state)
    assert state.details["nudges_sent"] == [3]
    assert await tasks_of(stack.database, customer.customer_id) != []
    await send_event(handle, "account_configured")
    result = await handle.result()

    started = (await handle.describe()).start_time
    assert result.outcome == "stalled"
    assert result.nudges_sent == [3, 7]
    assert list(result.milestones) == ["account_configured"]

    messages = inbox(stack.maildir, customer)
    assert [step_of(m) for m in messages] == [
        "email_welcome",
        "email_nudge_day_3",
        "email_nudge_day_7",
    ]
    day_3, day_7 = messages[1], messages[2]
    assert "It has been 3 days" in day_3.body
    assert "Account configured" in day_3.body and "First value" in day_3.body
    assert "It has been 7 days" in day_7.body
    assert "First value" in day_7.body
    assert "Account configured" not in day_7.body

    tasks = await tasks_of(stack.database, customer.customer_id)
    assert [t.kind for t in tasks] == ["kickoff", "at_risk"]
    at_risk = tasks[1]
    assert at_risk.id == result.at_risk_task_id
    assert at_risk.assignee_id == result.csm_id
    assert "not activated after 10 days" in at_risk.title
    assert at_risk.detail == "Missing milestones: first_value."
    assert as_utc(at_risk.due_at) - started == pytest.approx(
        timedelta(days=11), abs=timedelta(minutes=1)
    )

    steps = {s.step: s.at - started for s in (await handle.query(OnboardingWorkflow.state)).steps}
    day = timedelta(days=1)
    assert steps["email:nudge_day_3"] == pytest.approx(3 * day, abs=timedelta(minutes=1))
    assert steps["milestone:account_configured"] == pytest.approx(5 * day, abs=timedelta(minutes=1))
    assert steps["email:nudge_day_7"] == pytest.approx(7 * day, abs=timedelta(minutes=1))
    assert steps["task:at_risk"] == pytest.approx(10 * day, abs=timedelta(minutes=1))

    record = await customer_row(stack.database, customer.customer_id)
    assert record is not None and record.stage == "stalled"
    [assignment] = await assignments_of(stack.database, handle.id)
    assert assignment.active is False
    outcome = [e for e in await audit_trail(stack.database, handle.id) if e.step == "outcome"]
    assert [e.detail["outcome"] for e in outcome] == ["stalled"]

    closed = await handle.describe()
    assert closed.close_time is not None
    assert closed.close_time - started >= timedelta(days=30)


async def test_cancelled_onboarding_marks_customer_churned_and_frees_the_csm(stack: Stack) -> None:
    customer = onboarding_input()
    handle = await start_onboarding(stack.client, stack.task_queue, customer)
    await wait_for_stage(handle, "awaiting_milestones")
    await stack.env.sleep(timedelta(days=4))

    await handle.cancel(reason="customer churned before activation")
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()

    assert isinstance(failure.value.cause, CancelledError)
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    state = await handle.query(OnboardingWorkflow.state)
    assert (state.stage, state.outcome) == ("cancelled", "cancelled")

    record = await customer_row(stack.database, customer.customer_id)
    assert record is not None and record.stage == "churned"
    [assignment] = await assignments_of(stack.database, handle.id)
    assert assignment.active is False and assignment.released_at is not None
    [outcome] = [e for e in await audit_trail(stack.database, handle.id) if e.step == "outcome"]
    assert outcome.detail == {
        "outcome": "cancelled",
        "reason": "customer churned before activation",
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"contact_email": "ann-at-acme.io"}, "contact_email 'ann-at-acme.io' is not an email"),
        (
            {"schedule": OnboardingSchedule(nudge_days=[7, 3])},
            "schedule days must be strictly increasing, got [7, 3, 10, 30]",
        ),
        (
            {"schedule": OnboardingSchedule(at_risk_day=40)},
            "schedule days must be strictly increasing, got [3, 7, 40, 30]",
        ),
        ({"company_name": " "}, "company_name is required"),
        ({"schedule": OnboardingSchedule(milestones=[])}, "must name at least one milestone"),
    ],
    ids=["bad-email", "nudges-decreasing", "at-risk-after-stall", "blank-company", "no-milestones"],
)
async def test_invalid_onboarding_input_fails_the_run_without_retrying(
    stack: Stack, overrides: dict[str, Any], message: str
) -> None:
    customer = onboarding_input(**overrides)
    handle = await start_onboarding(stack.client, stack.task_queue, customer)

    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()

    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "InvalidInput"
    assert cause.non_retryable is True
    assert cause.message.startswith("invalid onboarding input: ")
    assert message in cause.message
    assert await tasks_of(stack.database, customer.customer_id) == []
    assert await customer_row(stack.database, customer.customer_id) is None


async def test_free_mail_domain_continues_with_partial_company_data(stack: Stack) -> None:
    customer = onboarding_input(domain="gmail.com")
    handle = await start_onboarding(stack.client, stack.task_queue, customer)

    state = await wait_for_stage(handle, "awaiting_milestones")

    assert state.details["enrichment_complete"] is False
    [enrich] = [s for s in state.steps if s.step == "enrich"]
    assert enrich.detail == "partial data: no company data for gmail.com"
    assert [step_of(m) for m in inbox(stack.maildir, customer)] == ["email_welcome"]
    assert [t.kind for t in await tasks_of(stack.database, customer.customer_id)] == ["kickoff"]
    record = await customer_row(stack.database, customer.customer_id)
    assert record is not None
    assert (record.company_name, record.domain, record.industry) == (
        "Acme Corp",
        "gmail.com",
        None,
    )
    await handle.terminate("test over")


async def test_onboarding_is_findable_by_process_customer_and_stage(stack: Stack) -> None:
    customer = onboarding_input()
    handle = await start_onboarding(stack.client, stack.task_queue, customer)
    await wait_for_stage(handle, "awaiting_milestones")

    attributes = (await handle.describe()).typed_search_attributes

    assert handle.id == onboarding_id(customer.customer_id)
    assert attributes.get(PROCESS) == "onboarding"
    assert attributes.get(CUSTOMER_ID) == customer.customer_id
    assert attributes.get(STAGE) == "awaiting_milestones"
    await handle.terminate("test over")


@pytest.mark.parametrize(
    ("broken", "stage"),
    [("enrichment_url", "enriching"), ("smtp_port", "welcoming")],
    ids=["enrichment-provider-down", "smtp-relay-down"],
)
async def test_cancel_while_a_first_step_is_retrying_ends_the_run_as_churned(
    idle_stack: Stack, broken: str, stage: str
) -> None:
    unreachable = {"enrichment_url": f"http://127.0.0.1:{free_port()}", "smtp_port": free_port()}
    customer = onboarding_input()
    async with idle_stack.worker(**{broken: unreachable[broken]}):
        handle = await start_onboarding(idle_stack.client, idle_stack.task_queue, customer)
        await wait_for_stage(handle, stage)
        # A first-phase step shows in state only; the run is searchable as starting.
        attributes = (await handle.describe()).typed_search_attributes
        assert attributes.get(STAGE) == "starting"

        await handle.cancel(reason="customer churned before activation")
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()

    assert isinstance(failure.value.cause, CancelledError)
    record = await customer_row(idle_stack.database, customer.customer_id)
    assert record is not None and record.stage == "churned"
    assert all(not a.active for a in await assignments_of(idle_stack.database, handle.id))
    assert inbox(idle_stack.maildir, customer) == []
    steps = [e.step for e in await audit_trail(idle_stack.database, handle.id)]
    assert "outcome" in steps and not any(s.startswith("email_failed") for s in steps)
