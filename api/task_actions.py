"""People acting on tasks: completing one with a note, handing one to a colleague, claiming
one waiting in a pool.

Support staff act on any task of their tenant; a staff member (a principal
with a ``staff_id``) on their own tasks and, as a manager, on their team's.
A task is handed only to a colleague of its assignee (``crm.policy.teams``).
The process that created the task hears of it (``task_changed`` signal) and
shows it in its ``state``; a process that has ended is not told, and a
failure to tell it never undoes what the person did. The API routes and the
console both call these.
"""

from __future__ import annotations

import logging

from sqlmodel import Session
from temporalio.service import RPCError

from api.deps import AppContext
from api.problems import Problem
from crm.platform.dispatch import wake_endpoints
from crm.platform.principals import Principal
from crm.platform.temporal import TemporalUnavailable
from crm.policy import Policy
from crm.policy.teams import colleagues_of, team_of
from crm.store.models import Task
from crm.store.people_work import claim_task, claimed_from, reassign_task
from crm.store.task_completion import completed
from workflows.task_types import APPROVAL_TASKS, TASK_CHANGED, TaskChange, pool_assignee

log = logging.getLogger("crmflow.api")


def may_act_on(policy: Policy, principal: Principal, task: Task) -> bool:
    """Whether ``principal`` may complete or hand over ``task``: support and services
    always (within their tenant), a staff member for their own and their team's tasks.
    Raises Problem 409 for an approval's task: it ends with the decision, not by hand."""
    if task.kind.startswith(APPROVAL_TASKS):
        raise Problem(
            409,
            "approval-task",
            "Decide the approval",
            f"task {task.id} ends when its approval is decided: approve or reject it instead",
        )
    if principal.has_any("support", "service"):
        return True
    staff = principal.staff_id
    return staff is not None and (
        task.assignee_id == staff or task.assignee_id in team_of(policy, staff)
    )


async def complete_task_as(
    context: AppContext, principal: Principal, task_id: int, note: str, by: str | None = None
) -> Task:
    """Mark the task done by ``by`` (default: the caller's staff id, else its id) and tell
    its process. Raises Problem 404 when there is no such task for the caller (another
    tenant's, or not theirs to act on), 403 when a staff member names someone else as
    ``by``, 409 for an approval's task."""
    if by is not None and not principal.has_any("service", "support"):
        raise Problem(
            403,
            "forbidden",
            "Not allowed",
            "completed_by: only services and support name who did the work; "
            "a staff member completes as themselves",
        )
    by = by or principal.staff_id or principal.id

    def complete(session: Session) -> tuple[Task | None, list[str], bool]:
        task = _locked(session, task_id, principal)
        if task is None or not may_act_on(context.policy, principal, task):
            return None, [], False
        was_open = task.status == "open"
        done, endpoints = completed(session, task_id, by, note, tenant=principal.tenant)
        return done, endpoints, was_open

    task, endpoints, newly_done = await context.database.run(complete)
    if task is None:
        raise _no_task(task_id)
    if newly_done:
        change = TaskChange(task.id or 0, task.kind, "done", by, task.assignee_id, note)
        await _tell(context, task, endpoints, change)
    return task


async def reassign_task_as(
    context: AppContext, principal: Principal, task_id: int, to: str, note: str
) -> Task:
    """Hand the open task to ``to``, a colleague of its assignee, and tell its process.
    Raises Problem 404 when there is no such task for the caller, 409 when the task is
    done or (pointing at ``to``) ``to`` is nobody its assignee works with."""
    by = principal.staff_id or principal.id

    def reassign(session: Session) -> tuple[Task | None, bool]:
        task = _locked(session, task_id, principal)
        if task is None or not may_act_on(context.policy, principal, task):
            return None, False
        if task.status != "open":
            raise Problem(409, "task-done", "Task is done", f"task {task_id} is already done")
        if to != task.assignee_id and to not in colleagues_of(context.policy, task.assignee_id):
            # 409: whom a task may go to follows from whose it is now, not from the request
            message = f"{to!r} is not in a pool or team of {task.assignee_id!r}"
            raise Problem(
                409,
                "not-a-colleague",
                "Not a colleague",
                f"to: {message}",
                errors=[{"loc": ["body", "to"], "msg": message, "type": "value_error"}],
            )
        was = task.assignee_id
        return reassign_task(session, task_id, to, by, note, principal.tenant), was != to

    task, changed = await context.database.run(reassign)
    if task is None:
        raise _no_task(task_id)
    if changed:
        change = TaskChange(task.id or 0, task.kind, "reassigned", by, to, note)
        await _tell(context, task, [], change)
    return task


async def claim_task_as(context: AppContext, principal: Principal, task_id: int) -> Task:
    """Take the task waiting in one of the caller's pools, and tell its process. Raises
    Problem 403 for a principal of no staff id, 404 when there is no such task in a pool of
    theirs, 409 when another member claimed it first."""
    staff = principal.staff_id
    if staff is None:
        raise Problem(403, "forbidden", "Not allowed", f"{principal.id} is no staff member")
    pools = [name for name, members in context.policy.pools.items() if staff in members]

    def claim(session: Session) -> Task | None:
        task = _locked(session, task_id, principal)
        if task is None:
            return None
        pool = next((p for p in pools if task.assignee_id == pool_assignee(p)), None)
        if pool is None:  # claimed already: by a member of one of the caller's pools?
            return task if claimed_from(session, task) in pools else None
        return claim_task(session, task_id, pool, staff, principal.tenant)

    task = await context.database.run(claim)
    if task is None:
        raise _no_task(task_id)
    if task.assignee_id != staff:
        raise Problem(
            409, "task-claimed", "Task already claimed", f"{task.assignee_id} claimed it first"
        )
    await _tell(context, task, [], TaskChange(task.id or 0, task.kind, "claimed", staff, staff))
    return task


def _locked(session: Session, task_id: int, principal: Principal) -> Task | None:
    """Task ``task_id``, locked until the transaction ends and read afresh (PostgreSQL; SQLite's
    writes take turns), so two people acting at once act one after the other; None when
    there is none of ``principal``'s tenant."""
    task = session.get(Task, task_id, with_for_update=True, populate_existing=True)
    if task is None or (principal.tenant is not None and task.tenant != principal.tenant):
        return None
    return task


def _no_task(task_id: int) -> Problem:
    return Problem(404, "task-not-found", "Task not found", f"no task {task_id}")


async def _tell(context: AppContext, task: Task, endpoints: list[str], change: TaskChange) -> None:
    """Tell the task's process (first: a run may wait for it), then wake the webhook
    endpoints its event goes to; neither failing undoes what the person did."""
    what = f"task {task.id} {change.change}"
    try:
        client = await context.temporal.client()
    except (Problem, TemporalUnavailable) as err:
        log.warning("%s; process %s not told: %s", what, task.process_id, err)
        return
    try:
        await client.get_workflow_handle(task.process_id).signal(TASK_CHANGED, change)
    except RPCError as err:  # the run has ended, or Temporal is away
        log.info("%s; process %s not told: %s", what, task.process_id, err)
    if endpoints:
        try:
            await wake_endpoints(client, context.settings.task_queue, endpoints)
        except (RPCError, TemporalUnavailable) as err:  # the deliveries wait for a wake
            log.warning("%s; its webhook deliveries wait for a wake: %s", what, err)
