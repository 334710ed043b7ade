"""``GET /v1/tasks``: the tasks processes created for people."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlmodel import col, select

from api.auth import Support
from api.deps import DatabaseDep
from crm.models import Task, as_utc

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
    return [
        TaskView(
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
        )
        for row in rows
    ]
