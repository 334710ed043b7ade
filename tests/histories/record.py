"""Record the histories that CI replays against the current workflow code.

    .venv/bin/python -m tests.histories.record            # every scenario
    .venv/bin/python -m tests.histories.record onboarding-stalled

Each scenario runs a process to its end on a time-skipping test server of its
own with the real activities (a temporary SQLite database, a local SMTP sink and
the local enrichment provider) and writes ``tests/histories/<scenario>.json``;
a scenario is named ``<process>-<what happens>``. The worker and the inputs use
``RECORDING_POLICY``: the default policy plus an enterprise SLA tier that moves
breached tickets to another pool, so the reassignment path is recorded too.
Re-record only for a deliberate change of behaviour that is rolled out with
``workflow.patched`` (see the README, "Changing a workflow safely"); the old
recordings must keep replaying until no run of the old code is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import time, timedelta
from pathlib import Path
from typing import Any

from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.webhook_delivery import emit_event
from crm.platform.codec import new_codec_key
from crm.platform.settings import Settings
from crm.platform.temporal import time_skipping_server
from crm.policy import Policy
from crm.policy.sla import SlaPolicy, SlaTierOverride
from crm.store.automations import change_state, normalized, save_version
from crm.store.db import Database
from crm.store.models import Task, UsageReport
from crm.store.task_completion import complete_task
from crm.store.webhooks import Emitted, create_endpoint
from devstack.enrichment_provider import create_provider_app
from devstack.mailsink import MailSink
from tests.conftest import eventually
from tests.support.automations import example, record_event, start_run, tasks_for_record
from tests.support.lead import lead_input, start_lead, zone_at_local_hour
from tests.support.lead import send_event as send_lead_event
from tests.support.receivers import Planned, running_receiver
from tests.support.renewal import (
    approval_input,
    approver,
    days,
    next_run_id,
    outcome_held,
    renewal_input,
    report_usage,
)
from tests.support.servers import free_port, run_asgi_server
from tests.support.sla import STOCKHOLM, next_local, on_day, sleep_until, start_ticket, ticket_input
from tests.support.sla import send_event as send_ticket_event
from worker.main import running_worker
from workflows.approval import ApprovalWorkflow
from workflows.approval_types import ApprovalDecision, approval_id
from workflows.attention_types import AttentionWatch
from workflows.attention_watch import AttentionWatchWorkflow
from workflows.automation import AutomationWorkflow
from workflows.automation_types import automation_run_id
from workflows.common import SEARCH_ATTRIBUTES, ProcessEvent
from workflows.digest import DailyDigestWorkflow
from workflows.digest_types import DigestInput
from workflows.lead import LeadWorkflow
from workflows.onboarding import OnboardingWorkflow
from workflows.onboarding_types import OnboardingInput
from workflows.renewal import RenewalWorkflow
from workflows.renewal_types import renewal_id
from workflows.task_types import TASK_CHANGED, TaskChange
from workflows.webhook_types import dispatch_id

HISTORIES = Path(__file__).parent

#: The default policy, plus an enterprise tier whose breached tickets move to the senior pool.
RECORDING_POLICY = Policy(
    sla=SlaPolicy(tiers={"enterprise": SlaTierOverride(reassign_pool="support-senior")})
)

Handle = WorkflowHandle[Any, Any]


@dataclass
class Recording:
    """What a scenario drives: its own time-skipping server, the worker's queue and database."""

    env: WorkflowEnvironment
    task_queue: str
    database: Database
    policy: Policy
    #: (recording, may_record) of a worker whose audit write of a term's outcome waits
    #: (tests.support.renewal.outcome_held), for the scenarios in HELD_OUTCOME
    held: tuple[asyncio.Event, asyncio.Event] | None = None

    @property
    def client(self) -> Client:
        return self.env.client


#: Runs one process to its end; returns a handle on the run whose history is recorded.
Scenario = Callable[[Recording], Awaitable[Handle]]


# Onboarding


async def _start_onboarding(env: WorkflowEnvironment, task_queue: str, customer_id: str) -> Handle:
    handle = await env.client.start_workflow(
        OnboardingWorkflow.run,
        OnboardingInput(
            customer_id=customer_id,
            company_name="Initech",
            contact_name="Peter Gibbons",
            contact_email="peter@initech-software.com",
            plan="growth",
            csm_pool="csm-smb",
        ),
        id=f"onboarding-{customer_id}",
        task_queue=task_queue,
    )
    await _until_stage(handle, "awaiting_milestones")
    return handle


async def _until_stage(handle: WorkflowHandle[Any, Any], stage: str) -> None:
    for _ in range(200):
        state = await handle.query(OnboardingWorkflow.state)
        if state.stage == stage:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{handle.id} never reached stage {stage}")


async def onboarding_activated(rec: Recording) -> Handle:
    env = rec.env
    handle = await _start_onboarding(env, rec.task_queue, "rec-activated")
    await env.sleep(timedelta(days=4))
    await handle.signal(OnboardingWorkflow.event, ProcessEvent("account_configured"))
    await env.sleep(timedelta(days=1))
    await handle.signal(OnboardingWorkflow.event, ProcessEvent("first_value", {"feature": "x"}))
    await handle.result()
    return handle


async def onboarding_stalled(rec: Recording) -> Handle:
    handle = await _start_onboarding(rec.env, rec.task_queue, "rec-stalled")
    await handle.result()
    return handle


async def onboarding_stalled_rescued(rec: Recording) -> Handle:
    """A stall offered to an active automation on ``crmflow.onboarding``, which enrols it."""
    definition = example("stalled-onboarding-rescue")
    document = normalized(definition)
    await rec.database.run(
        lambda session: (
            save_version(session, None, definition, document, "recording"),
            change_state(session, None, definition.id, "activate"),
        )
    )
    handle = await _start_onboarding(rec.env, rec.task_queue, "rec-stalled-rescued")
    await handle.result()
    return handle


async def onboarding_cancelled(rec: Recording) -> Handle:
    handle = await _start_onboarding(rec.env, rec.task_queue, "rec-cancelled")
    await rec.env.sleep(timedelta(days=8))
    await handle.cancel()
    with contextlib.suppress(WorkflowFailureError):  # the run ends cancelled
        await handle.result()
    return handle


# Ticket SLA (business hours in Stockholm: the clocks count 09:00-17:00 on weekdays)


async def sla_escalated(rec: Recording) -> Handle:
    """An enterprise ticket raised to high: warned, breached (reassigned), escalated, resolved."""
    monday = next_local(await rec.env.get_current_time(), "mon", time(9), STOCKHOLM)
    await sleep_until(rec.env, monday)
    ticket = ticket_input(
        created_at=monday, timezone=STOCKHOLM, policy=rec.policy, tier="enterprise"
    )
    handle = await start_ticket(rec.client, rec.task_queue, ticket)
    # Two hours used of 8; high allows 4 to respond (warning 12:00, breach 13:00,
    # manager 15:00) and 8 to resolve (warning 15:00).
    await sleep_until(rec.env, on_day(monday, 0, time(11), STOCKHOLM))
    await send_ticket_event(handle, "priority_changed", priority="high")
    await sleep_until(rec.env, on_day(monday, 0, time(15, 10), STOCKHOLM))
    await send_ticket_event(handle, "agent_replied")
    await sleep_until(rec.env, on_day(monday, 0, time(15, 20), STOCKHOLM))
    await send_ticket_event(handle, "resolved")
    await handle.result()
    return handle


async def sla_paused_met(rec: Recording) -> Handle:
    """A ticket pending the customer over the weekend, answered and resolved in time."""
    friday = next_local(await rec.env.get_current_time(), "fri", time(15), STOCKHOLM)
    await sleep_until(rec.env, friday)
    ticket = ticket_input(created_at=friday, timezone=STOCKHOLM, policy=rec.policy)
    handle = await start_ticket(rec.client, rec.task_queue, ticket)
    await sleep_until(rec.env, on_day(friday, 0, time(16), STOCKHOLM))
    await send_ticket_event(handle, "status_changed", status="pending_customer")
    await sleep_until(rec.env, on_day(friday, 3, time(11), STOCKHOLM))
    await send_ticket_event(handle, "status_changed", status="open")
    await sleep_until(rec.env, on_day(friday, 3, time(11, 30), STOCKHOLM))
    await send_ticket_event(handle, "agent_replied")
    await sleep_until(rec.env, on_day(friday, 3, time(14), STOCKHOLM))
    await send_ticket_event(handle, "resolved")
    await handle.result()
    return handle


# Ticket SLA under SLA policies (the sla-policies patch)

#: The SLA policies the recorded tickets run under: a chat policy with a next-reply clock and
#: periodic updates, and a Manila team policy with a four-level resolution ladder.
SLA_POLICIES = Policy(
    sla=SlaPolicy.model_validate(
        {
            "calendars": {"manila": {"timezone": "Asia/Manila"}},
            "policies": [
                {
                    "name": "chat",
                    "when": {"tags": ["chat"]},
                    "clocks": {
                        "first_response": {"targets": {"normal": "1h", "high": "30m"}},
                        "next_reply": {
                            "targets": {"normal": "1h", "high": "30m"},
                            "ladder": [
                                {"name": "reminder", "at": "-10m"},
                                {
                                    "name": "breach",
                                    "at": "100%",
                                    "action": "notify_role",
                                    "role": "team_lead",
                                },
                            ],
                        },
                        "periodic_update": {"targets": {"normal": "3h", "high": "2h"}},
                        "resolution": {"targets": {"normal": "24h", "high": "8h"}},
                    },
                },
                {
                    "name": "manila",
                    "when": {"group": ["manila"]},
                    "clocks": {
                        "resolution": {
                            "targets": {"normal": "4h"},
                            "ladder": [
                                {"name": "reminder", "at": "-1h"},
                                {
                                    "name": "breach",
                                    "at": "100%",
                                    "action": "notify_role",
                                    "role": "team_lead",
                                },
                                {
                                    "name": "senior",
                                    "at": "+1h",
                                    "action": "reassign",
                                    "group": "support-senior",
                                },
                                {
                                    "name": "manager",
                                    "at": "150%",
                                    "action": "notify_role",
                                    "role": "manager",
                                },
                            ],
                        }
                    },
                },
            ],
        }
    )
)


async def _start_policy_ticket(rec: Recording, **fields: Any) -> tuple[Handle, Any]:
    monday = next_local(await rec.env.get_current_time(), "mon", time(9), STOCKHOLM)
    await sleep_until(rec.env, monday)
    ticket = ticket_input(
        created_at=monday, timezone=STOCKHOLM, policy=SLA_POLICIES, with_policies=True, **fields
    )
    return await start_ticket(rec.client, rec.task_queue, ticket), monday


async def sla_policies_next_reply(rec: Recording) -> Handle:
    """A chat ticket: answered, three customer replies (one answered late, a reminder and a
    breach), an internal note, a raised priority, on hold over lunch, solved."""
    handle, monday = await _start_policy_ticket(rec, tags=["chat"])
    timeline: list[tuple[tuple[int, int], str, dict[str, Any]]] = [
        ((9, 20), "agent_replied", {}),
        ((10, 0), "customer_replied", {}),
        ((10, 30), "agent_replied", {}),
        ((11, 0), "customer_replied", {}),
        ((11, 10), "agent_replied", {"public": False}),
        ((12, 15), "agent_replied", {}),
        ((12, 30), "fields_changed", {"priority": "high"}),
        ((12, 40), "status_changed", {"status": "on_hold"}),
        ((13, 30), "status_changed", {"status": "open"}),
        ((13, 40), "customer_replied", {}),
        ((14, 5), "agent_replied", {}),  # 5 minutes after the reminder
        ((14, 30), "status_changed", {"status": "solved"}),
    ]
    for (hour, minute), name, data in timeline:
        await sleep_until(rec.env, on_day(monday, 0, time(hour, minute), STOCKHOLM))
        await send_ticket_event(handle, name, **data)
    await handle.result()
    return handle


async def sla_policies_first_response_breached(rec: Recording) -> Handle:
    """A chat ticket nobody answers until its first response has breached: answered at
    10:30, solved at 10:45."""
    handle, monday = await _start_policy_ticket(rec, tags=["chat"])
    await sleep_until(rec.env, on_day(monday, 0, time(10, 30), STOCKHOLM))
    await send_ticket_event(handle, "agent_replied")
    await sleep_until(rec.env, on_day(monday, 0, time(10, 45), STOCKHOLM))
    await send_ticket_event(handle, "status_changed", status="solved")
    await handle.result()
    return handle


async def sla_policies_late_events(rec: Recording) -> Handle:
    """A chat ticket whose helpdesk delivers events late: the customer's 10:00 reply at
    10:40 (its clock due at 11:00), the agent's 10:55 answer at 11:30, after the breach was
    acted on (counted from it); a reply on time; resolved."""
    handle, monday = await _start_policy_ticket(rec, tags=["chat"])
    timeline: list[tuple[tuple[int, int], tuple[int, int], str]] = [
        ((9, 20), (9, 20), "agent_replied"),
        ((10, 0), (10, 40), "customer_replied"),
        ((10, 55), (11, 30), "agent_replied"),
        ((12, 0), (12, 0), "customer_replied"),
        ((12, 10), (12, 12), "agent_replied"),
        ((13, 0), (13, 0), "resolved"),
    ]
    for happened, delivered, name in timeline:
        await sleep_until(rec.env, on_day(monday, 0, time(*delivered), STOCKHOLM))
        occurred_at = on_day(monday, 0, time(*happened), STOCKHOLM)
        await send_ticket_event(handle, name, occurred_at=occurred_at)
    await handle.result()
    return handle


async def sla_policies_ladder_regrouped(rec: Recording) -> Handle:
    """A ticket moved to the Manila team at 10:00 (re-matched, timed in Manila): its four
    resolution levels remind, escalate, reassign and reach the manager; then resolved."""
    handle, monday = await _start_policy_ticket(rec, group="stockholm")
    await sleep_until(rec.env, on_day(monday, 0, time(10), STOCKHOLM))
    await send_ticket_event(handle, "fields_changed", group="manila")
    await sleep_until(rec.env, on_day(monday, 1, time(9), STOCKHOLM))
    await send_ticket_event(handle, "resolved")
    await handle.result()
    return handle


# Approval


async def _start_approval(rec: Recording, *chain: Any) -> Handle:
    request = approval_input(*chain)
    return await rec.client.start_workflow(
        ApprovalWorkflow.run,
        request,
        id=approval_id(request.subject_id),
        task_queue=rec.task_queue,
    )


async def approval_decided(rec: Recording) -> Handle:
    """A refused decision signal, then the first approver approves by update."""
    handle = await _start_approval(rec, approver("mgr-hana", hours=24), approver("fin-olga"))
    await rec.env.sleep(timedelta(hours=2))
    await handle.signal("decide", ApprovalDecision("csm-ben", "approve"))  # not the approver
    await handle.execute_update(
        ApprovalWorkflow.decide, ApprovalDecision("mgr-hana", "approve", "worth it")
    )
    await handle.result()
    return handle


async def approval_expired(rec: Recording) -> Handle:
    """Nobody decides: the request escalates to finance, then expires."""
    handle = await _start_approval(
        rec,
        approver("mgr-hana", hours=24),
        approver("fin-olga", hours=48, delegate_id="fin-ravi"),
    )
    await handle.result()
    return handle


# Renewal


async def _start_renewal(rec: Recording, term: Any) -> Handle:
    return await rec.client.start_workflow(
        RenewalWorkflow.run,
        term,
        id=renewal_id(term.subscription_id),
        task_queue=rec.task_queue,
    )


async def renewal_auto_renewed(rec: Recording) -> Handle:
    """A year of reminders, an upsell whose discount a child approval approves, auto-renewal.

    The recorded history is the first term's; the run continues as new, and the
    second term is terminated.
    """
    now = await rec.env.get_current_time()
    term = renewal_input(now + days(365), policy=rec.policy, plan="growth", auto_renew=True)
    await report_usage(rec.database, term.subscription_id, used=45, included=50, at=now)
    handle = await _start_renewal(rec, term)
    await rec.env.sleep(days(306))  # past the 60-day mark: the approval waits
    state = await handle.query(RenewalWorkflow.state)
    approval = rec.client.get_workflow_handle_for(
        ApprovalWorkflow.run, state.details["approval_id"]
    )
    await approval.execute_update(
        ApprovalWorkflow.decide, ApprovalDecision("mgr-hana", "approve", "worth it")
    )
    await next_run_id(handle)
    await rec.client.get_workflow_handle(handle.id).terminate("recorded the first term")
    return rec.client.get_workflow_handle(handle.id, run_id=handle.result_run_id)


async def renewal_lapsed(rec: Recording) -> Handle:
    """A term started late (a reminder skipped), an upsell offered, the date moved, a lapse."""
    now = await rec.env.get_current_time()
    term = renewal_input(now + days(40), policy=rec.policy, plan="starter", auto_renew=False)
    await report_usage(rec.database, term.subscription_id, used=90, included=100, at=now)
    handle = await _start_renewal(rec, term)
    await rec.env.sleep(days(5))
    moved = term.renewal_date + days(10)
    await handle.signal(
        RenewalWorkflow.event,
        ProcessEvent("renewal_date_changed", {"renewal_date": moved.isoformat()}),
    )
    await handle.result()
    return handle


async def renewal_upsell_accepted(rec: Recording) -> Handle:
    """A starter term offered growth at the 60-day analysis (no approval for its 10%), then
    renewed on growth: the upsell accepted. The recorded history is the first term's; the
    second term is terminated."""
    now = await rec.env.get_current_time()
    term = renewal_input(now + days(70), policy=rec.policy, plan="starter", auto_renew=False)
    await report_usage(rec.database, term.subscription_id, used=90, included=100, at=now)
    handle = await _start_renewal(rec, term)
    await rec.env.sleep(days(12))  # past the 60-day mark: the offer is out
    await handle.signal(RenewalWorkflow.event, ProcessEvent("renewed", {"plan": "growth"}))
    await next_run_id(handle)
    await rec.client.get_workflow_handle(handle.id).terminate("recorded the first term")
    return rec.client.get_workflow_handle(handle.id, run_id=handle.result_run_id)


async def renewal_signed_second_term(rec: Recording) -> Handle:
    """The second term of a subscription signed on a bigger plan: it confirms the renewal,
    then the customer cancels. The recorded history is the second term's."""
    now = await rec.env.get_current_time()
    term = renewal_input(now + days(20), policy=rec.policy, plan="growth", auto_renew=False)
    first = await _start_renewal(rec, term)
    signed = {"plan": "enterprise", "annual_value": 30000}
    await first.signal(RenewalWorkflow.event, ProcessEvent("renewed", signed))
    second_run = await next_run_id(first)
    second = rec.client.get_workflow_handle_for(RenewalWorkflow.run, first.id, run_id=second_run)
    await rec.env.sleep(days(1))
    await second.signal(RenewalWorkflow.event, ProcessEvent("cancelled", {"reason": "budget"}))
    await second.result()
    return second


async def renewal_cancelled_as_it_renews(rec: Recording) -> Handle:
    """A cancellation that arrives while an auto-renewed term records its outcome is
    carried into the next term (patch carry-late-events). The recorded history is the
    first term's."""
    assert rec.held is not None
    recording, may_record = rec.held
    now = await rec.env.get_current_time()
    term = renewal_input(now + days(20), policy=rec.policy, plan="growth", auto_renew=True)
    handle = await _start_renewal(rec, term)
    past_the_date = asyncio.create_task(rec.env.sleep(days(21)))  # skips beside the held write
    await asyncio.wait_for(recording.wait(), 30)
    await handle.signal(RenewalWorkflow.event, ProcessEvent("cancelled", {"reason": "budget"}))

    async def last_step() -> str:
        return (await handle.query(RenewalWorkflow.state)).steps[-1].step

    await eventually(last_step, lambda step: step == "carried:cancelled")
    may_record.set()
    await past_the_date
    await next_run_id(handle)
    return rec.client.get_workflow_handle(handle.id, run_id=handle.result_run_id)


async def renewal_tenant_discount_approval(rec: Recording) -> Handle:
    """A tenant's term: the upsell discount is approved by a child approval under an id of
    the tenant's own (the tenant-approval-ids patch), the offer goes out, and the term lapses."""
    now = await rec.env.get_current_time()
    term = renewal_input(now + days(100), policy=rec.policy, plan="growth", auto_renew=False)
    report = UsageReport(
        subscription_id=term.subscription_id,
        metric="seats",
        used=95,
        included=100,
        reported_at=now,
        tenant="acme",
    )
    await rec.database.run(lambda session: session.add(report))
    handle = await rec.client.start_workflow(
        RenewalWorkflow.run,
        term,
        id=f"{renewal_id(term.subscription_id)}@acme",
        task_queue=rec.task_queue,
        memo={"tenant": "acme"},
    )
    await rec.env.sleep(days(41))  # the approval is asked at day 40
    state = await handle.query(RenewalWorkflow.state)
    approval = rec.client.get_workflow_handle_for(
        ApprovalWorkflow.run, state.details["approval_id"]
    )
    await approval.execute_update(
        ApprovalWorkflow.decide, ApprovalDecision("mgr-hana", "approve", "worth it")
    )
    await handle.result()
    return handle


# Lead qualification (scored by source: a webinar lead is medium and gets the sequence)


async def _start_webinar_lead(rec: Recording) -> Handle:
    zone = zone_at_local_hour(await rec.env.get_current_time(), 10)  # mail goes out at once
    lead = lead_input(rec.policy, timezone=zone, source="webinar", country="DE")
    return await start_lead(rec.client, rec.task_queue, lead)


async def lead_unresponsive(rec: Recording) -> Handle:
    """No reply to the first touch and three follow-ups: unresponsive at day 14."""
    handle = await _start_webinar_lead(rec)
    await handle.result()
    return handle


async def lead_routed(rec: Recording) -> Handle:
    """A reply after the first follow-up: re-scored high and routed to a rep."""
    handle = await _start_webinar_lead(rec)
    await rec.env.sleep(timedelta(days=3))
    await send_lead_event(handle, "replied")
    await handle.result()
    return handle


async def lead_cancelled_after_routing(rec: Recording) -> Handle:
    """A demo request routed at once, cancelled while the rep's email waits for the relay."""
    zone = zone_at_local_hour(await rec.env.get_current_time(), 10)
    lead = lead_input(rec.policy, timezone=zone, source="demo_request", country="DE")
    handle = await start_lead(rec.client, rec.task_queue, lead)
    await eventually(
        lambda: handle.query(LeadWorkflow.state),
        lambda state: "task:call_lead" in [step.step for step in state.steps],
    )
    await handle.cancel(reason="duplicate lead")
    with contextlib.suppress(WorkflowFailureError):  # the run ends cancelled
        await handle.result()
    return handle


# Automations


async def automation_deal_escalated(rec: Recording) -> Handle:
    """deal-won-handoff: the manager told, a handoff task, no onboarding in 2 business days."""
    definition = example("deal-won-handoff", rec.policy)
    deal = {"name": "Initech", "stage": "won", "amount": 48000, "owner_id": "csm-ana"}
    now = await rec.env.get_current_time()
    event = record_event(definition, "d-1", "updated", deal, {"stage": "proposal"}, at=now)
    handle = await start_run(rec.client, rec.task_queue, definition, event, rec.policy)
    await handle.result()
    return handle


async def automation_deal_early_event(rec: Recording) -> Handle:
    """deal-won-handoff: onboarding starts while the manager's email goes out, before the
    wait (EARLY_EVENTS): handed off without waiting."""
    definition = example("deal-won-handoff", rec.policy)
    deal = {"name": "Initech", "stage": "won", "amount": 48000, "owner_id": "csm-ana"}
    now = await rec.env.get_current_time()
    event = record_event(definition, "d-3", "updated", deal, {"stage": "proposal"}, at=now)
    handle = await start_run(rec.client, rec.task_queue, definition, event, rec.policy)
    started = {**deal, "onboarding_started": True}
    early = record_event(
        definition, "d-3", "updated", started, {"onboarding_started": None}, at=now
    )
    await handle.signal(AutomationWorkflow.record_event, early)
    await handle.result()
    return handle


async def automation_deal_cancelled(rec: Recording) -> Handle:
    """deal-won-handoff: cancelled while it waits for the onboarding; why is its outcome's
    reason, not a failed step (CANCELLED_NOT_FAILED)."""
    definition = example("deal-won-handoff", rec.policy)
    deal = {"name": "Initech", "stage": "won", "amount": 48000, "owner_id": "csm-ana"}
    now = await rec.env.get_current_time()
    event = record_event(definition, "d-4", "updated", deal, {"stage": "proposal"}, at=now)
    handle = await start_run(rec.client, rec.task_queue, definition, event, rec.policy)
    await rec.env.sleep(timedelta(hours=2))
    await handle.cancel(reason="deal dropped")
    with contextlib.suppress(WorkflowFailureError):
        await handle.result()
    return handle


async def automation_stale_deal_touched(rec: Recording) -> Handle:
    """stale-deal-nudge: an update restarts the wait (the run continues as new)."""
    definition = example("stale-deal-nudge", rec.policy)
    deal = {"name": "Initech", "stage": "qualified", "owner_id": "csm-ben"}
    now = await rec.env.get_current_time()
    created = record_event(definition, "d-2", "created", deal, at=now)
    handle = await start_run(rec.client, rec.task_queue, definition, created, rec.policy)
    await rec.env.sleep(timedelta(days=3))
    touched = record_event(definition, "d-2", "updated", deal, at=now + timedelta(days=3))
    await handle.signal(AutomationWorkflow.record_event, touched)
    first_run = handle.result_run_id
    latest = rec.client.get_workflow_handle(handle.id)
    await eventually(latest.describe, lambda run: run.run_id != first_run)
    return rec.client.get_workflow_handle(handle.id, run_id=first_run)


async def automation_csat_failed(rec: Recording) -> Handle:
    """csat-after-resolution: the feedback email, then a score that is not a number fails
    the branch on it, visibly."""
    definition = example("csat-after-resolution", rec.policy)
    ticket = {"subject": "Export", "status": "resolved", "requester_email": "ann@initech.example"}
    now = await rec.env.get_current_time()
    event = record_event(definition, "t-1", "updated", ticket, {"status": "open"}, at=now)
    handle = await start_run(rec.client, rec.task_queue, definition, event, rec.policy)
    await rec.env.sleep(timedelta(days=2, hours=1))
    reply = {**ticket, "csat_score": "bad"}
    score = record_event(definition, "t-1", "updated", reply, {"csat_score": None}, at=now)
    await handle.signal(AutomationWorkflow.record_event, score)
    await handle.result()
    return handle


async def _hot_lead_call(rec: Recording, lead_id: str) -> tuple[Handle, Task]:
    """A hot-lead-call run for ``lead_id``, and the call task it gave the owner."""
    definition = example("hot-lead-call", rec.policy)
    lead = {"name": f"Lead {lead_id.upper()}", "rating": "hot", "owner_id": "rep-eva"}
    now = await rec.env.get_current_time()
    event = record_event(definition, lead_id, "updated", lead, {"rating": "warm"}, at=now)
    handle = await start_run(rec.client, rec.task_queue, definition, event, rec.policy)
    [task] = await eventually(
        lambda: tasks_for_record(rec.database, lead_id), lambda tasks: len(tasks) == 1
    )
    return handle, task


async def automation_hot_lead_called(rec: Recording) -> Handle:
    """hot-lead-call: the owner completes the call task in time (a person, then the signal)."""
    handle, task = await _hot_lead_call(rec, "l-1")
    await rec.database.run(lambda session: complete_task(session, task.id or 0, "rep-eva"))
    change = TaskChange(task.id or 0, task.kind, "done", "rep-eva", "rep-eva", "called")
    await handle.signal(TASK_CHANGED, change)
    await handle.result()
    return handle


async def automation_hot_lead_untold(rec: Recording, *, called: bool) -> Handle:
    """hot-lead-call after the task-done-recheck patch, the run never told of the task:
    done by a person (read at the timeout: called) or not (the manager is told)."""
    handle, task = await _hot_lead_call(rec, "l-2")
    if called:
        await rec.database.run(lambda session: complete_task(session, task.id or 0, "rep-eva"))
    await handle.result()
    return handle


async def automation_discount_approved(rec: Recording) -> Handle:
    """big-deal-discount-approval: the owner's manager approves, the onboarding starts."""
    definition = example("big-deal-discount-approval", rec.policy)
    deal = {
        "name": "Initech",
        "amount": 48000.0,
        "discount": 25.0,
        "owner_id": "csm-ana",
        "customer_id": "c-initech",
        "company_name": "Initech",
        "contact_name": "Peter Gibbons",
        "contact_email": "peter@initech-software.com",
        "plan": "growth",
    }
    now = await rec.env.get_current_time()
    event = record_event(definition, "d-9", "updated", deal, {"discount": 10.0}, at=now)
    handle = await start_run(rec.client, rec.task_queue, definition, event, rec.policy)
    run_id = automation_run_id(definition.id, definition.object, "d-9")
    approval = rec.client.get_workflow_handle_for(
        ApprovalWorkflow.run, approval_id(f"{run_id}-approve_discount")
    )

    async def asked() -> bool:
        with contextlib.suppress(RPCError):
            state = await approval.query(ApprovalWorkflow.state)
            return any(entry.step == "email:approval_request" for entry in state.steps)
        return False

    await eventually(asked, bool)
    await approval.execute_update(
        ApprovalWorkflow.decide, ApprovalDecision("mgr-hana", "approve", "worth it")
    )
    await handle.result()
    return handle


async def automation_discount_approval(rec: Recording) -> Handle:
    """The approval big-deal-discount-approval's run asks for, due at the instant the run
    counted in business time (``Approver.decide_by``)."""
    await automation_discount_approved(rec)
    run_id = automation_run_id("big-deal-discount-approval", "deal", "d-9")
    return rec.client.get_workflow_handle_for(
        ApprovalWorkflow.run, approval_id(f"{run_id}-approve_discount")
    )


# Webhooks

#: The key that seals the recorded endpoints' secrets.
SEALING_KEYS = new_codec_key("record-1")


async def _dispatch(rec: Recording, planned: list[Planned | int], events: int) -> Handle:
    """Deliver ``events`` ticket breaches to one endpoint answering ``planned``; the
    endpoint's dispatch run, once it ended."""
    with running_receiver() as (receiver, base_url):
        receiver.planned["/hooks"] = planned
        endpoint, _ = await create_endpoint(
            rec.database,
            None,
            url=f"{base_url}/hooks",
            event_types=["ticket.*"],
            personal_data=False,
            enabled=True,
            codec_keys=SEALING_KEYS,
        )
        now = await rec.env.get_current_time()
        for number in range(events):
            event = Emitted(
                tenant=None,
                event_id=f"sla-T-{number}/breached",
                type="ticket.breached",
                process_id=f"sla-T-{number}",
                occurred_at=now,
                data={"ticket_id": f"T-{number}", "priority": "high"},
            )
            await emit_event(rec.client, rec.database, rec.task_queue, event)
        handle = rec.client.get_workflow_handle(dispatch_id(endpoint.endpoint_id))
        async with rec.env.time_skipping_unlocked():  # type: ignore[attr-defined]
            await handle.result()
    return handle


async def webhooks_retried_delivered(rec: Recording) -> Handle:
    """Two events: both answered 503, then one 429 with Retry-After, then all 200."""
    return await _dispatch(rec, [503, 503, Planned(429, {"Retry-After": "60"})], 2)


async def webhooks_endpoint_gone(rec: Recording) -> Handle:
    """A 410: the endpoint is disabled and the operator emailed."""
    return await _dispatch(rec, [410], 1)


# The attention watch


async def attention_raised(rec: Recording) -> Handle:
    """One overdue task: the watch raises it and emails the operator."""
    now = await rec.env.get_current_time()
    overdue = Task(
        key="onboarding-c-late/kickoff",
        process_id="onboarding-c-late",
        customer_id="c-late",
        assignee_id="csm-ana",
        kind="kickoff",
        title="Kickoff call",
        due_at=now - timedelta(hours=2),
    )
    await rec.database.run(lambda session: session.add(overdue))
    handle = await rec.client.start_workflow(
        AttentionWatchWorkflow.run,
        AttentionWatch(operator_email="ops@example.com"),
        id="attention-watch-record",
        task_queue=rec.task_queue,
    )
    await handle.result()
    return handle


async def digest_mornings(rec: Recording) -> Handle:
    """Two mornings of csm-ana's digest: one with an open task, one after it was done."""
    now = await rec.env.get_current_time()
    task = Task(
        key="onboarding-c-digest/kickoff",
        process_id="onboarding-c-digest",
        customer_id="c-digest",
        assignee_id="csm-ana",
        kind="kickoff",
        title="Kickoff call",
        due_at=now + timedelta(days=3),
    )
    await rec.database.run(lambda session: session.add(task))
    handle = await rec.client.start_workflow(
        DailyDigestWorkflow.run,
        DigestInput("csm-ana", "Europe/Stockholm", "08:00"),
        id="digest-csm-ana-record",
        task_queue=rec.task_queue,
    )
    await rec.env.sleep(timedelta(days=1))
    await rec.database.run(lambda session: complete_task(session, task.id or 0, "csm-ana"))
    await rec.env.sleep(timedelta(days=1))
    return handle


SCENARIOS: dict[str, Scenario] = {
    "onboarding-activated": onboarding_activated,
    "onboarding-stalled": onboarding_stalled,
    "onboarding-cancelled": onboarding_cancelled,
    # Recorded after the quiet-first-phase patch; the three above are from before it.
    "onboarding-activated-quiet-first-phase": onboarding_activated,
    "onboarding-stalled-quiet-first-phase": onboarding_stalled,
    "sla-escalated": sla_escalated,
    "sla-paused-met": sla_paused_met,
    "approval-decided": approval_decided,
    "approval-expired": approval_expired,
    # Recorded after the close-approval-tasks patch; the two above are from before it
    # and stay, so runs that began before the patch keep replaying.
    "approval-decided-tasks-closed": approval_decided,
    "approval-expired-tasks-closed": approval_expired,
    "renewal-auto-renewed": renewal_auto_renewed,
    "renewal-lapsed": renewal_lapsed,
    "renewal-signed-second-term": renewal_signed_second_term,
    "renewal-cancelled-as-it-renews": renewal_cancelled_as_it_renews,
    # Recorded after the tenant-approval-ids patch.
    "renewal-tenant-discount-approval": renewal_tenant_discount_approval,
    "lead-unresponsive": lead_unresponsive,
    "lead-routed": lead_routed,
    # Recorded after the free-rep-on-cancel patch.
    "lead-cancelled-after-routing": lead_cancelled_after_routing,
    "automation-deal-escalated": automation_deal_escalated,
    "automation-deal-early-event": automation_deal_early_event,
    "automation-deal-cancelled": automation_deal_cancelled,
    "automation-stale-deal-touched": automation_stale_deal_touched,
    "automation-csat-failed": automation_csat_failed,
    # Recorded after the outcome-events patch: each process offers its outcome.
    "onboarding-stalled-rescued": onboarding_stalled_rescued,
    "sla-escalated-outcomes-offered": sla_escalated,
    "approval-decided-outcome-offered": approval_decided,
    "renewal-lapsed-outcome-offered": renewal_lapsed,
    "lead-routed-outcome-offered": lead_routed,
    "automation-discount-approved": automation_discount_approved,
    # Recorded after the webhook-events patch: each process emits its milestones.
    "sla-escalated-webhook-events": sla_escalated,
    "approval-decided-webhook-events": approval_decided,
    "renewal-lapsed-webhook-events": renewal_lapsed,
    "lead-routed-webhook-events": lead_routed,
    "automation-deal-escalated-webhook-events": automation_deal_escalated,
    # Recorded after the sla-policies patch: tickets under SLA policies.
    "sla-policies-next-reply": sla_policies_next_reply,
    "sla-policies-ladder-regrouped": sla_policies_ladder_regrouped,
    "webhooks-retried-delivered": webhooks_retried_delivered,
    "webhooks-endpoint-gone": webhooks_endpoint_gone,
    "attention-raised": attention_raised,
    "digest-mornings": digest_mornings,
    "automation-hot-lead-called": automation_hot_lead_called,
    # Recorded after the report-milestones patch: the milestones the reports count.
    "onboarding-activated-report-milestones": onboarding_activated,
    "renewal-lapsed-report-milestones": renewal_lapsed,
    "renewal-upsell-accepted-report-milestones": renewal_upsell_accepted,
    "lead-routed-report-milestones": lead_routed,
    # Recorded after the sla-local-steps patch: a ticket's steps are local activities.
    "sla-escalated-local-steps": sla_escalated,
    "sla-policies-next-reply-local-steps": sla_policies_next_reply,
    "sla-policies-ladder-regrouped-local-steps": sla_policies_ladder_regrouped,
    # Recorded after the sla-event-times patch: events count from their occurred_at.
    "sla-policies-late-events": sla_policies_late_events,
    # Recorded after the sla-level-at-once patch: a level's steps start together.
    "sla-policies-next-reply-level-at-once": sla_policies_next_reply,
    "sla-policies-ladder-regrouped-level-at-once": sla_policies_ladder_regrouped,
    # Recorded after the sla-level-records and sla-floor-at-levels patches: a level's notice
    # or task and milestone are one local activity beside its email; a look that reaches no
    # level leaves the floor of late events where it was.
    "sla-policies-next-reply-level-records": sla_policies_next_reply,
    "sla-policies-ladder-regrouped-level-records": sla_policies_ladder_regrouped,
    "sla-policies-late-events-floor-at-levels": sla_policies_late_events,
    # Recorded after the sla-first-wait-rearmed patch: the first deadline's timer is set
    # again 10 s before it, from a task that does nothing else.
    "sla-policies-next-reply-first-wait-rearmed": sla_policies_next_reply,
    "sla-policies-ladder-regrouped-first-wait-rearmed": sla_policies_ladder_regrouped,
    "sla-policies-first-response-breached-first-wait-rearmed": (
        sla_policies_first_response_breached
    ),
    # Recorded after the task-done-recheck patch: a timed-out task wait reads the task.
    "automation-hot-lead-called-untold": functools.partial(automation_hot_lead_untold, called=True),
    "automation-hot-lead-not-called-recheck": functools.partial(
        automation_hot_lead_untold, called=False
    ),
    # Recorded after the record-customer patch: a run is for its record's customer.
    "automation-discount-approved-record-customer": automation_discount_approved,
    # Recorded after approvals took their deadline from the requester (Approver.decide_by).
    "approval-automation-decide-by": automation_discount_approval,
    # Recorded after a cancelled run closes its tasks (CANCELLED_CLOSES_TASKS).
    "automation-deal-cancelled-tasks-closed": automation_deal_cancelled,
    # Recorded after the sla-met-events patch: each cycle met emits ticket.met.
    "sla-policies-next-reply-met-events": sla_policies_next_reply,
    "sla-policies-ladder-regrouped-met-events": sla_policies_ladder_regrouped,
}

#: Settings a scenario changes: the SMTP relay is down for the whole run.
RELAY_DOWN = {"lead-cancelled-after-routing"}
#: Scenarios run by a worker that holds a term's outcome write (outcome_held).
HELD_OUTCOME = {"renewal-cancelled-as-it-renews"}
#: Scenarios that read the visibility store, which only a dev server has.
ON_DEV_SERVER = {"attention-raised"}


async def record(names: list[str]) -> None:
    with (
        tempfile.TemporaryDirectory() as scratch,
        MailSink(Path(scratch) / "mail") as sink,
        run_asgi_server(create_provider_app(rate_per_second=1000, burst=1000)) as url,
    ):
        settings = Settings(
            task_queue=f"record-{uuid.uuid4()}",
            database_url=f"sqlite:///{scratch}/crm.db",
            smtp_port=sink.port,
            enrichment_url=url,
            worker_graceful_shutdown_seconds=0,
            worker_sandbox=True,
            sealing_keys=SEALING_KEYS,
            outbound_allowed_hosts=["127.0.0.1"],
            operator_email="ops@example.com",
        )
        database = Database.from_url(settings.database_url)
        await database.create_tables()
        try:
            for name in names:
                await _record_one(name, settings, database)
        finally:
            await database.dispose()


@contextlib.asynccontextmanager
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server of its own (real time), with crmflow's search attributes."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
        ui=False,
        dev_server_log_level="error",
    )
    try:
        yield env
    finally:
        await env.shutdown()


async def _record_one(name: str, settings: Settings, database: Database) -> None:
    """Run ``name`` on a server of its own: a run one scenario leaves behind (a renewal's
    next term) cannot hold the clock of the next."""
    if name in RELAY_DOWN:
        settings = settings.model_copy(update={"smtp_port": free_port()})
    server = dev_server() if name in ON_DEV_SERVER else time_skipping_server()
    async with server as env, contextlib.AsyncExitStack() as stack:
        recording = Recording(env, settings.task_queue, database, RECORDING_POLICY)
        if name in HELD_OUTCOME:
            recording.held = await stack.enter_async_context(
                outcome_held(env.client, settings, RECORDING_POLICY, database)
            )
        else:
            await stack.enter_async_context(
                running_worker(env.client, settings, RECORDING_POLICY, database)
            )
        handle = await SCENARIOS[name](recording)
        history = await handle.fetch_history()
    (HISTORIES / f"{name}.json").write_text(history.to_json())
    print(f"recorded {name}: {len(history.events)} events")


def main() -> None:
    names = sys.argv[1:] or list(SCENARIOS)
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        sys.exit(f"unknown scenario(s) {unknown}; known: {list(SCENARIOS)}")
    asyncio.run(record(names))


if __name__ == "__main__":
    main()
