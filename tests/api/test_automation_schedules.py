"""Automations on a schedule, through the API against the real dev server: activating one
makes a Temporal Schedule (the Web UI's Schedules page) that starts runs at the cron's
instants in its time zone; pausing pauses it, archiving deletes it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import select
from temporalio.client import Client, ScheduleActionStartWorkflow, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from crm.store.db import Database
from crm.store.models import Task
from tests.api.conftest import KeyedClient
from tests.conftest import eventually
from workflows.automation import AutomationWorkflow
from workflows.common import AUTOMATION_ID

PROBLEM_JSON = "application/problem+json"
STOCKHOLM = ZoneInfo("Europe/Stockholm")


def weekly_review(automation_id: str, **trigger: Any) -> dict[str, Any]:
    """Every Monday at 09:00 in Stockholm, a pipeline review task for the team lead."""
    return {
        "id": automation_id,
        "name": "Weekly pipeline review",
        "object": "team",
        "trigger": {"schedule": {"cron": "0 9 * * MON", "timezone": "Europe/Stockholm"}} | trigger,
        "steps": [
            {
                "id": "review",
                "task": {
                    "assignee": {"staff": "lead-sam"},
                    "title": "Pipeline review for the week of {{ now }}",
                    "due": {"amount": 4, "unit": "business_hours"},
                },
            }
        ],
    }


async def test_a_scheduled_automation_follows_its_state_as_a_temporal_schedule(
    as_key: KeyedClient, dev_client: Client, database: Database
) -> None:
    admin = as_key("admin-a")
    automation_id = f"review-{uuid.uuid4().hex[:8]}"
    created = await admin.post("/v1/automations", json=weekly_review(automation_id))
    assert created.status_code == 201, created.text
    handle = dev_client.get_schedule_handle(f"automation-{automation_id}@a")

    assert (await admin.post(f"/v1/automations/{automation_id}/activate")).status_code == 200
    described = await handle.describe()
    assert described.schedule.spec.time_zone_name == "Europe/Stockholm"
    assert described.schedule.state.paused is False
    assert await described.memo_value("tenant") == "a"
    action = described.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.workflow == "AutomationWorkflow"
    assert action.id == f"automation-{automation_id}-team-scheduled@a"
    local = [at.astimezone(STOCKHOLM) for at in described.info.next_action_times]
    assert local and all((at.weekday(), at.hour, at.minute) == (0, 9, 0) for at in local)

    await handle.trigger()  # as if the Monday had come
    runs = await eventually(
        lambda: _runs(dev_client, automation_id), lambda found: len(found) == 1, within=15
    )
    run = dev_client.get_workflow_handle_for(AutomationWorkflow.run, runs[0])
    result = await run.result()
    assert result.outcome == "completed"
    assert (await run.describe()).status == WorkflowExecutionStatus.COMPLETED
    tasks = await database.all(_tasks_for("lead-sam"))
    assert any(task.title.startswith("Pipeline review for the week of") for task in tasks)

    assert (await admin.post(f"/v1/automations/{automation_id}/pause")).status_code == 200
    assert (await handle.describe()).schedule.state.paused is True
    assert (await admin.post(f"/v1/automations/{automation_id}/activate")).status_code == 200
    assert (await handle.describe()).schedule.state.paused is False

    assert (await admin.post(f"/v1/automations/{automation_id}/archive")).status_code == 200
    with pytest.raises(RPCError) as gone:
        await handle.describe()
    assert gone.value.status == RPCStatusCode.NOT_FOUND


async def test_a_schedule_that_cannot_fire_is_refused_on_submit(as_key: KeyedClient) -> None:
    admin = as_key("admin-a")
    cases = {
        "/trigger/schedule/cron": {"schedule": {"cron": "0 25 * * *"}},
        "/trigger/schedule/timezone": {"schedule": {"cron": "0 9 * * *", "timezone": "Mars/Base"}},
        "/trigger": {"schedule": {"cron": "0 9 * * *"}, "types": ["created"]},
    }
    for pointer, trigger in cases.items():
        document = weekly_review(f"bad-{uuid.uuid4().hex[:8]}")
        document["trigger"] = trigger
        answer = await admin.post("/v1/automations/validate", json=document)
        assert answer.status_code == 422, (pointer, answer.text)
        assert answer.headers["content-type"] == PROBLEM_JSON
        assert pointer in [error["pointer"] for error in answer.json()["errors"]], answer.text


async def test_a_record_event_enrols_nobody_in_a_scheduled_automation(
    as_key: KeyedClient,
) -> None:
    admin, service = as_key("admin-a"), as_key("tenant-a")
    automation_id = f"review-{uuid.uuid4().hex[:8]}"
    assert (await admin.post("/v1/automations", json=weekly_review(automation_id))).is_success
    assert (await admin.post(f"/v1/automations/{automation_id}/activate")).is_success
    event = {
        "event_id": f"ev-{uuid.uuid4().hex}",
        "object": "team",
        "record_id": "t-1",
        "type": "created",
        "occurred_at": datetime.now(UTC).isoformat(),
        "record": {},
    }
    answer = await service.post("/v1/records/events", json=event)
    assert answer.status_code == 202, answer.text
    assert answer.json()["enrolled"] == []
    assert (await admin.post(f"/v1/automations/{automation_id}/archive")).is_success


async def _runs(client: Client, automation_id: str) -> list[str]:
    query = f"{AUTOMATION_ID.name} = '{automation_id}'"
    return [run.id async for run in client.list_workflows(query)]


def _tasks_for(assignee: str) -> Any:
    return select(Task).where(Task.assignee_id == assignee)
