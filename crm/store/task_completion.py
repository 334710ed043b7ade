"""Finishing tasks: by the person who did the work, or by the process that no longer needs it.

A finished task is ``done`` with when and by whom. A task that is the work
of an assignment (a lead's call task is the rep's open lead) ends that
assignment too, so it stops counting towards the assignee's load and the
next lead goes to whoever has the fewest open ones. A task completed by a
person is emitted as the webhook event ``task.completed`` in the same
transaction (``task.created`` is the task activity's).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import update
from sqlmodel import Session, col, select

from crm.store.db import insert_once
from crm.store.models import Assignment, AuditEntry, Task, as_utc, utcnow
from crm.store.webhooks import Emitted, emit


def complete_task(
    session: Session, task_id: int, by: str, note: str = "", *, tenant: str | None = None
) -> Task | None:
    """Mark task ``task_id`` done by ``by``, audit it and emit ``task.completed``
    (``completed``); the task."""
    return completed(session, task_id, by, note, tenant=tenant)[0]


def completed(
    session: Session, task_id: int, by: str, note: str = "", *, tenant: str | None = None
) -> tuple[Task | None, list[str]]:
    """Mark task ``task_id`` done by ``by``, audit it and emit ``task.completed``; the task
    and the webhook endpoints the event goes to (whose dispatchers to wake).

    None if there is no such task or, with ``tenant``, it is not that tenant's.

    Completing a task that is already done changes nothing and returns it as it is.
    The task's row stays locked until the transaction ends (PostgreSQL; SQLite's
    writes take turns), so two completions, or a completion and a process
    closing its tasks, never both mark it done.
    """
    task = session.get(Task, task_id, with_for_update=True)
    if task is None or (tenant is not None and task.tenant != tenant):
        return None, []
    if task.status == "done":
        return task, []
    finish_tasks(session, [task], by)
    endpoints = emit(session, task_event(task, "completed"))
    insert_once(
        session,
        AuditEntry(
            key=f"{task.key}:done",
            process_id=task.process_id,
            step=f"task_done:{task.kind}",
            detail={"task_id": task.id, "by": by, "note": note},
        ),
    )
    return task, endpoints


def close_open_tasks(session: Session, process_id: str, by: str) -> int:
    """Mark every open task of ``process_id`` done by ``by``; how many were open."""
    open_tasks = session.exec(
        select(Task).where(Task.process_id == process_id, Task.status == "open").with_for_update()
    ).all()
    finish_tasks(session, open_tasks, by)
    return len(open_tasks)


def finish_tasks(session: Session, tasks: Sequence[Task], by: str) -> None:
    """Mark ``tasks`` done now by ``by``, and end the assignments they are the work of."""
    now = utcnow()
    for task in tasks:
        task.status = "done"
        task.completed_at = now
        task.completed_by = by
        session.add(task)
    keys = [task.assignment_key for task in tasks if task.assignment_key]
    if keys:
        session.exec(
            update(Assignment)
            .where(col(Assignment.key).in_(keys), col(Assignment.active))
            .values(active=False, released_at=now)
        )


def task_event(task: Task, what: str) -> Emitted:
    """The webhook event ``task.<what>`` (created, completed) of ``task``."""
    data: dict[str, object] = {
        "process_id": task.process_id,
        "customer_id": task.customer_id,
        "task_id": task.id,
        "kind": task.kind,
        "title": task.title,
        "assignee_id": task.assignee_id,
        "due_at": as_utc(task.due_at).isoformat(),
    }
    if what == "completed":
        data["completed_by"] = task.completed_by
    return Emitted(
        tenant=task.tenant,
        event_id=f"task-{task.id}/{what}",
        type=f"task.{what}",
        process_id=task.process_id,
        occurred_at=as_utc(task.completed_at if task.completed_at else task.created_at),
        data=data,
    )
