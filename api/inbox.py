"""A staff member's inbox: their open tasks (and their team's, for a manager; and those
waiting in their pools for a member to claim), the
approvals waiting on them or on those they deputise for, the approvals they asked for,
and their notifications, unread first.

Times are shown in the staff member's time zone (``timezone`` in the policy).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlmodel import Session
from temporalio.client import Client

from api.approval_actions import ApprovalView, pending_approvals, requested_approvals, staff_id_of
from crm.platform.principals import Principal
from crm.policy import Policy
from crm.policy.teams import colleagues_of, team_of
from crm.store.db import Database
from crm.store.models import Notification, Task, as_utc, utcnow
from crm.store.people_work import notifications_of, open_tasks_of
from workflows.task_types import pool_assignee


class InboxTask(BaseModel):
    """An open task as its assignee (or their manager) sees it."""

    id: int
    process_id: str
    customer_id: str
    assignee_id: str
    kind: str
    title: str
    detail: str
    due_at: datetime
    overdue: bool
    #: Whom it may be handed to.
    colleagues: list[str]


class InboxNotification(BaseModel):
    """A notification: what happened, about which process, and whether it was read."""

    id: int
    process_id: str
    kind: str
    message: str
    created_at: datetime
    read: bool


class Inbox(BaseModel):
    """Everything waiting on one staff member."""

    staff_id: str
    timezone: str
    tasks: list[InboxTask]
    team_tasks: list[InboxTask]
    #: Tasks waiting in their pools for a member to claim them.
    pool_tasks: list[InboxTask]
    approvals: list[ApprovalView]
    requested: list[ApprovalView]
    notifications: list[InboxNotification]


async def inbox_of(
    client: Client, database: Database, policy: Policy, principal: Principal
) -> Inbox:
    """The inbox of ``principal``'s staff member. Raises Problem 403 for a principal of no
    staff id, 503 when Temporal cannot be reached."""
    staff = staff_id_of(principal)
    team = team_of(policy, staff)
    now = utcnow()

    pools = [pool_assignee(name) for name, members in policy.pools.items() if staff in members]

    def read(session: Session) -> tuple[list[Task], list[Task], list[Task], list[Notification]]:
        mine = open_tasks_of(session, [staff], principal.tenant)
        theirs = open_tasks_of(session, team, principal.tenant) if team else []
        unclaimed = open_tasks_of(session, pools, principal.tenant) if pools else []
        return mine, theirs, unclaimed, notifications_of(session, staff)

    (mine, theirs, unclaimed, notes), approvals, requested = await asyncio.gather(
        database.run(read, write=False),
        pending_approvals(client, policy, principal),
        requested_approvals(client, principal),
    )
    zone = next((m.timezone for m in policy.staff if m.id == staff), "UTC")
    return Inbox(
        staff_id=staff,
        timezone=zone,
        tasks=[_task(task, policy, now, zone) for task in mine],
        team_tasks=[_task(task, policy, now, zone) for task in theirs],
        pool_tasks=[_task(task, policy, now, zone) for task in unclaimed],
        approvals=approvals,
        requested=requested,
        notifications=[
            InboxNotification(
                id=note.id or 0,
                process_id=note.process_id,
                kind=note.kind,
                message=note.message,
                created_at=as_utc(note.created_at).astimezone(ZoneInfo(zone)),
                read=note.read_at is not None,
            )
            for note in notes
        ],
    )


def _task(task: Task, policy: Policy, now: datetime, zone: str) -> InboxTask:
    due = as_utc(task.due_at)
    return InboxTask(
        id=task.id or 0,
        process_id=task.process_id,
        customer_id=task.customer_id,
        assignee_id=task.assignee_id,
        kind=task.kind,
        title=task.title,
        detail=task.detail,
        due_at=due.astimezone(ZoneInfo(zone)),
        overdue=due < now,
        colleagues=list(colleagues_of(policy, task.assignee_id)),
    )
