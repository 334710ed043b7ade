"""The ticket SLA process on the time-skipping server, with the real worker and activities.

Email goes to the SMTP sink, tasks, notifications and outcomes to a fresh
SQLite database. Only the clock is fake: each test lets the server's clock run
to a wall-clock moment in the customer's time zone (the next Friday 16:30, a
weekday night) and opens the ticket then, so weekends and nights pass in a
second.
"""

from __future__ import annotations

from datetime import time, timedelta

import pytest
from sqlmodel import select

from crm.policy import Policy
from crm.policy.sla import SlaPolicy, SlaTierOverride
from crm.store.models import WebhookEvent
from devstack.mailsink import StoredMessage
from tests.support.sla import (
    NEW_YORK,
    STOCKHOLM,
    assert_close,
    escalation_times,
    local,
    mail_of,
    next_local,
    notifications_of,
    on_day,
    outcome_of,
    send_event,
    sleep_until,
    start_ticket,
    state_of,
    tasks_of,
    ticket_input,
)
from tests.support.stack import Stack
from workflows.common import SLA_STATE, TICKET_PRIORITY
from workflows.sla_types import sla_id


def steps(messages: list[StoredMessage]) -> list[str | None]:
    return [m.header("X-Crmflow-Step") for m in messages]


async def test_normal_ticket_opened_friday_afternoon_breaches_monday_not_saturday(
    stack: Stack,
) -> None:
    friday = next_local(await stack.env.get_current_time(), "fri", time(16, 30), STOCKHOLM)
    await sleep_until(stack.env, friday)
    ticket = ticket_input(priority="normal", created_at=friday, timezone=STOCKHOLM)
    handle = await start_ticket(stack.client, stack.task_queue, ticket)

    # Saturday noon: half an hour of business time used, nothing sent.
    await sleep_until(stack.env, on_day(friday, 1, time(12), STOCKHOLM))
    saturday = await state_of(handle)
    monday_16_30 = on_day(friday, 3, time(16, 30), STOCKHOLM)
    assert saturday.details["sla_state"] == "on_track"
    assert saturday.due["first_response_breach"] == monday_16_30
    assert saturday.due["first_response_warning"] == on_day(friday, 3, time(14, 30), STOCKHOLM)
    assert mail_of(stack.maildir, handle.id) == []

    # Monday, a minute after 7.5 more business hours: breached and escalated.
    await sleep_until(stack.env, monday_16_30 + timedelta(minutes=1))
    monday = await state_of(handle)
    fired = escalation_times(monday)
    assert set(fired) == {"first_response_warning", "first_response_breach"}
    assert_close(fired["first_response_breach"], monday_16_30)
    assert local(fired["first_response_breach"], STOCKHOLM).strftime("%a %H:%M") == "Mon 16:30"
    assert monday.details["sla_state"] == "breached"
    assert (await handle.describe()).typed_search_attributes.get(SLA_STATE) == "breached"

    mail = mail_of(stack.maildir, handle.id)
    assert steps(mail) == ["email_first_response_warning", "email_first_response_breach"]
    assert mail[0].recipients == ["ivy.chen@example.com"]
    assert mail[1].recipients == ["sam.lindqvist@example.com"]
    assert "SLA breached: ticket" in mail[1].subject
    assert "Mon 2026" in mail[1].body and "16:30" in mail[1].body  # "Was due", local time
    assert [t.assignee_id for t in await tasks_of(stack.database, handle.id)] == ["lead-sam"]
    assert [n.staff_id for n in await notifications_of(stack.database, handle.id)] == ["agent-ivy"]

    await send_event(handle, "resolved")
    result = await handle.result()
    assert [(c.clock, c.status) for c in result.clocks] == [
        ("first_response", "breached"),
        ("resolution", "met"),
    ]
    outcome = await outcome_of(stack.database, handle.id)
    assert outcome is not None
    assert (outcome.first_response, outcome.resolution) == ("breached", "met")
    assert outcome.first_response_used_seconds == pytest.approx(8 * 3600 + 60, abs=5)


async def test_ticket_paused_over_the_weekend_keeps_its_remaining_time(stack: Stack) -> None:
    friday = next_local(await stack.env.get_current_time(), "fri", time(15), STOCKHOLM)
    await sleep_until(stack.env, friday)
    handle = await start_ticket(
        stack.client, stack.task_queue, ticket_input(created_at=friday, timezone=STOCKHOLM)
    )

    await sleep_until(stack.env, on_day(friday, 0, time(16), STOCKHOLM))
    await send_event(handle, "status_changed", status="pending_customer")
    # Through the weekend and Monday morning: 7 of 8 hours stay left.
    for day, hour in ((1, 12), (3, 11)):
        await sleep_until(stack.env, on_day(friday, day, time(hour), STOCKHOLM))
        paused = await state_of(handle)
        assert paused.details["sla_state"] == "paused"
        assert paused.stage == "pending_customer"
        assert paused.details["clocks"]["first_response"]["remaining"] == "7h"
        assert paused.details["clocks"]["resolution"]["remaining"] == "23h"
        assert paused.due == {}
    assert (await handle.describe()).typed_search_attributes.get(SLA_STATE) == "paused"

    await send_event(handle, "status_changed", status="open")
    resumed = await state_of(handle)
    # Six hours left on Monday from 11:00, the seventh on Tuesday.
    assert_close(resumed.due["first_response_breach"], on_day(friday, 4, time(10), STOCKHOLM))
    assert resumed.details["sla_state"] == "on_track"

    await sleep_until(stack.env, on_day(friday, 3, time(11, 30), STOCKHOLM))
    await send_event(handle, "agent_replied")
    await send_event(handle, "resolved")
    result = await handle.result()
    assert [(c.clock, c.status) for c in result.clocks] == [
        ("first_response", "met"),
        ("resolution", "met"),
    ]
    assert result.clocks[0].used_seconds == pytest.approx(1.5 * 3600, abs=5)
    assert mail_of(stack.maildir, handle.id) == []


async def test_urgent_ticket_escalates_twice_at_night(stack: Stack) -> None:
    night = next_local(await stack.env.get_current_time(), "tue", time(22), NEW_YORK)
    await sleep_until(stack.env, night)
    # Enterprise customers' breached tickets move to the senior pool.
    policy = Policy(
        sla=SlaPolicy(tiers={"enterprise": SlaTierOverride(reassign_pool="support-senior")})
    )
    ticket = ticket_input(
        priority="urgent", created_at=night, timezone=NEW_YORK, policy=policy, tier="enterprise"
    )
    handle = await start_ticket(stack.client, stack.task_queue, ticket)

    await sleep_until(stack.env, night + timedelta(minutes=100))
    state = await state_of(handle)
    fired = escalation_times(state)
    # First response due 23:00 around the clock: warn 22:45, lead 23:00, manager 23:30.
    assert_close(fired["first_response_warning"], night + timedelta(minutes=45))
    assert_close(fired["first_response_breach"], night + timedelta(hours=1))
    assert_close(fired["first_response_manager"], night + timedelta(minutes=90))
    assert [(e["level"], e["to"]) for e in state.details["escalations"]] == [
        ("warning", "agent-ivy"),
        ("breach", "lead-sam"),
        ("manager", "mgr-hana"),
    ]
    assert state.details["assignee_id"] == "agent-kai"  # reassigned at the breach

    mail = mail_of(stack.maildir, handle.id)
    assert [(m.header("X-Crmflow-Step"), m.recipients) for m in mail] == [
        ("email_first_response_warning", ["ivy.chen@example.com"]),
        ("email_first_response_breach", ["sam.lindqvist@example.com"]),
        ("email_first_response_manager", ["hana.berg@example.com"]),
    ]
    assert "reassigned to Kai Nowak" in " ".join(mail[1].body.split())
    assert [(t.assignee_id, t.kind) for t in await tasks_of(stack.database, handle.id)] == [
        ("lead-sam", "sla_first_response_breach"),
        ("mgr-hana", "sla_first_response_manager"),
    ]

    await send_event(handle, "agent_replied")
    await sleep_until(stack.env, night + timedelta(hours=2, minutes=30))
    await send_event(handle, "resolved")
    result = await handle.result()
    assert [(c.clock, c.status) for c in result.clocks] == [
        ("first_response", "breached"),
        ("resolution", "met"),
    ]
    assert result.sla_state == "breached"
    assert len(result.escalations) == 3  # the resolution clock never reached its warning
    outcome = await outcome_of(stack.database, handle.id)
    assert outcome is not None and outcome.tier == "enterprise"
    assert [e["level"] for e in outcome.escalations] == ["warning", "breach", "manager"]


async def test_priority_change_midway_moves_the_due_time(stack: Stack) -> None:
    monday = next_local(await stack.env.get_current_time(), "mon", time(9), STOCKHOLM)
    await sleep_until(stack.env, monday)
    handle = await start_ticket(
        stack.client, stack.task_queue, ticket_input(created_at=monday, timezone=STOCKHOLM)
    )

    await sleep_until(stack.env, monday + timedelta(hours=2))
    before = await state_of(handle)
    assert before.due["first_response_breach"] == on_day(monday, 0, time(17), STOCKHOLM)

    await send_event(handle, "priority_changed", priority="high")
    after = await state_of(handle)
    # Two hours used; high allows 4 to respond and 8 to resolve.
    assert_close(after.due["first_response_breach"], on_day(monday, 0, time(13), STOCKHOLM))
    assert_close(after.due["resolution_breach"], on_day(monday, 0, time(17), STOCKHOLM))
    assert after.details["priority"] == "high"
    assert (await handle.describe()).typed_search_attributes.get(TICKET_PRIORITY) == "high"

    await sleep_until(stack.env, on_day(monday, 0, time(13, 5), STOCKHOLM))
    fired = escalation_times(await state_of(handle))
    assert_close(fired["first_response_breach"], on_day(monday, 0, time(13), STOCKHOLM))
    breach_mail = mail_of(stack.maildir, handle.id)[-1]
    assert breach_mail.subject.endswith("first response (high)")

    await send_event(handle, "resolved")
    result = await handle.result()
    assert result.priority == "high"
    assert result.clocks[0].target_seconds == 4 * 3600


async def test_resolved_ticket_records_met_and_sends_no_warning(stack: Stack) -> None:
    tuesday = next_local(await stack.env.get_current_time(), "tue", time(10), STOCKHOLM)
    await sleep_until(stack.env, tuesday)
    handle = await start_ticket(
        stack.client, stack.task_queue, ticket_input(created_at=tuesday, timezone=STOCKHOLM)
    )

    await sleep_until(stack.env, tuesday + timedelta(hours=1))
    await send_event(handle, "agent_replied")
    await sleep_until(stack.env, tuesday + timedelta(hours=4))
    await send_event(handle, "resolved")
    result = await handle.result()

    assert result.outcome == "resolved"
    assert result.sla_state == "met"
    assert result.escalations == []
    assert mail_of(stack.maildir, handle.id) == []
    assert await notifications_of(stack.database, handle.id) == []
    outcome = await outcome_of(stack.database, sla_id(result.ticket_id))
    assert outcome is not None
    assert (outcome.first_response, outcome.resolution) == ("met", "met")
    assert outcome.first_response_used_seconds == pytest.approx(3600, abs=5)
    assert outcome.resolution_used_seconds == pytest.approx(4 * 3600, abs=5)
    description = await handle.describe()
    assert description.typed_search_attributes.get(SLA_STATE) == "met"
    emitted = await stack.database.all(
        select(WebhookEvent.type).where(WebhookEvent.process_id == handle.id)
    )
    # What webhooks and automations on tickets take: each clock met, then the outcome.
    assert sorted(emitted) == ["ticket.met", "ticket.met", "ticket.resolved"]
