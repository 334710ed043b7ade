"""``/v1/tasks``: the tasks processes created for people, completing, handing over and
claiming one."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select

from api.auth import StaffMember, StaffOrSupport, StaffServiceOrSupport, Support
from api.deps import ContextDep, DatabaseDep
from api.task_actions import claim_task_as, complete_task_as, reassign_task_as
from crm.store.models import Task, as_utc

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


class TaskHandover(BaseModel):
    """To whom the task goes, and why (kept in the audit trail and the notification)."""

    model_config = ConfigDict(extra="forbid")

    to: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
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
    principal: StaffServiceOrSupport,
    task_id: Annotated[int, Path(ge=1, le=2**31 - 1)],  # tasks.id is a 32-bit integer
    completion: TaskCompletion | None = None,
) -> TaskView:
    """Mark a task done, once: completing a done task again returns it unchanged.

    ``completed_by`` defaults to the caller's staff id, else its principal id.
    A task that is the work of an assignment (a lead's ``call_lead`` task) ends
    it, so the assignee's open load drops; the process that created the task is
    told. Services and support staff complete any task of their tenant, a staff
    member their own and, as a manager, their team's; any other id is a 404.
    """
    completion = completion or TaskCompletion()
    task = await complete_task_as(
        context, principal, task_id, completion.note, completion.completed_by
    )
    return TaskView.of(task)


@router.post("/{task_id}/claim", response_model=TaskView)
async def claim(
    context: ContextDep,
    principal: StaffMember,
    task_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
) -> TaskView:
    """Take a task waiting in one of the caller's pools: it becomes theirs, the audit trail
    and the process hear it; 404 for a task in no pool of theirs, 409 when another member
    claimed it first."""
    return TaskView.of(await claim_task_as(context, principal, task_id))


@router.post("/{task_id}/reassign", response_model=TaskView)
async def reassign(
    context: ContextDep,
    principal: StaffOrSupport,
    task_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    handover: TaskHandover,
) -> TaskView:
    """Hand an open task to a colleague of its assignee (a member of one of their pools,
    their team or their manager): the assignment's load moves with it, the new assignee
    is notified, the audit trail and the process hear who did it. Support staff hand over
    any task of their tenant, a staff member their own and their team's; 404 for any
    other task, 409 for a done one or (on ``to``) for someone the assignee does not work
    with."""
    task = await reassign_task_as(context, principal, task_id, handover.to, handover.note)
    return TaskView.of(task)
