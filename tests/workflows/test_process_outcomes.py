"""Automations chained on the built-in processes' outcomes, end to end on the time-skipping
server: an onboarding that stalls enrols its customer in the tenant's automation on
``crmflow.onboarding``, once, and in no other tenant's; a resolved ticket enrols it in the
automation on ``crmflow.ticket``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import yaml
from sqlmodel import select
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import ActivityEnvironment

from activities.process_outcomes import OutcomeActivities
from crm.automations.validation import parse_definition
from crm.policy import Policy
from crm.store.automations import change_state, save_version
from crm.store.db import Database
from crm.store.models import Task, WebhookEvent
from tests.support.automations import EXAMPLES
from tests.support.onboarding import inbox, onboarding_input, send_event, tasks_of, wait_for_stage
from tests.support.sla import send_event as send_ticket_event
from tests.support.sla import start_ticket, ticket_input
from tests.support.stack import Stack
from workflows.automation import AutomationWorkflow
from workflows.automation_types import automation_run_id
from workflows.common import CUSTOMER_ID
from workflows.contracts import OutcomeEvent
from workflows.onboarding import OnboardingWorkflow
from workflows.onboarding_types import OnboardingInput, onboarding_id
from workflows.sla import TicketSlaWorkflow

RESCUE = "stalled-onboarding-rescue"


async def activate_example(database: Database, tenant: str | None, name: str) -> None:
    """Store the shipped example ``name`` as the tenant's active automation."""
    document: dict[str, Any] = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    definition = parse_definition(document, Policy())

    def store(session: Any) -> None:
        save_version(session, tenant, definition, document, "test")
        change_state(session, tenant, definition.id, "activate")

    await database.run(store)


async def stall(stack: Stack, customer: OnboardingInput, tenant: str) -> None:
    """Run the tenant's onboarding of ``customer`` until it stalls with one milestone."""
    handle = await stack.client.start_workflow(
        OnboardingWorkflow.run,
        customer,
        id=f"{onboarding_id(customer.customer_id)}@{tenant}",
        task_queue=stack.task_queue,
        memo={"tenant": tenant},
    )
    await wait_for_stage(handle, "awaiting_milestones")
    await stack.env.sleep(timedelta(days=1))
    await send_event(handle, "account_configured")
    result = await handle.result()
    assert result.outcome == "stalled"
    state = await handle.query(OnboardingWorkflow.state)
    [offered] = [step for step in state.steps if step.step == "offered:outcome"]
    rescue_run = automation_run_id(RESCUE, "crmflow.onboarding", customer.customer_id, tenant)
    assert offered.detail == f"stalled: {rescue_run}"


async def test_a_stalled_onboarding_enrols_its_customer_in_the_tenants_rescue(
    stack: Stack,
) -> None:
    await activate_example(stack.database, "acme", RESCUE)
    await activate_example(stack.database, "globex", RESCUE)
    customer = onboarding_input()

    await stall(stack, customer, "acme")

    run_id = automation_run_id(RESCUE, "crmflow.onboarding", customer.customer_id, "acme")
    run: WorkflowHandle[Any, Any] = stack.client.get_workflow_handle_for(
        AutomationWorkflow.run, run_id
    )
    result = await run.result()
    assert result.outcome == "completed"
    emails = [m for m in inbox(stack.maildir, customer) if "Can we help" in m.subject]
    assert [m.subject for m in emails] == ["Can we help you get started, Acme Corp?"]
    tasks = await tasks_of(stack.database, customer.customer_id)
    [rescue] = [task for task in tasks if task.title.startswith("Rescue call")]
    [kickoff] = [task for task in tasks if task.kind == "kickoff"]
    assert rescue.title == "Rescue call with Acme Corp"
    assert rescue.assignee_id == kickoff.assignee_id  # the onboarding's CSM
    assert rescue.detail == "Milestones reached: account_configured."
    globex_run = automation_run_id(RESCUE, "crmflow.onboarding", customer.customer_id, "globex")
    with pytest.raises(RPCError) as missing:
        await stack.client.get_workflow_handle(globex_run).describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND


async def test_an_outcome_offered_again_enrols_nobody_twice(stack: Stack) -> None:
    """A retried offer is the same record event: its receipt answers it, even for an
    automation that lets a record enrol again once its run ended."""
    document: dict[str, Any] = yaml.safe_load((EXAMPLES / f"{RESCUE}.yaml").read_text())
    document["enrollment"] = {"reenroll": True}
    definition = parse_definition(document, Policy())
    await stack.database.run(
        lambda session: (
            save_version(session, "acme", definition, document, "test"),
            change_state(session, "acme", RESCUE, "activate"),
        )
    )
    customer = onboarding_input()
    activities = OutcomeActivities(stack.database, Policy(), stack.task_queue)
    offer = OutcomeEvent(
        event_id=f"onboarding-{customer.customer_id}@acme/offer_outcome@run-1",
        process="onboarding",
        record_id=customer.customer_id,
        outcome="stalled",
        occurred_at=await stack.env.get_current_time(),
        record={
            "company_name": "Acme Corp",
            "contact_name": "Ann Lee",
            "contact_email": customer.contact_email,
            "csm_id": "csm-ana",
            "milestones": [],
        },
        tenant="acme",
    )
    environment = ActivityEnvironment(stack.client)

    first = await environment.run(activities.offer_outcome, offer)
    run_id = automation_run_id(RESCUE, "crmflow.onboarding", customer.customer_id, "acme")
    assert first.enrolled == [run_id]
    handle = stack.client.get_workflow_handle(run_id)
    await handle.result()
    first_run = (await handle.describe()).run_id
    again = await environment.run(activities.offer_outcome, offer)

    assert again == first
    assert (await handle.describe()).run_id == first_run  # no second run began


async def test_a_resolved_ticket_enrols_it_in_the_automation_on_crmflow_ticket(
    stack: Stack,
) -> None:
    """The SLA workflow (process ``sla``) publishes its outcomes as a ticket's."""
    document: dict[str, Any] = {
        "id": "resolved-ticket-follow-up",
        "name": "Follow up a resolved ticket",
        "object": "crmflow.ticket",
        "trigger": {"types": ["resolved"]},
        "steps": [
            {
                "id": "follow_up",
                "task": {
                    "assignee": {"field": "assignee_id"},
                    "title": "Ask how '{{ record.subject }}' went",
                    "due": {"amount": 1, "unit": "business_days"},
                },
            }
        ],
    }
    definition = parse_definition(document, Policy())
    await stack.database.run(
        lambda session: (
            save_version(session, None, definition, document, "test"),
            change_state(session, None, definition.id, "activate"),
        )
    )
    ticket = ticket_input(priority="high")
    handle = await start_ticket(stack.client, stack.task_queue, ticket)
    await send_ticket_event(handle, "agent_replied")
    await send_ticket_event(handle, "resolved")
    await handle.result()

    run_id = automation_run_id(definition.id, "crmflow.ticket", ticket.ticket_id, None)
    state = await handle.query(TicketSlaWorkflow.state)
    [offered] = [step for step in state.steps if step.step == "offered:outcome"]
    assert offered.detail == f"resolved: {run_id}"
    run: WorkflowHandle[Any, Any] = stack.client.get_workflow_handle_for(
        AutomationWorkflow.run, run_id
    )
    assert (await run.result()).outcome == "completed"
    # The run is for the ticket's customer (RECORD_CUSTOMER), not for the ticket: on the
    # customer's timeline, and the customer of its task and of its events.
    assert ticket.customer_id != ticket.ticket_id
    described = await run.describe()
    assert described.typed_search_attributes.get(CUSTOMER_ID) == ticket.customer_id
    [task] = await stack.database.all(select(Task).where(Task.process_id == run_id))
    assert task.customer_id == ticket.customer_id
    events = await stack.database.all(select(WebhookEvent).where(WebhookEvent.process_id == run_id))
    assert {event.type for event in events} >= {"automation.enrolled", "automation.completed"}
    assert {event.data["customer_id"] for event in events} == {ticket.customer_id}
    automation = [event for event in events if event.type.startswith("automation.")]
    assert {event.data["record_id"] for event in automation} == {ticket.ticket_id}
