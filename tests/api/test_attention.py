"""``GET /v1/attention``: overdue tasks, failing activities and failed automation steps,
each with what can be done, within the caller's tenant."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy, SearchAttributePair, TypedSearchAttributes
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from crm.store.db import Database
from crm.store.models import AuditEntry, Task
from tests.api.conftest import KeyedClient
from tests.conftest import eventually
from workflows.common import CUSTOMER_ID, PROCESS, STAGE, TENANT


@activity.defn(name="reach_the_crm")
async def reach_the_crm() -> None:
    raise RuntimeError("crm.example.com: connection refused")


@workflow.defn(name="AttentionProbeWorkflow")
class AttentionProbeWorkflow:
    """A run whose one activity fails on every attempt, retried every few milliseconds
    (a real process's retries take tens of seconds to reach attempt 5)."""

    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(
            reach_the_crm,
            start_to_close_timeout=timedelta(seconds=5),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(milliseconds=20), backoff_coefficient=1.0
            ),
        )


async def attention(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    answer = await client.get("/v1/attention")
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()
    return items


def about(items: list[dict[str, Any]], process_id: str) -> list[dict[str, Any]]:
    return [item for item in items if item["process_id"] == process_id]


async def test_an_overdue_task_and_a_failed_automation_step_show_to_their_tenant_only(
    as_key: KeyedClient, database: Database
) -> None:
    process_id = f"onboarding-c-{uuid.uuid4().hex[:10]}@a"
    automation_run = f"automation-deal-handoff-deal-d-{uuid.uuid4().hex[:6]}@a"
    due = datetime.now(UTC) - timedelta(hours=3)

    def add_rows(session: Any) -> None:
        session.add(
            Task(
                key=f"{process_id}/kickoff",
                process_id=process_id,
                customer_id="c-1",
                assignee_id="csm-ana",
                kind="kickoff",
                title="Kickoff call",
                due_at=due,
                tenant="a",
            )
        )
        session.add(
            AuditEntry(
                key=f"{automation_run}/failed",
                process_id=automation_run,
                step="failed:notify_owner",
                detail={"reason": "notify_owner: the deal has no owner"},
            )
        )

    await database.run(add_rows)

    seen_by_a = await attention(as_key("tenant-a"))
    seen_by_b = await attention(as_key("tenant-b"))

    [task] = about(seen_by_a, process_id)
    assert task["kind"] == "task_overdue"
    assert "Kickoff call" in task["subject"] and "csm-ana" in task["subject"]
    assert datetime.fromisoformat(task["since"]) == due
    assert task["actions"] == ["complete", "cancel"]
    [failed] = about(seen_by_a, automation_run)
    assert failed["kind"] == "automation_step_failed"
    assert failed["problem"] == "notify_owner: the deal has no owner"
    assert failed["actions"] == ["enroll"]
    assert about(seen_by_b, process_id) == [] and about(seen_by_b, automation_run) == []


async def test_a_run_whose_activity_keeps_failing_shows_with_retry_and_cancel(
    as_key: KeyedClient, dev_client: Client
) -> None:
    task_queue = f"attention-{uuid.uuid4()}"
    run_id = f"probe-c-{uuid.uuid4().hex[:10]}@a"
    async with Worker(
        dev_client,
        task_queue=task_queue,
        workflows=[AttentionProbeWorkflow],
        activities=[reach_the_crm],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        handle = await dev_client.start_workflow(
            AttentionProbeWorkflow.run,
            id=run_id,
            task_queue=task_queue,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(PROCESS, "probe"),
                    SearchAttributePair(CUSTOMER_ID, "c-1"),
                    SearchAttributePair(STAGE, "starting"),
                    SearchAttributePair(TENANT, "a"),
                ]
            ),
            memo={"tenant": "a"},
        )
        try:
            seen_by_a = await eventually(
                lambda: attention(as_key("tenant-a")),
                lambda items: len(about(items, run_id)) == 1,
                within=20,
            )
            seen_by_b = await attention(as_key("tenant-b"))
        finally:
            await handle.terminate("test over")

    [failing] = about(seen_by_a, run_id)
    assert failing["kind"] == "activity_failing"
    assert "reach_the_crm" in failing["subject"]
    assert "connection refused" in failing["problem"]
    assert failing["actions"] == ["retry", "cancel"]
    assert failing["since"] is not None
    assert about(seen_by_b, run_id) == []
