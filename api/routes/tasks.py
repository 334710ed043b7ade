"""``/v1/tasks``: the tasks processes created for people, and marking one done."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select

from api.auth import ServiceOrSupport, Support
from api.deps import ContextDep, DatabaseDep
from api.problems import Problem
from crm.platform.dispatch import wake_endpoints
from crm.platform.temporal import TemporalUnavailable
from crm.store.models import Task, as_utc
from crm.store.task_completion import completed

log = logging.getLogger("crmflow.api")

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])


class TaskView(BaseModel):
    """A task as its assignee sees it."""

    id: int
    process_id: str
    customer_id: str
    assignee_id: str
    kind: str
    title: str
    detail: str
    status: str
    due_at: datetime
    created_at: datetime
    completed_at: datetime | None = None
    completed_by: str | None = None

    @classmethod
    def of(cls, row: Task) -> TaskView:
        return cls(
            id=row.id or 0,
            process_id=row.process_id,
            customer_id=row.customer_id,
            assignee_id=row.assignee_id,
            kind=row.kind,
            title=row.title,
            detail=row.detail,
            status=row.status,
            due_at=as_utc(row.due_at),
            created_at=as_utc(row.created_at),
            completed_at=as_utc(row.completed_at) if row.completed_at else None,
            completed_by=row.completed_by,
        )


class TaskCompletion(BaseModel):
    """Who did the work, if not the caller, and a note for the audit trail."""

    model_config = ConfigDict(extra="forbid")

    completed_by: str | None = Field(default=None, min_length=1, max_length=100)
    note: str = Field(default="", max_length=2000)


@router.get("", response_model=list[TaskView])
async def list_tasks(
    database: DatabaseDep,
    principal: Support,
    assignee: Annotated[str | None, Query(max_length=100)] = None,
    process_id: Annotated[str | None, Query(max_length=200)] = None,
    status: Annotated[Literal["open", "done"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[TaskView]:
    """Tasks, newest first, filtered by assignee, process and status.

    A principal of a tenant sees only the tasks of that tenant's processes.
    """
    query = select(Task).order_by(col(Task.id).desc()).limit(limit)
    if principal.tenant is not None:
        query = query.where(Task.tenant == principal.tenant)
    if assignee is not None:
        query = query.where(Task.assignee_id == assignee)
    if process_id is not None:
        query = query.where(Task.process_id == process_id)
    if status is not None:
        query = query.where(Task.status == status)
    rows = await database.all(query)
    return [TaskView.of(row) for row in rows]


@router.post("/{task_id}/complete", response_model=TaskView)
async def complete(
    context: ContextDep,
    principal: ServiceOrSupport,
    task_id: Annotated[int, Path(ge=1, le=2**31 - 1)],  # tasks.id is a 32-bit integer
    completion: TaskCompletion | None = None,
) -> TaskView:
    """Mark a task done, once: completing a done task again returns it unchanged.

    ``completed_by`` defaults to the caller's staff id, else its principal id.
    A task that is the work of an assignment (a lead's ``call_lead`` task) ends
    it, so the assignee's open load drops. A principal of a tenant completes
    only that tenant's tasks; any other id is a 404.
    """
    completion = completion or TaskCompletion()
    by = completion.completed_by or principal.staff_id or principal.id
    task, endpoints = await context.database.run(
        lambda session: completed(session, task_id, by, completion.note, tenant=principal.tenant)
    )
    if task is None:
        raise Problem(404, "task-not-found", "Task not found", f"no task {task_id}")
    if endpoints:
        try:
            client = await context.temporal.client()
            await wake_endpoints(client, context.settings.task_queue, endpoints)
        except (Problem, TemporalUnavailable) as err:  # done is done: the deliveries wait
            log.warning("task %s done; its webhook deliveries wait for a wake: %s", task_id, err)
    return TaskView.of(task)
