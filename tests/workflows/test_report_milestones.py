"""The milestones the reports count, emitted by the processes on the time-skipping server
and stored as facts: an onboarding's start and each milestone with the time since the
start, a renewal term's start, its upsell offered and accepted, a lead's first contact."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import col, select

from crm.policy import Policy
from crm.store.models import ProcessOutcome, RenewalTerm
from tests.support.lead import lead_input, start_lead, zone_at_local_hour
from tests.support.onboarding import onboarding_input, send_event, start_onboarding, wait_for_stage
from tests.support.renewal import days, next_run_id, renewal_input, report_usage
from tests.support.stack import Stack
from workflows.common import ProcessEvent
from workflows.renewal import RenewalWorkflow
from workflows.renewal_types import renewal_id


async def facts_of(stack: Stack, process_id: str) -> list[ProcessOutcome]:
    return await stack.database.all(
        select(ProcessOutcome)
        .where(ProcessOutcome.process_id == process_id)
        .order_by(col(ProcessOutcome.id))
    )


async def test_an_onboarding_emits_its_start_and_each_milestone_with_the_time_since_start(
    stack: Stack,
) -> None:
    customer = onboarding_input()
    handle = await start_onboarding(stack.client, stack.task_queue, customer)
    await wait_for_stage(handle, "awaiting_milestones")
    await stack.env.sleep(timedelta(days=2))
    await send_event(handle, "account_configured")
    await stack.env.sleep(timedelta(days=1))
    await send_event(handle, "first_value")
    result = await handle.result()

    facts = await facts_of(stack, handle.id)
    kinds = [fact.outcome for fact in facts]
    assert kinds == ["started", "milestone_reached", "milestone_reached", "activated"]
    started, configured, first_value, _ = facts
    assert (started.plan, started.owner_id) == ("starter", result.csm_id)
    assert configured.detail["milestone"] == "account_configured"
    assert configured.owner_id == result.csm_id
    # The test server's clock moves in jumps: within a minute of two and three days.
    assert abs(configured.detail["seconds_since_start"] - 2 * 86400) < 60
    assert first_value.detail["milestone"] == "first_value"
    assert abs(first_value.detail["seconds_since_start"] - 3 * 86400) < 60


async def test_a_renewal_term_emits_its_start_and_an_upsell_offered_then_accepted(
    stack: Stack,
) -> None:
    now = await stack.env.get_current_time()
    term = renewal_input(now + days(70), plan="starter", owner="csm-ana")
    await report_usage(stack.database, term.subscription_id, used=90, included=100, at=now)
    handle = await stack.client.start_workflow(
        RenewalWorkflow.run, term, id=renewal_id(term.subscription_id), task_queue=stack.task_queue
    )
    await stack.env.sleep(days(12))  # past the 60-day analysis: starter is offered growth
    await handle.signal(RenewalWorkflow.event, ProcessEvent("renewed", {"plan": "growth"}))
    await next_run_id(handle)
    await stack.client.get_workflow_handle(handle.id).terminate("the second term is not tested")

    facts = [fact for fact in await facts_of(stack, handle.id) if fact.detail.get("term") == 1]
    by_kind = {fact.outcome: fact for fact in facts}
    assert {"term_started", "upsell_offered", "upsell_accepted", "renewed"} <= set(by_kind)
    started = by_kind["term_started"]
    assert (started.plan, started.owner_id, started.annual_value) == ("starter", "csm-ana", 24000)
    assert started.detail["renewal_date"] == term.renewal_date.isoformat()
    assert by_kind["upsell_offered"].detail["offered_plan"] == "growth"
    assert by_kind["upsell_accepted"].detail["offered_plan"] == "growth"
    [first] = await stack.database.all(
        select(RenewalTerm).where(RenewalTerm.process_id == handle.id, RenewalTerm.term == 1)
    )
    assert (first.outcome, first.annual_value) == ("renewed", 24000)


async def test_a_lead_in_the_follow_up_sequence_is_first_contacted_by_the_first_email(
    stack: Stack,
) -> None:
    zone = zone_at_local_hour(await stack.env.get_current_time(), 10)  # mail goes out at once
    lead = lead_input(Policy(), timezone=zone, source="webinar", country="DE")
    handle = await start_lead(stack.client, stack.task_queue, lead)
    await stack.env.sleep(timedelta(days=3))
    await handle.signal("event", ProcessEvent("replied"))
    await handle.result()

    facts = await facts_of(stack, handle.id)
    [contacted] = [fact for fact in facts if fact.outcome == "first_contacted"]
    assert contacted.detail["channel"] == "email"
    assert 0 <= contacted.detail["seconds_since_arrival"] < 60
    assert [fact.outcome for fact in facts].index("first_contacted") < [
        fact.outcome for fact in facts
    ].index("routed")
