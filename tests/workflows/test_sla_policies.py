"""Tickets under SLA policies on the time-skipping server, with the real worker and activities.

Each ticket opens on a Monday 09:00 in Stockholm (business hours 09:00-17:00)
under a policy the test writes as the policy file would: a next-reply clock
restarted by each customer reply, a periodic update that breaches, a
four-level ladder, and a ticket re-matched to the Manila team's policy when
its group changes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from sqlmodel import col, select
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowFailureError

from crm.automations.record_events import EventSettings, take_record_event
from crm.domain.process_outcomes import PROCESS_OBJECT_PREFIX
from crm.policy import Policy
from crm.policy.sla import SlaPolicy
from crm.store.models import WebhookEvent
from crm.store.suppressions import suppress
from tests.support.sla import (
    STOCKHOLM,
    TicketHandle,
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
from workflows.automation_types import RecordEvent

LEAD = ["sam.lindqvist@example.com"]
ASSIGNEE = ["ivy.chen@example.com"]
SENIOR = "support-senior"
#: The marker the SDK records a local activity's result under.
LOCAL_ACTIVITY_MARKER = "core_local_activity"


def policies(*specs: dict[str, Any], **calendars: dict[str, Any]) -> Policy:
    """The default policy with the SLA ``policies`` and group ``calendars`` given."""
    return Policy(sla=SlaPolicy.model_validate({"policies": specs, "calendars": calendars}))


def breach_to_lead(name: str = "breach") -> dict[str, Any]:
    return {"name": name, "at": "100%", "action": "notify_role", "role": "team_lead"}


async def open_ticket(stack: Stack, policy: Policy, **fields: Any) -> tuple[TicketHandle, datetime]:
    monday = next_local(await stack.env.get_current_time(), "mon", time(9), STOCKHOLM)
    await sleep_until(stack.env, monday)
    ticket = ticket_input(
        created_at=monday, timezone=STOCKHOLM, policy=policy, with_policies=True, **fields
    )
    return await start_ticket(stack.client, stack.task_queue, ticket), monday


def at(monday: datetime, hour: int, minute: int = 0) -> datetime:
    return on_day(monday, 0, time(hour, minute), STOCKHOLM)


def steps_of(stack: Stack, process_id: str) -> list[tuple[str | None, list[str]]]:
    return [(m.header("X-Crmflow-Step"), m.recipients) for m in mail_of(stack.maildir, process_id)]


async def test_a_next_reply_clock_restarted_three_times_breaches_twice(stack: Stack) -> None:
    chat = {
        "name": "chat",
        "when": {"tags": ["chat"]},
        "clocks": {
            "first_response": {"targets": {"normal": "1h"}},
            "next_reply": {"targets": {"normal": "1h"}, "ladder": [breach_to_lead()]},
            "resolution": {"targets": {"normal": "24h"}},
        },
    }
    handle, monday = await open_ticket(stack, policies(chat), tags=["chat"])
    replies = [  # (customer writes, agent answers): within the hour, 5 and 20 minutes late
        ((10, 0), (10, 30)),
        ((11, 0), (12, 5)),
        ((13, 0), (14, 20)),
    ]
    await sleep_until(stack.env, at(monday, 9, 20))
    await send_event(handle, "agent_replied", public=True)
    for asked, answered in replies:
        await sleep_until(stack.env, at(monday, *asked))
        await send_event(handle, "customer_replied")
        await send_event(handle, "agent_replied", public=False)  # a note answers nobody
        await sleep_until(stack.env, at(monday, *answered))
        await send_event(handle, "agent_replied")

    state = await state_of(handle)
    assert state.details["policy"] == "chat"
    fired = escalation_times(state)
    assert_close(fired["next_reply_breach"], at(monday, 14))  # the last cycle's
    assert [(e["cycle"], e["to"]) for e in state.details["escalations"]] == [
        (2, "lead-sam"),
        (3, "lead-sam"),
    ]
    assert steps_of(stack, handle.id) == [
        ("email_next_reply_2_breach", LEAD),
        ("email_next_reply_3_breach", LEAD),
    ]
    assert [t.kind for t in await tasks_of(stack.database, handle.id)] == [
        "sla_next_reply_2_breach",
        "sla_next_reply_3_breach",
    ]

    await send_event(handle, "resolved")
    result = await handle.result()
    clocks = {c.clock: c for c in result.clocks}
    assert (clocks["next_reply"].breaches, clocks["next_reply"].cycles) == (2, 3)
    assert clocks["next_reply"].used_seconds == pytest.approx((30 + 65 + 80) * 60, abs=5)
    assert (clocks["first_response"].status, clocks["resolution"].status) == ("met", "met")
    outcome = await outcome_of(stack.database, handle.id)
    assert outcome is not None
    assert outcome.clocks["next_reply"]["breaches"] == 2
    assert outcome.clocks["next_reply"]["status"] == "breached"


async def test_each_cycle_met_emits_ticket_met_and_each_breach_names_its_clock(
    stack: Stack,
) -> None:
    """A reply within the target emits ``ticket.met`` for its clock's cycle; a breach's
    ``ticket.breached`` names the clock and cycle; the resolution meets the clocks still
    running. A cancelled ticket's running clocks are not met."""
    chat = {
        "name": "chat",
        "clocks": {
            "first_response": {"targets": {"normal": "1h"}},
            "next_reply": {"targets": {"normal": "1h"}, "ladder": [breach_to_lead()]},
            "resolution": {"targets": {"normal": "24h"}},
        },
    }
    handle, monday = await open_ticket(stack, policies(chat))
    await sleep_until(stack.env, at(monday, 9, 20))
    await send_event(handle, "agent_replied", occurred_at=at(monday, 9, 20))
    await sleep_until(stack.env, at(monday, 10))
    await send_event(handle, "customer_replied", occurred_at=at(monday, 10))
    await sleep_until(stack.env, at(monday, 10, 30))
    await send_event(handle, "agent_replied", occurred_at=at(monday, 10, 30))
    await sleep_until(stack.env, at(monday, 11))
    await send_event(handle, "customer_replied", occurred_at=at(monday, 11))
    await sleep_until(stack.env, at(monday, 12, 30))  # the second cycle breached at 12:00
    await send_event(handle, "resolved", occurred_at=at(monday, 12, 30))
    await handle.result()

    events = await stack.database.all(
        select(WebhookEvent)
        .where(WebhookEvent.process_id == handle.id)
        .order_by(col(WebhookEvent.id))
    )
    met = [e.data for e in events if e.type == "ticket.met"]
    assert [(m["clock"], m["cycle"]) for m in met] == [
        ("first_response", 1),
        ("next_reply", 1),
        ("resolution", 1),
    ]
    first, reply, resolution = met
    assert (first["target_seconds"], first["used_seconds"]) == (3600, pytest.approx(1200, abs=2))
    assert datetime.fromisoformat(first["met_at"]) == at(monday, 9, 20)
    assert datetime.fromisoformat(reply["started_at"]) == at(monday, 10)
    assert reply["used_seconds"] == pytest.approx(1800, abs=2)
    assert datetime.fromisoformat(resolution["met_at"]) == at(monday, 12, 30)
    assert {m["priority"] for m in met} == {"normal"} and all(m["assignee_id"] for m in met)
    breaches = [e.data for e in events if e.type == "ticket.breached"]
    assert [(b["clock"], b["cycle"]) for b in breaches] == [("next_reply", 2)]
    resolved = [e.data for e in events if e.type == "ticket.resolved"]
    assert [(r["clock"], r["cycle"], r["breached_clocks"]) for r in resolved] == [
        ("", 0, ["next_reply"])
    ]

    cancelled, monday = await open_ticket(stack, policies(chat))
    await sleep_until(stack.env, at(monday, 9, 20))
    await cancelled.cancel()
    with pytest.raises(WorkflowFailureError):
        await cancelled.result()
    types = [
        e.type
        for e in await stack.database.all(
            select(WebhookEvent).where(WebhookEvent.process_id == cancelled.id)
        )
    ]
    assert "ticket.met" not in types and "ticket.cancelled" in types


async def test_an_event_delivered_late_counts_from_when_it_happened(stack: Stack) -> None:
    chat = {
        "name": "chat",
        "clocks": {
            "first_response": {"targets": {"normal": "1h"}},
            "next_reply": {"targets": {"normal": "1h"}, "ladder": [breach_to_lead()]},
        },
    }
    handle, monday = await open_ticket(stack, policies(chat))
    await sleep_until(stack.env, at(monday, 9, 20))
    await send_event(handle, "agent_replied", occurred_at=at(monday, 9, 20))
    await sleep_until(stack.env, at(monday, 10, 40))  # the helpdesk delivers 40 minutes late
    await send_event(handle, "customer_replied", occurred_at=at(monday, 10))
    state = await state_of(handle)
    assert datetime.fromisoformat(state.details["clocks"]["next_reply"]["due"]) == at(monday, 11)

    await sleep_until(stack.env, at(monday, 11, 30))
    # The agent answered at 10:55; the run acted on the breach at 11:00 before hearing of
    # it, so the answer counts from 11:00, not from when it reached the run.
    await send_event(handle, "agent_replied", occurred_at=at(monday, 10, 55))
    state = await state_of(handle)
    assert_close(escalation_times(state)["next_reply_breach"], at(monday, 11))
    assert steps_of(stack, handle.id) == [("email_next_reply_breach", LEAD)]

    await send_event(handle, "resolved")
    clocks = {c.clock: c for c in (await handle.result()).clocks}
    assert clocks["next_reply"].used_seconds == pytest.approx(60 * 60, abs=5)
    assert (clocks["next_reply"].breaches, clocks["first_response"].status) == (1, "met")


async def test_replies_delivered_late_together_both_count_from_when_they_happened(
    stack: Stack,
) -> None:
    """The helpdesk delivers an agent reply and a customer reply of 10:00 at 10:20 and
    10:25. The run looks at its clocks after the first (nothing reached), and that look
    does not move when the second counts from."""
    chat = {
        "name": "chat",
        "clocks": {
            "first_response": {"targets": {"normal": "2h"}},
            "next_reply": {"targets": {"normal": "1h"}, "ladder": [breach_to_lead()]},
        },
    }
    handle, monday = await open_ticket(stack, policies(chat))
    await sleep_until(stack.env, at(monday, 10, 20))
    await send_event(handle, "agent_replied", occurred_at=at(monday, 10))
    await sleep_until(stack.env, at(monday, 10, 25))
    await send_event(handle, "customer_replied", occurred_at=at(monday, 10))
    state = await state_of(handle)
    assert datetime.fromisoformat(state.details["clocks"]["next_reply"]["due"]) == at(monday, 11)
    await sleep_until(stack.env, at(monday, 11, 5))
    assert_close(escalation_times(await state_of(handle))["next_reply_breach"], at(monday, 11))


async def test_a_silent_ticket_breaches_its_periodic_update_after_a_reminder(
    stack: Stack,
) -> None:
    updates = {
        "name": "updates",
        "clocks": {
            "periodic_update": {
                "targets": {"normal": "2h"},
                "ladder": [
                    {"name": "reminder", "at": "-30m", "action": "notify_assignee"},
                    breach_to_lead(),
                ],
            },
            "resolution": {"targets": {"normal": "24h"}},
        },
    }
    handle, monday = await open_ticket(stack, policies(updates))
    await sleep_until(stack.env, at(monday, 9, 15))
    await send_event(handle, "agent_replied")
    await sleep_until(stack.env, at(monday, 10, 30))
    await send_event(handle, "agent_replied")  # restarts: due 12:30
    due = (await state_of(handle)).due
    assert_close(due["periodic_update_breach"], at(monday, 12, 30), within=1)
    assert_close(due["periodic_update_reminder"], at(monday, 12), within=1)

    await sleep_until(stack.env, at(monday, 12, 31))
    state = await state_of(handle)
    fired = escalation_times(state)
    assert_close(fired["periodic_update_reminder"], at(monday, 12))
    assert_close(fired["periodic_update_breach"], at(monday, 12, 30))
    assert state.details["sla_state"] == "breached"
    assert steps_of(stack, handle.id) == [
        ("email_periodic_update_2_reminder", ASSIGNEE),
        ("email_periodic_update_2_breach", LEAD),
    ]
    await send_event(handle, "status_changed", status="solved")
    result = await handle.result()
    assert result.outcome == "solved"
    assert {c.clock: c.breaches for c in result.clocks} == {"periodic_update": 1, "resolution": 0}


def local_activities_after(events: list[HistoryEvent], index: int) -> tuple[list[str], int]:
    """The local activities recorded from ``events[index]`` on, up to the next timer, and
    how many workflow tasks completed among them."""
    names, tasks, seen = [], 0, 0
    for event in events[index + 1 :]:
        if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            break
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            seen += 1
        if event.marker_recorded_event_attributes.marker_name == LOCAL_ACTIVITY_MARKER:
            data = event.marker_recorded_event_attributes.details["data"].payloads[0].data
            names.append(json.loads(data)["activity_type"])
            tasks = seen
    return names, tasks


#: A first-response clock that warns the assignee at 75 % of an hour.
QUICK = {
    "name": "quick",
    "clocks": {
        "first_response": {
            "targets": {"normal": "1h"},
            "ladder": [{"name": "warning", "at": "75%", "action": "notify_assignee"}],
        },
    },
}


def timers_of(events: list[HistoryEvent]) -> list[tuple[int, datetime]]:
    """Each timer's started event's index and the instant it was set for (its start plus
    its duration: a timer counts from when the server records it)."""
    return [
        (
            index,
            event.event_time.ToDatetime(tzinfo=UTC)
            + event.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta(),
        )
        for index, event in enumerate(events)
        if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED
    ]


async def test_the_first_deadline_is_set_again_from_a_task_that_does_nothing_else(
    stack: Stack,
) -> None:
    """Under sla-first-wait-rearmed, the run's opening task (which assigns the ticket) sets
    its timer for 10 s before the first deadline; the task that timer wakes runs no step
    and sets the timer of the deadline itself, so how long the opening task ran after its
    ``now`` does not make the warning late."""
    handle, monday = await open_ticket(stack, policies(QUICK))
    await sleep_until(stack.env, at(monday, 9, 50))
    events = list((await handle.fetch_history()).events)
    (opening, early), (again, on_time) = timers_of(events)[:2]
    assert_close(early, at(monday, 9, 45) - timedelta(seconds=10), within=1)
    assert_close(on_time, at(monday, 9, 45), within=1)
    assert local_activities_after(events, opening) == ([], 0), "the wake runs no step"
    names, _ = local_activities_after(events, again)
    assert sorted(names) == ["record_level", "send_email"], "the deadline's task takes the steps"
    fired = escalation_times(await state_of(handle))
    assert_close(fired["first_response_warning"], at(monday, 9, 45))


async def test_a_level_takes_its_steps_in_the_workflow_task_that_reached_it(stack: Stack) -> None:
    """Under the sla-local-steps patch, steps are local activities: the warning's email,
    notice and milestone are recorded by the one workflow task after its timer fired, and
    the run schedules no activity task on the queue. Under sla-level-at-once they start
    together; under sla-level-records the notice and milestone are one local activity,
    written in one transaction beside the email."""
    handle, monday = await open_ticket(stack, policies(QUICK))
    await sleep_until(stack.env, at(monday, 9, 50))
    state = await state_of(handle)
    assert_close(escalation_times(state)["first_response_warning"], at(monday, 9, 45))
    events = list((await handle.fetch_history()).events)
    scheduled = [e for e in events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
    assert scheduled == []
    fired = max(  # the timer of the warning (the run's first wakes 10 s before it)
        i for i, e in enumerate(events) if e.event_type == EventType.EVENT_TYPE_TIMER_FIRED
    )
    names, workflow_tasks = local_activities_after(events, fired)
    assert (sorted(names), workflow_tasks) == (["record_level", "send_email"], 1)
    assert steps_of(stack, handle.id) == [("email_first_response_warning", ASSIGNEE)]
    notices = await notifications_of(stack.database, handle.id)
    assignee = state.details["assignee_id"]
    assert [(n.kind, n.staff_id) for n in notices] == [("sla_first_response_warning", assignee)]
    milestones = await stack.database.all(
        select(WebhookEvent).where(WebhookEvent.process_id == handle.id)
    )
    assert [m.type for m in milestones] == ["ticket.warning"]


async def test_a_four_level_ladder_reminds_escalates_reassigns_and_reaches_the_manager(
    stack: Stack,
) -> None:
    ladder = {
        "name": "ladder",
        "clocks": {
            "resolution": {
                "targets": {"normal": "4h"},
                "ladder": [
                    {"name": "reminder", "at": "-1h", "action": "notify_assignee"},
                    breach_to_lead(),
                    {
                        "name": "senior",
                        "at": "+1h",
                        "action": "reassign",
                        "group": "support-senior",
                    },
                    {"name": "manager", "at": "150%", "action": "notify_role", "role": "manager"},
                ],
            }
        },
    }
    handle, monday = await open_ticket(stack, policies(ladder))
    await sleep_until(stack.env, at(monday, 15, 1))
    state = await state_of(handle)
    fired = escalation_times(state)
    for level, hour in (("reminder", 12), ("breach", 13), ("senior", 14), ("manager", 15)):
        assert_close(fired[f"resolution_{level}"], at(monday, hour))
    assert state.details["assignee_id"] == "agent-kai"  # moved to the senior pool at 14:00
    assert [e["to"] for e in state.details["escalations"]] == [
        "agent-ivy",
        "lead-sam",
        "agent-kai",
        "mgr-hana",
    ]
    assert steps_of(stack, handle.id) == [
        ("email_resolution_reminder", ASSIGNEE),
        ("email_resolution_breach", LEAD),
        ("email_resolution_manager", ["hana.berg@example.com"]),
    ]
    assert [(t.assignee_id, t.kind) for t in await tasks_of(stack.database, handle.id)] == [
        ("lead-sam", "sla_resolution_breach"),
        ("mgr-hana", "sla_resolution_manager"),
    ]
    await send_event(handle, "resolved")
    result = await handle.result()
    assert result.clocks[0].levels_reached == ["reminder", "breach", "senior", "manager"]


async def test_a_ticket_moved_to_the_manila_group_is_rematched_and_timed_in_manila(
    stack: Stack,
) -> None:
    manila = {
        "name": "manila",
        "when": {"group": ["manila"]},
        "clocks": {
            "first_response": {"targets": {"normal": "2h"}, "ladder": [breach_to_lead()]},
            "resolution": {"targets": {"normal": "8h"}},
        },
    }
    hours = {day: "08:00-20:00" for day in ("mon", "tue", "wed", "thu", "fri")}
    policy = policies(manila, manila={"timezone": "Asia/Manila", "hours": hours})
    handle, monday = await open_ticket(stack, policy, group="stockholm")
    before = await state_of(handle)
    assert before.details["policy"] == "default"
    assert before.due["first_response_breach"] == at(monday, 17)

    # At 10:00 here (17:00 in Manila) the ticket moves: an hour used of two, and the last
    # hour runs in Manila's business hours, to 18:00 there.
    await sleep_until(stack.env, at(monday, 10))
    await send_event(handle, "fields_changed", group="manila")
    after = await state_of(handle)
    assert (after.details["policy"], after.details["timezone"]) == ("manila", "Asia/Manila")
    assert_close(after.due["first_response_breach"], at(monday, 11), within=1)
    assert after.details["clocks"]["first_response"]["used_seconds"] == pytest.approx(3600, 1)

    await sleep_until(stack.env, at(monday, 11, 1))
    mail = mail_of(stack.maildir, handle.id)
    assert [m.header("X-Crmflow-Step") for m in mail] == ["email_first_response_breach"]
    due_in_manila = local(at(monday, 11), "Asia/Manila").strftime("%H:%M PST")
    assert due_in_manila in mail[0].body  # Philippine time, as the team reads it
    await send_event(handle, "resolved")
    result = await handle.result()
    assert {c.clock: c.target_seconds for c in result.clocks} == {
        "first_response": 2 * 3600,
        "resolution": 8 * 3600,
    }


async def test_a_breach_offered_again_after_a_retried_workflow_task_is_the_same_event(
    stack: Stack,
) -> None:
    """A local activity runs inside its workflow task: when that task times out after the
    breach was offered, the next attempt offers it again at a later ``workflow.now()``. The
    offer is the same event (its id names the run and the step), not an id reused."""
    strict = {"name": "strict", "clocks": {"first_response": {"targets": {"normal": "1h"}}}}
    handle, monday = await open_ticket(stack, policies(strict))
    run_id = (await handle.describe()).run_id
    earlier_attempt = RecordEvent(
        event_id=f"{handle.id}/offer_first_response_breach@{run_id}",
        object=PROCESS_OBJECT_PREFIX + "sla",
        record_id=handle.id.removeprefix("sla-"),
        type="breached",
        occurred_at=at(monday, 10) - timedelta(seconds=12),
        record={"process_id": handle.id},
    )
    settings = EventSettings(stack.database, stack.policy, stack.task_queue)
    await take_record_event(stack.client, settings, None, earlier_attempt)

    await sleep_until(stack.env, at(monday, 10, 30))
    offered = {s.step: s.detail for s in (await state_of(handle)).steps}
    assert not offered["offered:first_response_breach"].startswith("not offered")
    await send_event(handle, "resolved")
    clocks = {c.clock: c for c in (await handle.result()).clocks}
    assert (clocks["first_response"].status, clocks["first_response"].breaches) == ("breached", 1)


async def test_a_breach_email_to_a_bounced_address_is_noted_and_the_ticket_goes_on(
    stack: Stack,
) -> None:
    strict = {
        "name": "strict",
        "clocks": {"first_response": {"targets": {"normal": "1h"}, "ladder": [breach_to_lead()]}},
    }
    handle, monday = await open_ticket(stack, policies(strict))
    await stack.database.run(lambda session: suppress(session, LEAD[0], "all", "hard_bounce"))

    await sleep_until(stack.env, at(monday, 10, 30))
    steps = {s.step: s.detail for s in (await state_of(handle)).steps}
    assert steps["email:first_response_breach"].startswith("not sent: ")
    assert "suppressed" in steps["email:first_response_breach"]
    assert [t.kind for t in await tasks_of(stack.database, handle.id)] == [
        "sla_first_response_breach"
    ]
    await send_event(handle, "resolved")
    clocks = {c.clock: c for c in (await handle.result()).clocks}
    assert (clocks["first_response"].status, clocks["first_response"].breaches) == ("breached", 1)
