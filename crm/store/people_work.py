"""People's work: the open tasks of a person, a team or a pool, handing a task over, claiming
one from a pool, notifications.

Handing a task over moves it, and the assignment it is the work of (so the
open load moves with it), to another person, notifies them and writes who
did it to the process's audit trail, in one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import update
from sqlmodel import Session, col, select

from crm.store.models import Assignment, AuditEntry, Notification, Task, utcnow
from workflows.task_types import pool_assignee

#: The most open tasks, and notifications, one inbox lists.
INBOX_LIMIT = 200


def open_tasks_of(session: Session, staff_ids: Sequence[str], tenant: str | None) -> list[Task]:
    """The open tasks assigned to ``staff_ids``, the longest overdue first; only
    ``tenant``'s for a principal of a tenant."""
    statement = select(Task).where(Task.status == "open", col(Task.assignee_id).in_(staff_ids))
    if tenant is not None:
        statement = statement.where(Task.tenant == tenant)
    return list(session.exec(statement.order_by(col(Task.due_at)).limit(INBOX_LIMIT)).all())


def reassign_task(
    session: Session, task_id: int, to: str, by: str, note: str, tenant: str | None
) -> Task | None:
    """Hand open task ``task_id`` to ``to``: its assignment follows, ``to`` is notified and
    the audit trail says who did it; the task (unchanged when it is done or already
    ``to``'s), None when there is none (or not ``tenant``'s)."""
    task = session.get(Task, task_id, with_for_update=True)
    if task is None or (tenant is not None and task.tenant != tenant):
        return None
    if task.status != "open" or task.assignee_id == to:
        return task
    was = task.assignee_id
    task.assignee_id = to
    session.add(task)
    if task.assignment_key:
        session.exec(
            update(Assignment)
            .where(col(Assignment.key) == task.assignment_key, col(Assignment.active))
            .values(assignee_id=to)
        )
    action = uuid.uuid4().hex[:12]
    session.add(
        AuditEntry(
            key=_action_key(task, f"reassigned:{action}"),
            process_id=task.process_id,
            step=f"task_reassigned:{task.kind}",
            detail={"task_id": task.id, "from": was, "to": to, "by": by, "note": note},
        )
    )
    session.add(
        Notification(
            key=_action_key(task, f"reassigned:{action}"),
            process_id=task.process_id,
            staff_id=to,
            kind="task_reassigned",
            message=f"{by} handed you the task {task.title!r}" + (f": {note}" if note else ""),
        )
    )
    return task


def claim_task(
    session: Session, task_id: int, pool: str, staff_id: str, tenant: str | None
) -> Task | None:
    """Give ``staff_id`` the task waiting in ``pool`` for a member to claim, and audit it;
    the task as it stands (someone else's when another member was first), None when there
    is no such task of ``tenant``'s."""
    task = session.get(Task, task_id, with_for_update=True)
    if task is None or (tenant is not None and task.tenant != tenant):
        return None
    if task.status != "open" or task.assignee_id != pool_assignee(pool):
        return task
    task.assignee_id = staff_id
    session.add(task)
    session.add(
        AuditEntry(
            key=_action_key(task, "claimed"),
            process_id=task.process_id,
            step=f"task_claimed:{task.kind}",
            detail={"task_id": task.id, "pool": pool, "by": staff_id},
        )
    )
    return task


def claimed_from(session: Session, task: Task) -> str | None:
    """The pool ``task`` was claimed from, if it was."""
    key = _action_key(task, "claimed")
    claimed = session.exec(select(AuditEntry).where(AuditEntry.key == key)).first()
    return str(claimed.detail.get("pool")) if claimed is not None else None


def _action_key(task: Task, what: str) -> str:
    """The key of an audit entry or notification about a person's action on ``task``: within
    the keys' 300 characters whatever the task's own key (process ids are at most 200)."""
    return f"{task.process_id}/task-{task.id}:{what}"


def notifications_of(session: Session, staff_id: str) -> list[Notification]:
    """``staff_id``'s notifications: unread first, newest first within each."""
    statement = (
        select(Notification)
        .where(Notification.staff_id == staff_id)
        .order_by(col(Notification.read_at).is_not(None), col(Notification.id).desc())
        .limit(INBOX_LIMIT)
    )
    return list(session.exec(statement).all())


def mark_read(session: Session, staff_id: str, notification_id: int) -> Notification | None:
    """Mark ``staff_id``'s notification read (once); None when it is not theirs."""
    row = session.get(Notification, notification_id)
    if row is None or row.staff_id != staff_id:
        return None
    if row.read_at is None:
        row.read_at = utcnow()
        session.add(row)
    return row
