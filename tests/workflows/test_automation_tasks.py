"""An automation's task step that waits for a person to complete the task, on the
time-skipping server: done in time it goes on, not done it takes ``on_timeout``."""

from __future__ import annotations

from typing import Any

import yaml
from temporalio.client import WorkflowHandle

from crm.automations.validation import parse_definition
from crm.policy import Policy
from crm.store.models import Task
from crm.store.people_work import claim_task
from crm.store.task_completion import complete_task
from tests.conftest import eventually
from tests.support.automations import (
    EXAMPLES,
    example,
    mail_about,
    new_record_id,
    record_event,
    start_run,
    tasks_for_record,
)
from tests.support.stack import Stack
from workflows.task_types import TASK_CHANGED, TaskChange, pool_assignee


def hot_lead(lead_id: str) -> dict[str, object]:
    return {"name": f"Lead {lead_id}", "rating": "hot", "owner_id": "rep-eva"}


async def start_hot_lead_call(stack: Stack) -> tuple[WorkflowHandle[Any, Any], str]:
    """A run of ``hot-lead-call`` for a new lead that turned hot; its handle and lead id."""
    definition = example("hot-lead-call")
    lead_id = new_record_id("l")
    now = await stack.env.get_current_time()
    event = record_event(
        definition, lead_id, "updated", hot_lead(lead_id), {"rating": "warm"}, at=now
    )
    return await start_run(stack.client, stack.task_queue, definition, event), lead_id


async def call_task(stack: Stack, lead_id: str) -> Task:
    [task] = await eventually(
        lambda: tasks_for_record(stack.database, lead_id), lambda tasks: len(tasks) == 1
    )
    found: Task = task
    return found


def wait_noted(state: dict[str, Any]) -> list[str]:
    return [step["detail"] for step in state["steps"] if step["step"] == "wait:call"]


async def test_a_call_done_in_time_ends_the_run_as_called(stack: Stack) -> None:
    handle, lead_id = await start_hot_lead_call(stack)
    task = await call_task(stack, lead_id)

    await stack.database.run(lambda session: complete_task(session, task.id or 0, "rep-eva"))
    await handle.signal(
        TASK_CHANGED, TaskChange(task.id or 0, task.kind, "done", "rep-eva", "rep-eva", "called")
    )
    result = await handle.result()

    assert result.outcome == "called"
    assert mail_about(stack.maildir, "mia.torres@example.com", f"Lead {lead_id}") == []


async def test_a_call_not_done_in_a_business_day_tells_the_manager(stack: Stack) -> None:
    handle, lead_id = await start_hot_lead_call(stack)

    result = await handle.result()

    assert result.outcome == "not_called"
    [told] = mail_about(stack.maildir, "mia.torres@example.com", f"Lead {lead_id}")
    assert told.subject == f"Lead {lead_id} is hot and nobody called"
    assert wait_noted(await handle.query("state")) == ["task not done in time"]


async def test_a_call_done_while_the_run_could_not_be_told_counts_as_done(stack: Stack) -> None:
    handle, lead_id = await start_hot_lead_call(stack)
    task = await call_task(stack, lead_id)

    # The API completed it, but Temporal was away when it went to signal the run.
    await stack.database.run(lambda session: complete_task(session, task.id or 0, "rep-eva"))
    result = await handle.result()

    assert result.outcome == "called"
    assert mail_about(stack.maildir, "mia.torres@example.com", f"Lead {lead_id}") == []
    assert wait_noted(await handle.query("state")) == ["task done (the run was not told)"]


async def test_a_task_left_in_a_pool_waits_there_until_a_member_claims_it(stack: Stack) -> None:
    document = yaml.safe_load((EXAMPLES / "hot-lead-call.yaml").read_text())
    document["steps"][0]["task"]["assignee"] = {"pool": "sales-emea", "claim": True}
    definition = parse_definition(document, Policy())
    lead_id = new_record_id("l")
    now = await stack.env.get_current_time()
    event = record_event(
        definition, lead_id, "updated", hot_lead(lead_id), {"rating": "warm"}, at=now
    )
    handle = await start_run(stack.client, stack.task_queue, definition, event)
    [task] = await eventually(
        lambda: tasks_for_record(stack.database, lead_id), lambda tasks: len(tasks) == 1
    )
    assert task.assignee_id == pool_assignee("sales-emea")

    claimed = await stack.database.run(
        lambda session: claim_task(session, task.id or 0, "sales-emea", "rep-finn", None)
    )
    await stack.database.run(lambda session: complete_task(session, task.id or 0, "rep-finn"))
    await handle.signal(
        TASK_CHANGED, TaskChange(task.id or 0, task.kind, "done", "rep-finn", "rep-finn")
    )

    assert claimed is not None and claimed.assignee_id == "rep-finn"
    assert (await handle.result()).outcome == "called"
