"""Automations that start built-in processes and ask for approvals, end to end on the
time-skipping server: the shipped ``big-deal-discount-approval`` example.

The production worker runs every real activity: the approval is the real
approval process (its task and email to the owner's manager), decided here as
an approver decides it; the onboarding an approved deal starts is a real
onboarding run, started as ``POST /v1/onboardings`` would start it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import ActivityEnvironment

from activities.process_starts import ProcessStartActivities
from crm.domain.automation import AutomationDefinition
from crm.domain.calendar import BusinessCalendar, CalendarSpec
from tests.conftest import eventually
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
from workflows.approval import ApprovalWorkflow
from workflows.approval_types import ApprovalDecision, approval_id
from workflows.automation import AutomationWorkflow
from workflows.automation_types import ProcessStartRequest, automation_run_id
from workflows.onboarding_types import OnboardingInput

BUSINESS = BusinessCalendar.from_spec(CalendarSpec())


def discounted_deal(deal_id: str, customer_id: str, **fields: object) -> dict[str, object]:
    return {
        "name": f"Deal {deal_id}",
        "amount": 48000.0,
        "discount": 25.0,
        "owner_id": "csm-ana",
        "customer_id": customer_id,
        "company_name": "Initech",
        "contact_name": "Peter Gibbons",
        "contact_email": f"{customer_id}@initech.example.com",
        "plan": "growth",
        **fields,
    }


async def start_discount_run(
    stack: Stack, deal_id: str, customer_id: str
) -> tuple[AutomationDefinition, WorkflowHandle[Any, Any]]:
    definition = example("big-deal-discount-approval")
    now = await stack.env.get_current_time()
    event = record_event(
        definition,
        deal_id,
        "updated",
        discounted_deal(deal_id, customer_id),
        {"discount": 10.0},
        at=now,
    )
    return definition, await start_run(stack.client, stack.task_queue, definition, event)


async def requested_approval(
    client: Client, definition: AutomationDefinition, deal_id: str
) -> WorkflowHandle[ApprovalWorkflow, Any]:
    """The approval the run asked for, once its approver has been asked."""
    run_id = automation_run_id(definition.id, definition.object, deal_id)
    handle = client.get_workflow_handle_for(
        ApprovalWorkflow.run, approval_id(f"{run_id}-approve_discount")
    )

    async def waiting() -> bool:
        try:
            state = await handle.query(ApprovalWorkflow.state)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return any(entry.step == "email:approval_request" for entry in state.steps)

    await eventually(waiting, bool)
    return handle


async def onboarding_input(client: Client, customer_id: str) -> OnboardingInput:
    history = await client.get_workflow_handle(f"onboarding-{customer_id}").fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    [customer] = await client.data_converter.decode(started.input.payloads, [OnboardingInput])
    assert isinstance(customer, OnboardingInput)
    return customer


async def test_an_approved_discount_starts_the_customers_onboarding_with_the_deals_fields(
    stack: Stack,
) -> None:
    deal_id, customer_id = new_record_id("d"), new_record_id("c")
    definition, run = await start_discount_run(stack, deal_id, customer_id)
    approval = await requested_approval(stack.client, definition, deal_id)
    [asked] = mail_about(stack.maildir, "hana.berg@example.com", f"Deal {deal_id}")
    assert f"Discount of 25% on Deal {deal_id}" in asked.subject + asked.body

    await approval.execute_update(
        ApprovalWorkflow.decide, ApprovalDecision("mgr-hana", "approve", "worth it")
    )
    result = await run.result()

    assert result.outcome == "approved"
    assert result.variables["onboarding_id"] == f"onboarding-{customer_id}"
    customer = await onboarding_input(stack.client, customer_id)
    assert (customer.customer_id, customer.company_name, customer.contact_name) == (
        customer_id,
        "Initech",
        "Peter Gibbons",
    )
    assert (customer.contact_email, customer.plan) == (
        f"{customer_id}@initech.example.com",
        "growth",
    )
    assert await audit_steps(stack.database, run.id) == [
        "approval:approve_discount",
        "start:onboard",
        "outcome",
    ]
    state = await run.query(AutomationWorkflow.state)
    shown = [entry.step for entry in state.steps]
    assert "approved:approve_discount" in shown
    assert "start:onboard" in shown
    await stack.client.get_workflow_handle(f"onboarding-{customer_id}").terminate("test over")


async def test_a_rejected_discount_gives_the_owner_a_task_and_starts_nothing(
    stack: Stack,
) -> None:
    deal_id, customer_id = new_record_id("d"), new_record_id("c")
    definition, run = await start_discount_run(stack, deal_id, customer_id)
    approval = await requested_approval(stack.client, definition, deal_id)

    await approval.execute_update(
        ApprovalWorkflow.decide, ApprovalDecision("mgr-hana", "reject", "too generous")
    )
    result = await run.result()

    assert result.outcome == "rejected"
    # The deal names its customer: the owner's task is for that customer (RECORD_CUSTOMER).
    [task] = [
        t for t in await tasks_for_record(stack.database, customer_id) if t.kind == "renegotiate"
    ]
    assert task.assignee_id == "csm-ana"
    assert task.title == f"Renegotiate Deal {deal_id}: a 25% discount was rejected"
    with pytest.raises(RPCError) as missing:
        await stack.client.get_workflow_handle(f"onboarding-{customer_id}").describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND


async def test_a_discount_nobody_decides_expires_after_two_business_days_and_tells_the_owner(
    stack: Stack,
) -> None:
    deal_id, customer_id = new_record_id("d"), new_record_id("c")
    _, run = await start_discount_run(stack, deal_id, customer_id)

    result = await run.result()

    assert result.outcome == "expired"
    started = (await run.describe()).start_time
    assert started is not None
    [told] = mail_about(stack.maildir, "ana.ruiz@example.com", f"Deal {deal_id}")
    assert told.subject == f"No decision on the discount for Deal {deal_id}"
    assert "was not approved\nwithin two business days" in told.body
    state = await run.query(AutomationWorkflow.state)
    [expired] = [entry for entry in state.steps if entry.step == "expired:approve_discount"]
    assert abs(expired.at - BUSINESS.add_business_days(started, 2)) < timedelta(seconds=5)


async def test_starting_the_same_process_twice_finds_the_first_and_a_bad_body_is_final(
    stack: Stack,
) -> None:
    customer_id = new_record_id("c")
    starts = ProcessStartActivities(stack.database, stack.policy, stack.task_queue)
    request = ProcessStartRequest(
        key="automation-x-deal-d-1/1-onboard",
        process="onboarding",
        fields={
            "customer_id": customer_id,
            "company_name": "Initech",
            "contact_name": "Peter Gibbons",
            "contact_email": f"{customer_id}@initech.example.com",
            "plan": "growth",
        },
        requested_by="automation-x-deal-d-1",
        requested_at=await stack.env.get_current_time(),
    )
    environment = ActivityEnvironment(client=stack.client)

    first = await environment.run(starts.start_process, request)
    again = await environment.run(starts.start_process, request)

    assert (first.process_id, first.created) == (f"onboarding-{customer_id}", True)
    assert (again.process_id, again.run_id, again.created) == (
        first.process_id,
        first.run_id,
        False,
    )
    await stack.client.get_workflow_handle(first.process_id).terminate("test over")
    request.fields["plan"] = "platinum"
    with pytest.raises(ApplicationError) as refused:
        await environment.run(starts.start_process, request)
    assert refused.value.type == "InvalidStart"
    assert refused.value.non_retryable
    assert "onboarding: plan: " in refused.value.message


async def test_an_approval_is_due_at_the_business_time_instant_its_automation_counted(
    stack: Stack,
) -> None:
    """Two business days end at the calendar's close, to the second: the approval, its
    emails and the approver's task say 17:00, not 16:59:59 (the step passes the instant)."""
    deal_id, customer_id = new_record_id("d"), new_record_id("c")
    definition, run = await start_discount_run(stack, deal_id, customer_id)
    approval = await requested_approval(stack.client, definition, deal_id)

    decide_by = datetime.fromisoformat(
        (await approval.query(ApprovalWorkflow.state)).details["decide_by"]
    )
    counted = (await run.query(AutomationWorkflow.state)).due["approve_discount"]
    assert decide_by == counted
    assert (decide_by.minute, decide_by.second, decide_by.microsecond) == (0, 0, 0)
    await approval.execute_update(
        ApprovalWorkflow.decide, ApprovalDecision("mgr-hana", "reject", "too generous")
    )
    await run.result()
