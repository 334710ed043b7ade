"""The activities that create tasks for people, once per process step, and close them."""

from __future__ import annotations

from sqlmodel import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from crm.automations.templates import UserTemplateError, render_task_texts
from crm.platform.dispatch import wake_endpoints
from crm.store.db import Database, insert_once
from crm.store.models import AuditEntry, Task, as_utc
from crm.store.task_completion import close_open_tasks, task_event
from crm.store.webhooks import emit
from workflows.contracts import (
    CLOSE_TASKS,
    CREATE_TASK,
    TASK_STATUS,
    CloseTasksRequest,
    TaskQuery,
    TaskRef,
    TaskRequest,
)


class TaskActivities:
    """Creates tasks in the CRM database; a retried request returns the same task."""

    def __init__(self, database: Database) -> None:
        self._database = database

    @activity.defn(name=CREATE_TASK)
    async def create_task(self, request: TaskRequest) -> TaskRef:
        """Create the task for ``request.key`` unless it exists, and audit it.

        A request with ``template_values`` has a user's templates for its title
        and detail; one that cannot render fails, non-retryable (``InvalidInput``).
        """
        task_row = task_of(request)
        task, created, endpoints = await self._database.run(
            lambda session: store_task(session, task_row)
        )
        assert task.id is not None
        if endpoints:  # a retry emits the same event again, and wakes them again
            await wake_endpoints(activity.client(), activity.info().task_queue, endpoints)
        activity.logger.info(
            "task %s %s for %s", task.id, "created" if created else "found", task.assignee_id
        )
        return TaskRef(task_id=task.id, key=task.key, created=created)

    @activity.defn(name=TASK_STATUS)
    async def task_status(self, query: TaskQuery) -> str:
        """The status of the run's task ``query.task_id`` (``open``, ``done``...);
        ``missing`` when no task of that run has the id. Only reads."""
        task = await self._database.run(
            lambda session: session.get(Task, query.task_id), write=False
        )
        if task is None or task.process_id != query.process_id:
            return "missing"
        return task.status

    @activity.defn(name=CLOSE_TASKS)
    async def close_tasks(self, request: CloseTasksRequest) -> int:
        """Mark the process's open tasks done by the process; how many were open (0 on a retry).

        Assignments that were the work of those tasks end with them.
        """
        closed = await self._database.run(
            lambda session: close_open_tasks(session, request.process_id, request.process_id)
        )
        activity.logger.info(
            "closed %d open task(s) of %s: %s", closed, request.process_id, request.resolution
        )
        return closed


def task_of(request: TaskRequest) -> Task:
    """The task row ``request`` asks for. A request with ``template_values`` has a user's
    templates for its title and detail; one that cannot render fails, non-retryable
    (``InvalidInput``)."""
    title, detail = request.title, request.detail
    if request.template_values is not None:
        try:
            title, detail = render_task_texts(title, detail, request.template_values)
        except UserTemplateError as err:
            raise ApplicationError(
                f"task {request.key}: {err}", type="InvalidInput", non_retryable=True
            ) from err
    return Task(
        key=request.key,
        process_id=request.process_id,
        customer_id=request.customer_id,
        assignee_id=request.assignee_id,
        kind=request.kind,
        title=title[:300],
        detail=detail,
        due_at=as_utc(request.due_at),
        tenant=request.tenant,
        assignment_key=request.assignment_key,
    )


def store_task(session: Session, task_row: Task) -> tuple[Task, bool, list[str]]:
    """Store ``task_row`` once per key, emit its ``task.created`` event and audit it; the
    stored task, whether it is new, and the endpoints the event goes to (to wake)."""
    task, created = insert_once(session, task_row)
    endpoints = emit(session, task_event(task, "created"))
    audit = AuditEntry(
        key=task.key,
        process_id=task.process_id,
        step=f"task:{task.kind}",
        detail={"task_id": task.id, "assignee_id": task.assignee_id},
    )
    insert_once(session, audit)
    return task, created, endpoints
