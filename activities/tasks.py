"""The activity that creates tasks for people, once per process step."""

from __future__ import annotations

from temporalio import activity

from crm.db import Database, insert_once
from crm.models import AuditEntry, Task, as_utc
from workflows.contracts import CREATE_TASK, TaskRef, TaskRequest


class TaskActivities:
    """Creates tasks in the CRM database; a retried request returns the same task."""

    def __init__(self, database: Database) -> None:
        self._database = database

    @activity.defn(name=CREATE_TASK)
    async def create_task(self, request: TaskRequest) -> TaskRef:
        """Create the task for ``request.key`` unless it exists, and audit it."""
        task, created = await insert_once(
            self._database,
            Task(
                key=request.key,
                process_id=request.process_id,
                customer_id=request.customer_id,
                assignee_id=request.assignee_id,
                kind=request.kind,
                title=request.title,
                detail=request.detail,
                due_at=as_utc(request.due_at),
            ),
        )
        assert task.id is not None
        await insert_once(
            self._database,
            AuditEntry(
                key=request.key,
                process_id=request.process_id,
                step=f"task:{request.kind}",
                detail={"task_id": task.id, "assignee_id": task.assignee_id},
            ),
        )
        activity.logger.info(
            "task %s %s for %s", task.id, "created" if created else "found", task.assignee_id
        )
        return TaskRef(task_id=task.id, key=task.key, created=created)
