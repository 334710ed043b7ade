"""What needs a person: overdue tasks, approvals past a step's timeout, runs whose
pending activity keeps failing, automations whose steps failed.

Each item names what is wrong, since when, and the actions that fit it, by name:
``complete`` (``POST /v1/tasks/{id}/complete``), ``decide``
(``POST /v1/approvals/{id}/decision``, by the approver), ``cancel``
(``POST /v1/processes/{id}/cancel``), ``retry`` (the activity retries on its own:
fix the cause, or reset the run in the Temporal Web UI) and ``enroll`` (enrol the
record again: ``POST /v1/automations/{id}/enroll``). Every source is bounded; when a
bound cuts the look short, an item of kind ``incomplete`` says so.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel
from sqlmodel import col, or_, select
from temporalio.client import Client, WorkflowExecution
from temporalio.service import RPCError, RPCStatusCode

from api.runs import StateUnanswered, query_state
from api.visibility import list_up_to, scoped, visible_to
from crm.platform.principals import Principal
from crm.platform.settings import Settings
from crm.platform.temporal import TemporalUnavailable
from crm.store.db import Database
from crm.store.models import AuditEntry, Task, as_utc
from workflows.common import PROCESS

#: A pending activity on this attempt or later keeps failing.
FAILING_ATTEMPT = 5
#: The most running runs described to find failing activities (newest started first).
MAX_RUNS_DESCRIBED = 100
#: The most running approvals whose ``state`` is read.
MAX_APPROVALS = 200
#: The most overdue tasks, and failed automation steps, listed.
MAX_ROWS = 100
#: How far back failed automation steps are looked for.
FAILURE_WINDOW = timedelta(days=7)
#: How many runs are described or queried at once.
CONCURRENCY = 10


class AttentionItem(BaseModel):
    """One thing that needs a person: what, where, since when, and what can be done."""

    kind: str
    process_id: str | None
    subject: str
    problem: str
    since: datetime | None
    actions: list[str]


async def needs_attention(
    client: Client, database: Database, settings: Settings, principal: Principal
) -> list[AttentionItem]:
    """Everything within ``principal``'s tenant that needs attention now, oldest first.

    Raises TemporalUnavailable when Temporal cannot be reached.
    """
    now = datetime.now(UTC)
    found = await asyncio.gather(
        _overdue_tasks(database, principal, now),
        _overdue_approvals(client, principal, now),
        _failing_activities(client, principal),
        _failed_automation_steps(database, principal, now),
    )
    items = [item for group in found for item in group]
    return sorted(items, key=lambda item: (item.since is None, item.since or now))


async def _overdue_tasks(
    database: Database, principal: Principal, now: datetime
) -> list[AttentionItem]:
    statement = select(Task).where(Task.status == "open", col(Task.due_at) < now)
    if principal.tenant is not None:
        statement = statement.where(Task.tenant == principal.tenant)
    rows = await database.all(statement.order_by(col(Task.due_at)).limit(MAX_ROWS + 1))
    items = [
        AttentionItem(
            kind="task_overdue",
            process_id=task.process_id,
            subject=f"task {task.id}: {task.title} (assigned to {task.assignee_id})",
            problem=f"still open after its due time {as_utc(task.due_at):%Y-%m-%d %H:%M} UTC",
            since=as_utc(task.due_at),
            actions=["complete", "cancel"],
        )
        for task in rows[:MAX_ROWS]
    ]
    if len(rows) > MAX_ROWS:
        items.append(_incomplete("overdue tasks", f"the {MAX_ROWS} longest overdue are listed"))
    return items


async def _overdue_approvals(
    client: Client, principal: Principal, now: datetime
) -> list[AttentionItem]:
    query = scoped([f"{PROCESS.name} = 'approval'", "ExecutionStatus = 'Running'"], principal)
    runs = await list_up_to(client, query, MAX_APPROVALS + 1)
    limit = asyncio.Semaphore(CONCURRENCY)

    async def overdue(run: WorkflowExecution) -> AttentionItem | None:
        if not await visible_to(run, principal):
            return None
        async with limit:
            try:
                state = await query_state(client, run.id, run.run_id)
            except StateUnanswered:
                return None
        decide_by = state.details.get("decide_by")
        due = datetime.fromisoformat(decide_by) if decide_by else None
        missed = [step for step in state.steps if step.step == "timeout"]
        stuck = due is not None and due < now
        if not (stuck or missed):
            return None
        approver = state.details.get("current_approver")
        if stuck:
            problem = f"{approver} has not decided, and the step's timeout has passed "
            problem += "without the request escalating (is a worker running?)"
        else:
            problem = f"{', '.join(step.detail for step in missed)} did not decide in time; "
            problem += f"now waiting for {approver}"
            problem += f" until {due:%Y-%m-%d %H:%M} UTC" if due else ""
        return AttentionItem(
            kind="approval_overdue",
            process_id=run.id,
            subject=f"approval {run.id}: {state.details.get('subject', '')}",
            problem=problem,
            since=due if stuck else missed[0].at,
            actions=["decide", "cancel"],
        )

    found = await asyncio.gather(*(overdue(run) for run in runs[:MAX_APPROVALS]))
    items = [item for item in found if item is not None]
    if len(runs) > MAX_APPROVALS:
        items.append(
            _incomplete("approvals", f"the {MAX_APPROVALS} newest running approvals were checked")
        )
    return items


async def _failing_activities(client: Client, principal: Principal) -> list[AttentionItem]:
    query = scoped(["ExecutionStatus = 'Running'"], principal)
    runs = await list_up_to(client, query, MAX_RUNS_DESCRIBED + 1)
    limit = asyncio.Semaphore(CONCURRENCY)

    async def failing(run: WorkflowExecution) -> list[AttentionItem]:
        if not await visible_to(run, principal):
            return []
        async with limit:
            try:
                description = await client.get_workflow_handle(run.id, run_id=run.run_id).describe()
            except RPCError as err:
                if err.status == RPCStatusCode.NOT_FOUND:
                    return []
                raise TemporalUnavailable(err.message) from err
        return [
            AttentionItem(
                kind="activity_failing",
                process_id=run.id,
                subject=f"{run.typed_search_attributes.get(PROCESS) or run.workflow_type} "
                f"{run.id}: activity {pending.activity_type.name}",
                problem=f"attempt {pending.attempt} failing: "
                + (pending.last_failure.message or "no failure recorded")[:300],
                since=(
                    pending.scheduled_time.ToDatetime(tzinfo=UTC)
                    if pending.HasField("scheduled_time")
                    else None
                ),
                actions=["retry", "cancel"],
            )
            for pending in description.raw_description.pending_activities
            if pending.attempt >= FAILING_ATTEMPT
        ]

    found = await asyncio.gather(*(failing(run) for run in runs[:MAX_RUNS_DESCRIBED]))
    items = [item for group in found for item in group]
    if len(runs) > MAX_RUNS_DESCRIBED:
        items.append(
            _incomplete(
                "failing activities",
                f"the {MAX_RUNS_DESCRIBED} newest running runs were checked",
            )
        )
    return items


async def _failed_automation_steps(
    database: Database, principal: Principal, now: datetime
) -> list[AttentionItem]:
    statement = select(AuditEntry).where(
        or_(col(AuditEntry.step).startswith("failed:"), AuditEntry.step == "step_failed"),
        col(AuditEntry.recorded_at) >= now - FAILURE_WINDOW,
    )
    if principal.tenant is not None:  # a tenant's run ids end in @tenant; no business key has @
        statement = statement.where(
            col(AuditEntry.process_id).endswith(f"@{principal.tenant}", autoescape=True)
        )
    rows = await database.all(statement.order_by(col(AuditEntry.id).desc()).limit(MAX_ROWS + 1))
    items = [
        AttentionItem(
            kind="automation_step_failed",
            process_id=entry.process_id,
            subject=f"{entry.process_id}: step {entry.step.partition(':')[2] or entry.step}",
            problem=str(entry.detail.get("reason") or entry.detail)[:300],
            since=as_utc(entry.recorded_at),
            actions=["enroll"],
        )
        for entry in rows[:MAX_ROWS]
    ]
    if len(rows) > MAX_ROWS:
        items.append(
            _incomplete("failed automation steps", f"the {MAX_ROWS} most recent are listed")
        )
    return items


def _incomplete(source: str, how: str) -> AttentionItem:
    return AttentionItem(
        kind="incomplete",
        process_id=None,
        subject=source,
        problem=f"not every one was looked at: {how}",
        since=None,
        actions=[],
    )
