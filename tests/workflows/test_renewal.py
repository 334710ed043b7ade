"""The renewal process over whole terms on the time-skipping server.

The real worker runs every real activity (SMTP sink, SQLite, the approval
child workflow); only the clock is fake, so a year passes in a few seconds.
Each test has a test server of its own (the ``time_skipping_env`` fixture).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable
from datetime import datetime
from typing import Protocol

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from crm.platform.settings import Settings
from crm.policy import Policy
from crm.store.db import Database
from crm.store.models import UsageReport
from devstack.mailsink import MailSink, StoredMessage
from tests.conftest import eventually
from tests.support.renewal import (
    audit_steps,
    days,
    emails_of,
    next_run_id,
    outcome_held,
    renewal_input,
    report_usage,
    steps_of,
    tasks_of,
    years_after,
)
from tests.support.servers import free_port
from worker.main import running_worker
from workflows.approval import ApprovalWorkflow
from workflows.approval_types import ApprovalDecision
from workflows.common import ProcessEvent, ProcessState
from workflows.renewal import RenewalWorkflow
from workflows.renewal_types import RenewalInput, RenewalResult, RenewedTerm, renewal_id

RenewalHandle = WorkflowHandle[RenewalWorkflow, RenewalResult]


class Starter(Protocol):
    """Starts a renewal on the test's queue, as a run of ``tenant`` when one is given."""

    def __call__(
        self, term: RenewalInput, tenant: str | None = None
    ) -> Awaitable[RenewalHandle]: ...


REMINDERS = [f"term1_email_reminder_{d}d" for d in (90, 60, 30, 7)]
CONFIRMED = "term2_email_renewal_confirmation"  # the second term's run confirms it


@pytest.fixture
async def now(time_skipping_env: WorkflowEnvironment) -> datetime:
    """The test server's current time."""
    return await time_skipping_env.get_current_time()


@pytest.fixture
async def start(client: Client, settings: Settings) -> AsyncIterator[Starter]:
    """Starts renewals on this test's queue; ends those still running after the test.

    Runs left behind would keep timers on the shared time-skipping server.
    """
    started: list[str] = []

    async def start_renewal(term: RenewalInput, tenant: str | None = None) -> RenewalHandle:
        """As the API starts a run of ``tenant``: an id of the tenant's own, the tenant in memo."""
        process_id = renewal_id(term.subscription_id)
        handle = await client.start_workflow(
            RenewalWorkflow.run,
            term,
            id=f"{process_id}@{tenant}" if tenant else process_id,
            task_queue=settings.task_queue,
            memo={"tenant": tenant} if tenant else None,
        )
        started.append(handle.id)
        return handle

    yield start_renewal
    for process_id in started:
        with contextlib.suppress(RPCError):
            await client.get_workflow_handle(process_id).terminate("test over")


async def state_of(handle: RenewalHandle) -> ProcessState:
    return await handle.query(RenewalWorkflow.state)


async def emails_once_confirmed(
    mail_sink: MailSink, process_id: str, step: str = CONFIRMED
) -> list[StoredMessage]:
    """The process's emails, once the next term's run has sent its confirmation ``step``."""

    async def sent() -> list[StoredMessage]:
        return emails_of(mail_sink.maildir, process_id)

    messages: list[StoredMessage] = await eventually(sent, lambda m: step in steps_of(m))
    return messages


@pytest.mark.usefixtures("worker")
async def test_year_sends_four_reminders_and_approved_upsell_then_auto_renews(
    time_skipping_env: WorkflowEnvironment,
    client: Client,
    start: Starter,
    database: Database,
    mail_sink: MailSink,
    now: datetime,
) -> None:
    term = renewal_input(now + days(365), plan="growth", auto_renew=True)
    await report_usage(database, term.subscription_id, used=45, included=50, at=now)
    handle = await start(term)

    await time_skipping_env.sleep(days(306))  # past the 60-day mark: the approval waits
    state = await state_of(handle)
    assert state.details["reminders_sent"] == [90, 60]
    assert state.details["usage"]["utilisation"] == 0.9
    assert state.details["upsell"] == "awaiting_approval"
    approval = client.get_workflow_handle_for(ApprovalWorkflow.run, state.details["approval_id"])
    approval_state = await approval.query(ApprovalWorkflow.state)
    assert approval_state.details["current_approver"] == "mgr-hana"  # the owner's manager
    decided = await approval.execute_update(
        ApprovalWorkflow.decide, ApprovalDecision("mgr-hana", "approve", "worth it")
    )
    assert (decided.outcome, decided.decided_by, decided.comment) == (
        "approved",
        "mgr-hana",
        "worth it",
    )

    second_term = await next_run_id(handle)

    sent = await emails_once_confirmed(mail_sink, handle.id)
    assert sorted(steps_of(sent)) == sorted([*REMINDERS, "term1_email_upsell_offer", CONFIRMED])
    offer = next(m for m in sent if m.header("X-Crmflow-Step") == "term1_email_upsell_offer")
    assert offer.subject == "Acme Corp: 15% off enterprise at your renewal"
    assert offer.recipients == [term.contact_email]
    assert "90% of the seats" in offer.body
    reminder = next(m for m in sent if m.header("X-Crmflow-Step") == REMINDERS[-1])
    assert "in\n7 days" in reminder.body or "in 7 days" in reminder.body
    assert "renews automatically" in reminder.body
    confirmation = next(m for m in sent if m.header("X-Crmflow-Step") == CONFIRMED)
    next_date = f"{years_after(term.renewal_date, 1):%Y-%m-%d}"
    assert (
        confirmation.subject == f"Acme Corp: your growth subscription is renewed until {next_date}"
    )
    assert f"renewed automatically on\n{term.renewal_date:%Y-%m-%d}" in confirmation.body

    tasks = await tasks_of(database, handle.id)
    assert [t.kind for t in tasks] == [
        "reminder_90d",
        "reminder_60d",
        "upsell_follow_up",
        "reminder_30d",
        "reminder_7d",
    ]
    assert {t.assignee_id for t in tasks} == {"csm-ana"}
    [approval_task] = await tasks_of(database, approval.id)
    assert approval_task.assignee_id == "mgr-hana"
    # The first term's outcome, then the second term's confirmation.
    assert (await audit_steps(database, handle.id))[-2:] == [
        "outcome",
        "email:renewal_confirmation",
    ]

    next_state = await state_of(client.get_workflow_handle_for(RenewalWorkflow.run, handle.id))
    assert next_state.details["term"] == 2
    assert next_state.details["renewal_date"] == years_after(term.renewal_date, 1).isoformat()
    assert (await handle.describe()).run_id == second_term


@pytest.mark.usefixtures("worker")
async def test_upsell_discount_approval_that_expires_sends_no_offer(
    time_skipping_env: WorkflowEnvironment,
    client: Client,
    start: Starter,
    database: Database,
    mail_sink: MailSink,
    now: datetime,
) -> None:
    term = renewal_input(now + days(100), plan="growth")
    await report_usage(database, term.subscription_id, used=95, included=100, at=now)
    handle = await start(term)

    await time_skipping_env.sleep(days(41))  # the approval is asked at day 40
    approval_id = (await state_of(handle)).details["approval_id"]
    await time_skipping_env.sleep(days(7))  # 72 h for the manager, 72 h for finance
    state = await state_of(handle)
    approval = client.get_workflow_handle_for(ApprovalWorkflow.run, approval_id)
    result = await approval.result()

    assert result.outcome == "expired"
    assert result.decided_by is None
    assert result.escalations == ["fin-olga"]
    assert state.details["upsell"] == "discount_expired"
    assert "term1_email_upsell_offer" not in steps_of(emails_of(mail_sink.maildir, handle.id))
    approval_mail = emails_of(mail_sink.maildir, approval_id)
    assert [m.recipients for m in approval_mail] == [
        ["hana.berg@example.com"],
        ["olga.lind@example.com"],
    ]
    assert (
        approval_mail[1].subject.strip().startswith("Escalated to you: 15% discount for Acme Corp")
    )
    assert [(t.kind, t.assignee_id) for t in await tasks_of(database, approval_id)] == [
        ("approval_request", "mgr-hana"),
        ("approval_escalation", "fin-olga"),
    ]


@pytest.mark.usefixtures("worker")
async def test_a_tenants_discount_approval_has_an_id_of_the_tenants_own(
    time_skipping_env: WorkflowEnvironment,
    client: Client,
    start: Starter,
    database: Database,
    now: datetime,
) -> None:
    term = renewal_input(now + days(100), plan="growth")
    report = UsageReport(
        subscription_id=term.subscription_id,
        metric="seats",
        used=95,
        included=100,
        reported_at=now,
        tenant="acme",  # only the tenant's own reports count for its renewal
    )
    await database.run(lambda session: session.add(report))
    handle = await start(term, tenant="acme")

    await time_skipping_env.sleep(days(41))  # the approval is asked at day 40
    state = await state_of(handle)

    approval_id = state.details["approval_id"]
    assert approval_id == f"approval-{term.subscription_id}-term1-discount@acme"
    assert state.details["upsell"] == "awaiting_approval"
    approval = await client.get_workflow_handle(approval_id).describe()
    assert approval.parent_id == handle.id
    assert await approval.memo_value("tenant") == "acme"  # the approvals API filters by it


@pytest.mark.usefixtures("worker")
async def test_moving_the_date_forward_replans_reminders_without_sending_any_twice(
    time_skipping_env: WorkflowEnvironment,
    client: Client,
    start: Starter,
    mail_sink: MailSink,
    now: datetime,
) -> None:
    term = renewal_input(now + days(95), plan="enterprise", auto_renew=True)
    handle = await start(term)

    await time_skipping_env.sleep(days(36))  # 90- and 60-day reminders sent
    moved = term.renewal_date + days(45)
    await handle.signal(
        RenewalWorkflow.event,
        ProcessEvent("renewal_date_changed", {"renewal_date": moved.isoformat()}),
    )
    await time_skipping_env.sleep(days(1))
    state = await state_of(handle)
    assert state.details["renewal_date"] == moved.isoformat()
    assert state.due == {
        "reminder_30d": moved - days(30),
        "reminder_7d": moved - days(7),
        "renewal_date": moved,
    }

    await next_run_id(handle)

    sent = await emails_once_confirmed(mail_sink, handle.id)
    assert sorted(steps_of(sent)) == sorted([*REMINDERS, CONFIRMED])
    by_step = {m.header("X-Crmflow-Step"): m.received_at for m in sent}
    assert all(at is not None for at in by_step.values())


@pytest.mark.usefixtures("worker")
async def test_lapse_creates_churn_risk_task_and_escalates_to_the_owners_manager(
    client: Client,
    start: Starter,
    database: Database,
    mail_sink: MailSink,
    now: datetime,
) -> None:
    term = renewal_input(now + days(20), plan="starter", auto_renew=False)
    handle = await start(term)

    result = await handle.result()

    assert result.outcome == "lapsed"
    assert result.reminders_sent == [30, 7]  # 30 at once: only the latest overdue one
    state = await state_of(handle)
    assert state.stage == "lapsed"
    assert state.details["reminders_skipped"] == [90, 60]
    tasks = await tasks_of(database, handle.id)
    assert [(t.kind, t.assignee_id) for t in tasks][-2:] == [
        ("churn_risk", "csm-ana"),
        ("lapse_escalation", "mgr-hana"),
    ]
    [escalation] = [
        m
        for m in emails_of(mail_sink.maildir, handle.id)
        if m.header("X-Crmflow-Step") == "term1_email_lapse_escalation"
    ]
    assert escalation.recipients == ["hana.berg@example.com"]
    assert escalation.subject == f"Escalation: Acme Corp did not renew ({term.subscription_id})"
    assert "Ana Ruiz owns the account" in escalation.body


@pytest.mark.usefixtures("worker")
async def test_two_terms_continue_as_new_with_histories_of_the_same_length(
    time_skipping_env: WorkflowEnvironment,
    client: Client,
    start: Starter,
    mail_sink: MailSink,
    now: datetime,
) -> None:
    term = renewal_input(now + days(100), plan="enterprise", auto_renew=True)
    first = await start(term)

    second_run = await next_run_id(first)
    await time_skipping_env.sleep(days(367))  # through the whole second term
    third_run = (await client.get_workflow_handle(first.id).describe()).run_id
    second = client.get_workflow_handle_for(RenewalWorkflow.run, first.id, run_id=second_run)
    third = client.get_workflow_handle_for(RenewalWorkflow.run, first.id, run_id=third_run)

    first_run = client.get_workflow_handle(first.id, run_id=first.result_run_id)
    first_history = (await first_run.fetch_history()).events
    second_history = (await second.fetch_history()).events
    state = await state_of(third)
    assert state.details["term"] == 3
    assert state.details["renewal_date"] == years_after(term.renewal_date, 2).isoformat()
    # The second run adds only the confirmation email (one activity) to what the first did.
    assert len(first_history) < len(second_history) <= len(first_history) + 6 < 200
    third_confirmed = "term3_email_renewal_confirmation"
    sent = steps_of(await emails_once_confirmed(mail_sink, first.id, third_confirmed))
    second_term = [r.replace("term1", "term2") for r in REMINDERS]
    assert sorted(sent) == sorted([*REMINDERS, CONFIRMED, *second_term, third_confirmed])


@pytest.mark.usefixtures("worker")
async def test_signed_renewal_is_confirmed_with_the_plan_signed_for(
    time_skipping_env: WorkflowEnvironment,
    client: Client,
    start: Starter,
    mail_sink: MailSink,
    now: datetime,
) -> None:
    term = renewal_input(now + days(100), plan="growth", auto_renew=False)
    handle = await start(term)
    await time_skipping_env.sleep(days(20))

    # Terms the next term could not use are noted and ignored; the term goes on.
    await handle.signal(RenewalWorkflow.event, ProcessEvent("renewed", {"annual_value": "lots"}))
    state = await eventually(
        lambda: state_of(handle), lambda s: "ignored:renewed" in [e.step for e in s.steps]
    )
    ignored = [s for s in state.steps if s.step == "ignored:renewed"]
    assert [s.detail for s in ignored] == [
        "data.annual_value must be a number of at least 0, got 'lots'"
    ]

    signed = {"plan": "enterprise", "annual_value": 30000}
    await handle.signal(RenewalWorkflow.event, ProcessEvent("renewed", signed))
    await next_run_id(handle)

    sent = await emails_once_confirmed(mail_sink, handle.id)
    [confirmation] = [m for m in sent if m.header("X-Crmflow-Step") == CONFIRMED]
    next_date = f"{years_after(term.renewal_date, 1):%Y-%m-%d}"
    assert confirmation.subject == (
        f"Acme Corp: your enterprise subscription is renewed until {next_date}"
    )
    assert confirmation.recipients == [term.contact_email]
    assert "Thank you for renewing" in confirmation.body
    assert "annual value 30,000.00" in confirmation.body


async def events_as_the_term_renews(
    env: WorkflowEnvironment,
    client: Client,
    handle: RenewalHandle,
    held: tuple[asyncio.Event, asyncio.Event],
    term_days: int,
    events: list[ProcessEvent],
) -> tuple[ProcessState, RenewalHandle]:
    """Send ``events`` once the term has auto-renewed, before the next term starts.

    Returns the ended term's state after it took them, and the next term's handle.
    """
    recording, may_record = held
    # The server skips time only while no activity runs: sleep beside the blocked one.
    past_the_date = asyncio.create_task(env.sleep(days(term_days + 1)))
    await asyncio.wait_for(recording.wait(), 30)
    for event in events:
        await handle.signal(RenewalWorkflow.event, event)

    def took_them(state: ProcessState) -> bool:
        taken = [s.step for s in state.steps]
        return len(taken) - taken.index("auto_renewed") > len(events)

    ended: ProcessState = await eventually(lambda: state_of(handle), took_them)
    may_record.set()
    await past_the_date
    second = await next_run_id(handle)
    return ended, client.get_workflow_handle_for(RenewalWorkflow.run, handle.id, run_id=second)


async def test_cancel_that_arrives_as_the_term_renews_cancels_the_next_term(
    time_skipping_env: WorkflowEnvironment,
    client: Client,
    start: Starter,
    settings: Settings,
    policy: Policy,
    database: Database,
    mail_sink: MailSink,
    now: datetime,
) -> None:
    async with outcome_held(client, settings, policy, database) as held:
        handle = await start(renewal_input(now + days(20), plan="growth", auto_renew=True))
        cancel = ProcessEvent("cancelled", {"reason": "budget"})
        ended, next_term = await events_as_the_term_renews(
            time_skipping_env, client, handle, held, 20, [cancel]
        )
        # Cancelled at its start, the next term ends at once (a handle of our
        # own does not skip time: a term left running would wait here a year).
        result = await asyncio.wait_for(next_term.result(), 30)

    assert ended.outcome is None and ended.steps[-1].step == "carried:cancelled"
    assert (result.term, result.outcome) == (2, "cancelled")
    sent = steps_of(emails_of(mail_sink.maildir, handle.id))
    assert CONFIRMED not in sent  # the customer cancelled: no "you are renewed" email


async def test_terms_signed_and_dates_set_as_the_term_renews_go_to_the_next_term(
    time_skipping_env: WorkflowEnvironment,
    client: Client,
    start: Starter,
    settings: Settings,
    policy: Policy,
    database: Database,
    mail_sink: MailSink,
    now: datetime,
) -> None:
    term = renewal_input(now + days(20), plan="growth", auto_renew=True)
    later = term.renewal_date + days(400)
    events = [
        ProcessEvent("renewed", {"plan": "enterprise", "annual_value": 30000}),
        ProcessEvent("renewal_date_changed", {"renewal_date": now.isoformat()}),  # in the past
        ProcessEvent("renewal_date_changed", {"renewal_date": later.isoformat()}),
        ProcessEvent("renewed", {}),  # a repeat
    ]
    async with outcome_held(client, settings, policy, database) as held:
        handle = await start(term)
        ended, next_term = await events_as_the_term_renews(
            time_skipping_env, client, handle, held, 20, events
        )
        sent = await emails_once_confirmed(mail_sink, handle.id)
        next_state = await state_of(next_term)

    assert [(s.step, s.detail) for s in ended.steps[-4:]] == [
        ("next_term:renewed", "term 2"),
        (
            "ignored:renewal_date_changed",
            f"data.renewal_date must be after {term.renewal_date:%Y-%m-%d}, "
            "the date this term renewed on",
        ),
        ("next_term:renewal_date_changed", "term 2"),
        ("ignored:renewed", "the term is already auto_renewed"),
    ]
    details = next_state.details
    assert (details["term"], details["plan"], details["annual_value"]) == (2, "enterprise", 30000)
    assert details["renewal_date"] == later.isoformat()
    [confirmation] = [m for m in sent if m.header("X-Crmflow-Step") == CONFIRMED]
    assert f"enterprise subscription is renewed until {later:%Y-%m-%d}" in confirmation.subject


async def test_cancel_while_the_renewal_confirmation_is_retried_stops_it(
    time_skipping_env: WorkflowEnvironment,
    client: Client,
    start: Starter,
    settings: Settings,
    policy: Policy,
    database: Database,
    now: datetime,
) -> None:
    relay_down = settings.model_copy(update={"smtp_port": free_port()})
    second_term = dataclasses.replace(
        renewal_input(now + days(365), plan="growth", auto_renew=True),
        term=2,
        renewed_from=RenewedTerm("auto_renewed", now),
    )
    async with running_worker(client, relay_down, policy, database):
        handle = await start(second_term)
        # Until the confirmation has failed at least once.
        await eventually(lambda: handle_attempts(handle, "send_email"), lambda n: n >= 2)
        await handle.signal(RenewalWorkflow.event, ProcessEvent("cancelled", {}))
        result = await asyncio.wait_for(handle.result(), 30)
        state = await state_of(handle)

    assert result.outcome == "cancelled"
    # The email was stopped, not tried for its whole day and given up on.
    assert "email:renewal_confirmation" not in [s.step for s in state.steps]
    history = (await handle.fetch_history()).events
    assert any(e.HasField("activity_task_cancel_requested_event_attributes") for e in history)


async def handle_attempts(handle: RenewalHandle, activity_type: str) -> int:
    """The attempt of the pending ``activity_type`` activity of the run (0 if none)."""
    description = await handle.describe()
    return max(
        (
            p.attempt
            for p in description.raw_description.pending_activities
            if p.activity_type.name == activity_type
        ),
        default=0,
    )
