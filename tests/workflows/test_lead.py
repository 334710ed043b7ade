"""Lead qualification end to end on the time-skipping server.

The real worker runs every real activity: email goes to the SMTP sink, lead
records, tasks and assignments to a fresh SQLite database, enrichment to the
local provider. Only the clock is fake, so a fourteen-day follow-up sequence
takes about a second. Scoring is by source (``SCORING_BY_SOURCE``) so that each
test picks its branch; the default rules are tested in tests/unit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import select
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import WorkflowEnvironment

from crm.domain.calendar import BusinessCalendar
from crm.domain.lead_scoring import ScoringModel, ScoringRule
from crm.platform.temporal import time_skipping_server
from crm.store.models import Assignment, as_utc
from tests.conftest import eventually
from tests.support.lead import (
    inbox,
    lead_input,
    lead_row,
    marketing_list,
    send_event,
    start_lead,
    step_of,
    tasks_of,
    zone_at_local_hour,
)
from tests.support.servers import free_port
from tests.support.stack import Stack
from workflows.common import CUSTOMER_ID, PROCESS, STAGE
from workflows.contracts import step_key
from workflows.lead import LeadWorkflow


@pytest.fixture(scope="module")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server for this module: every run here ends, so its clock stays free.

    A run another module leaves waiting on a task queue nobody polls keeps a
    shared server's clock locked, and fourteen days would then take fourteen days.
    """
    async with time_skipping_server() as env:
        yield env


@pytest.fixture
async def daytime_zone(time_skipping_env: WorkflowEnvironment) -> str:
    """A time zone in which it is 10 in the morning now, so email goes out at once."""
    return zone_at_local_hour(await time_skipping_env.get_current_time(), 10)


async def test_medium_lead_without_reply_gets_every_follow_up_then_is_unresponsive(
    stack: Stack, daytime_zone: str
) -> None:
    lead = lead_input(stack.policy, timezone=daytime_zone, source="webinar")
    handle = await start_lead(stack.client, stack.task_queue, lead)
    result = await handle.result()

    started = (await handle.describe()).start_time
    assert (result.outcome, result.grade, result.score) == ("unresponsive", "medium", 40)
    assert result.owner_id is None
    assert result.emails_sent == ["first_touch", "follow_up_1", "follow_up_2", "follow_up_3"]

    messages = inbox(stack.maildir, lead.email)
    assert [step_of(m) for m in messages] == [
        "email_first_touch",
        "email_follow_up_1",
        "email_follow_up_2",
        "email_follow_up_3",
    ]
    assert messages[0].subject == "Lena Vogel, thanks for your interest in crmflow"
    assert "on behalf of Acme Corp" in messages[0].body
    assert messages[1].subject == "Following up, Lena Vogel"
    assert "follow-up 1 of 3" in messages[1].body
    assert messages[3].subject == "Should I close your file, Lena Vogel?"

    state = await handle.query(LeadWorkflow.state)
    sent_at = {s.step: s.at for s in state.steps if s.step.startswith("email:")}
    for number, day in enumerate((2, 5, 10), start=1):
        late = sent_at[f"email:follow_up_{number}"] - (started + timedelta(days=day))
        assert timedelta(0) <= late < timedelta(minutes=1)
    assert (state.stage, state.outcome) == ("unresponsive", "unresponsive")

    closed = await handle.describe()
    assert closed.close_time is not None
    assert closed.close_time - started >= timedelta(days=14)
    attributes = closed.typed_search_attributes
    assert attributes.get(PROCESS) == "lead"
    assert attributes.get(CUSTOMER_ID) == lead.lead_id
    assert attributes.get(STAGE) == "unresponsive"

    record = await lead_row(stack.database, lead.lead_id)
    assert record is not None
    assert (record.status, record.score, record.grade) == ("unresponsive", 40, "medium")
    assert (record.industry, record.employees) != (None, None)  # enriched from acme-corp.io
    assert await tasks_of(stack.database, lead.lead_id) == []


async def test_reply_after_first_follow_up_stops_emails_rescores_and_routes_to_a_rep(
    stack: Stack, daytime_zone: str
) -> None:
    lead = lead_input(stack.policy, timezone=daytime_zone, source="webinar", country="DE")
    handle = await start_lead(stack.client, stack.task_queue, lead)
    await stack.env.sleep(timedelta(days=3))
    assert [step_of(m) for m in inbox(stack.maildir, lead.email)] == [
        "email_first_touch",
        "email_follow_up_1",
    ]

    await send_event(handle, "replied")
    result = await handle.result()
    await stack.env.sleep(timedelta(days=12))

    assert result.outcome == "qualified"
    assert (result.first_grade, result.grade, result.score) == ("medium", "high", 70)
    assert result.emails_sent == ["first_touch", "follow_up_1"]
    assert len(inbox(stack.maildir, lead.email)) == 2

    assert result.owner_id in stack.policy.pools["sales-emea"]
    rep = stack.policy.member(result.owner_id)
    [task] = await tasks_of(stack.database, lead.lead_id)
    assert (task.kind, task.assignee_id, task.title) == (
        "call_lead",
        rep.id,
        "Call Lena Vogel at Acme Corp",
    )
    # The call is the work of the rep's assignment: it counts as an open lead until done.
    assert task.assignment_key == step_key(handle.id, "assign_rep")
    # Due 1 business hour after routing, which follows the reply once the rep is assigned.
    replied_at = result.events["replied"]
    [routed_at] = [
        s.at for s in (await handle.query(LeadWorkflow.state)).steps if s.step == "assign_rep"
    ]
    assert replied_at <= routed_at
    emea_hours = BusinessCalendar.from_spec(stack.policy.leads.territories["emea"].calendar())
    assert as_utc(task.due_at) == emea_hours.add(routed_at, timedelta(hours=1))

    [to_rep] = inbox(stack.maildir, rep.email, handle.id)
    assert to_rep.subject == "New high lead for you: Lena Vogel at Acme Corp (score 70)"
    assert "emea territory" in to_rep.body and "replied" in to_rep.body
    assert lead.email in to_rep.body and "webinar, replied" in to_rep.body

    record = await lead_row(stack.database, lead.lead_id)
    assert record is not None
    assert (record.status, record.owner_id, record.score) == ("qualified", rep.id, 70)


async def test_unsubscribe_stops_everything_and_the_address_is_never_emailed_again(
    stack: Stack, daytime_zone: str
) -> None:
    lead = lead_input(stack.policy, timezone=daytime_zone)
    handle = await start_lead(stack.client, stack.task_queue, lead)
    await stack.env.sleep(timedelta(days=1))
    await send_event(handle, "unsubscribed")
    result = await handle.result()

    assert result.outcome == "unsubscribed"
    assert result.emails_sent == ["first_touch"]
    assert result.owner_id is None

    again = lead_input(stack.policy, timezone=daytime_zone, email=lead.email)
    second = await start_lead(stack.client, stack.task_queue, again)
    assert (await second.result()).outcome == "unsubscribed"
    await stack.env.sleep(timedelta(days=15))

    assert [step_of(m) for m in inbox(stack.maildir, lead.email)] == ["email_first_touch"]
    for lead_id in (lead.lead_id, again.lead_id):
        record = await lead_row(stack.database, lead_id)
        assert record is not None and record.status == "unsubscribed"
        assert await tasks_of(stack.database, lead_id) == []


async def test_bounce_ends_the_sequence_and_marks_the_address_invalid(
    stack: Stack, daytime_zone: str
) -> None:
    lead = lead_input(stack.policy, timezone=daytime_zone)
    handle = await start_lead(stack.client, stack.task_queue, lead)
    await stack.env.sleep(timedelta(days=6))
    await send_event(handle, "bounced")
    result = await handle.result()

    assert result.outcome == "bounced"
    assert result.emails_sent == ["first_touch", "follow_up_1", "follow_up_2"]
    assert len(inbox(stack.maildir, lead.email)) == 3
    record = await lead_row(stack.database, lead.lead_id)
    assert record is not None
    assert (record.status, record.email_valid) == ("bounced", False)


async def test_follow_up_due_at_3am_local_time_is_sent_at_8am(stack: Stack) -> None:
    zone = zone_at_local_hour(await stack.env.get_current_time(), 3)
    lead = lead_input(stack.policy, timezone=zone)
    handle = await start_lead(stack.client, stack.task_queue, lead)
    await stack.env.sleep(timedelta(days=2, hours=6))
    await send_event(handle, "unsubscribed")
    result = await handle.result()

    assert result.emails_sent == ["first_touch", "follow_up_1"]
    assert len(inbox(stack.maildir, lead.email)) == 2
    state = await handle.query(LeadWorkflow.state)
    local = ZoneInfo(zone)
    due = state.due["follow_up_1"].astimezone(local)
    assert due.hour == 3
    sent = {s.step: s.at.astimezone(local) for s in state.steps if s.step.startswith("email:")}
    first_touch, follow_up = sent["email:first_touch"], sent["email:follow_up_1"]
    assert (first_touch.date(), first_touch.hour, first_touch.minute) == (
        (await handle.describe()).start_time.astimezone(local).date(),
        8,
        0,
    )
    assert (follow_up.date(), follow_up.hour, follow_up.minute) == (due.date(), 8, 0)
    assert [s.detail for s in state.steps if s.step == "quiet_hours:follow_up_1"] == [
        f"held until {due.date()} 08:00 {follow_up.tzname()}"
    ]


async def test_high_leads_go_to_their_territory_then_fewest_open_leads_then_round_robin(
    stack: Stack, daytime_zone: str
) -> None:
    seeds = [  # Eva already has two open leads
        Assignment(
            key=f"seed/{n}",
            process_id=f"lead-seed-{n}",
            pool="sales-emea",
            subject_id=f"seed-{n}",
            assignee_id="rep-eva",
        )
        for n in range(2)
    ]
    await stack.database.run(lambda session: session.add_all(seeds))

    owners = []
    for country in ("DE", "GB", "FR", "US", "ZA"):
        lead = lead_input(
            stack.policy, timezone=daytime_zone, source="demo_request", country=country
        )
        handle = await start_lead(stack.client, stack.task_queue, lead)
        result = await handle.result()
        assert (result.outcome, result.grade) == ("qualified", "high")
        assert result.emails_sent == []
        assert inbox(stack.maildir, lead.email) == []

        [task] = await tasks_of(stack.database, lead.lead_id)
        assert task.assignee_id == result.owner_id
        territory = (await handle.query(LeadWorkflow.state)).details["territory"]
        hours = BusinessCalendar.from_spec(stack.policy.leads.territories[territory].calendar())
        started = (await handle.describe()).start_time
        assert started is not None
        assert hours.between(started, as_utc(task.due_at)) == pytest.approx(
            timedelta(hours=1), abs=timedelta(seconds=30)
        )
        rep = stack.policy.member(task.assignee_id)
        assert len(inbox(stack.maildir, rep.email, handle.id)) == 1
        owners.append((country, territory, result.owner_id))

    assert owners == [
        ("DE", "emea", "rep-finn"),  # Finn has no open lead, Eva two
        ("GB", "emea", "rep-finn"),  # one against two
        ("FR", "emea", "rep-eva"),  # two each: Eva was assigned least recently
        ("US", "americas", "rep-gus"),  # a territory of its own, first in its pool
        ("ZA", "emea", "rep-finn"),  # no territory: the fallback, where Finn has fewer
    ]


async def test_low_lead_is_nurtured_without_sales_task_or_email(
    stack: Stack, daytime_zone: str
) -> None:
    lead = lead_input(stack.policy, timezone=daytime_zone, source="newsletter")
    handle = await start_lead(stack.client, stack.task_queue, lead)
    result = await handle.result()

    assert (result.outcome, result.grade, result.score) == ("nurture", "low", 0)
    [entry] = [
        e for e in await marketing_list(stack.database, "nurture") if e.lead_id == lead.lead_id
    ]
    assert (entry.email, entry.score) == (lead.email, 0)
    assert await tasks_of(stack.database, lead.lead_id) == []
    assert inbox(stack.maildir, lead.email) == []
    record = await lead_row(stack.database, lead.lead_id)
    assert record is not None and record.status == "nurture"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"email": "lena-at-acme"}, "email 'lena-at-acme' is not an email address"),
        (
            {"scoring": ScoringModel([ScoringRule("x", "shoe_size", 5, any_of=["42"])], 60, 30)},
            "scoring rule 'x': unknown fact 'shoe_size'",
        ),
    ],
    ids=["bad-email", "bad-rule"],
)
async def test_invalid_lead_input_fails_the_run_without_retrying(
    stack: Stack, change: dict[str, object], message: str
) -> None:
    lead = lead_input(stack.policy, **change)  # type: ignore[arg-type]
    handle = await start_lead(stack.client, stack.task_queue, lead)
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()

    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    assert (cause.type, cause.non_retryable) == ("InvalidInput", True)
    assert cause.message.startswith("invalid lead input: ")
    assert message in cause.message
    assert await lead_row(stack.database, lead.lead_id) is None


def test_zone_helper_puts_now_at_the_asked_local_hour() -> None:
    from datetime import datetime

    for utc_hour in range(24):
        now = datetime(2026, 3, 2, utc_hour, 30, tzinfo=UTC)
        for hour in (3, 10):
            assert now.astimezone(ZoneInfo(zone_at_local_hour(now, hour))).hour == hour


async def test_cancel_while_the_first_email_is_retrying_ends_the_run_as_cancelled(
    idle_stack: Stack, daytime_zone: str
) -> None:
    lead = lead_input(idle_stack.policy, timezone=daytime_zone)
    async with idle_stack.worker(smtp_port=free_port()):  # the relay is down
        handle = await start_lead(idle_stack.client, idle_stack.task_queue, lead)
        # Until the first email is being tried.
        await eventually(
            lambda: handle.query(LeadWorkflow.state), lambda s: s.stage == "following_up"
        )
        await asyncio.sleep(0.5)

        await handle.cancel(reason="lead withdrew")
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
        state = await handle.query(LeadWorkflow.state)

    assert isinstance(failure.value.cause, CancelledError)
    assert state.outcome == "cancelled"
    assert inbox(idle_stack.maildir, lead.email) == []


async def test_lead_cancelled_after_routing_frees_the_rep(
    idle_stack: Stack, daytime_zone: str
) -> None:
    lead = lead_input(idle_stack.policy, timezone=daytime_zone, source="demo_request", country="DE")
    async with idle_stack.worker(smtp_port=free_port()):  # the rep's email retries
        handle = await start_lead(idle_stack.client, idle_stack.task_queue, lead)
        # Until the call task exists and the rep's email is being tried.
        await eventually(
            lambda: handle.query(LeadWorkflow.state),
            lambda s: "task:call_lead" in [e.step for e in s.steps],
        )
        [task] = await tasks_of(idle_stack.database, lead.lead_id)
        assert task.status == "open"

        await handle.cancel(reason="duplicate lead")
        with pytest.raises(WorkflowFailureError):
            await handle.result()

    [task] = await tasks_of(idle_stack.database, lead.lead_id)
    assert (task.status, task.completed_by) == ("done", handle.id)
    assignments = await idle_stack.database.all(
        select(Assignment).where(Assignment.process_id == handle.id)
    )
    assert [(a.assignee_id, a.active) for a in assignments] == [(task.assignee_id, False)]
