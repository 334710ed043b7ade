"""The console's "My work": a staff member's tasks, approvals and notifications, and the
actions on them.

Every action is a form carrying the session's CSRF token; it goes through the
same functions as the API (``api.task_actions``, ``api.approval_actions``),
so a decision by the wrong person or a second decision is refused with the
same message, shown on the page.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import RedirectResponse

from api.approval_actions import decide_approval, recall_approval
from api.console.rendering import page, page_context
from api.console.security import (
    CONSOLE_PATH,
    ConsoleRefused,
    SessionDep,
    check_csrf,
    read_form,
    require_role,
)
from api.deps import ContextDep, TemporalDep
from api.inbox import inbox_of
from api.problems import Problem
from api.task_actions import claim_task_as, complete_task_as, reassign_task_as
from crm.store.console_sessions import SignedIn
from crm.store.people_work import mark_read

router = APIRouter(prefix=CONSOLE_PATH, include_in_schema=False)

#: What the page says after an action went through (the redirect names it by key).
DONE = {
    "completed": "Task completed.",
    "reassigned": "Task handed over.",
    "claimed": "Task claimed: it is yours.",
    "approved": "Approved.",
    "rejected": "Rejected.",
    "recalled": "Approval recalled.",
    "read": "Marked read.",
}
TaskId = Annotated[int, Path(ge=1, le=2**31 - 1)]
NotificationId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.get("/inbox")
async def inbox(
    request: Request, session: SessionDep, client: TemporalDep, context: ContextDep
) -> Response:
    return await _inbox_page(
        session, client, context, DONE.get(request.query_params.get("done", ""))
    )


@router.post("/tasks/{task_id}/complete")
async def complete(
    request: Request, task_id: TaskId, session: SessionDep, client: TemporalDep, context: ContextDep
) -> Response:
    form = await _checked_form(request, session)
    note = form.get("note", "")[:2000]
    action = complete_task_as(context, session.principal, task_id, note)
    return await _acted(action, "completed", session, client, context)


@router.post("/tasks/{task_id}/claim")
async def claim(
    request: Request, task_id: TaskId, session: SessionDep, client: TemporalDep, context: ContextDep
) -> Response:
    await _checked_form(request, session)
    action = claim_task_as(context, session.principal, task_id)
    return await _acted(action, "claimed", session, client, context)


@router.post("/tasks/{task_id}/reassign")
async def reassign(
    request: Request, task_id: TaskId, session: SessionDep, client: TemporalDep, context: ContextDep
) -> Response:
    form = await _checked_form(request, session)
    to, note = form.get("to", ""), form.get("note", "")[:2000]
    action = reassign_task_as(context, session.principal, task_id, to, note)
    return await _acted(action, "reassigned", session, client, context)


@router.post("/approvals/{approval_id}/decide")
async def decide(
    request: Request,
    approval_id: str,
    session: SessionDep,
    client: TemporalDep,
    context: ContextDep,
) -> Response:
    form = await _checked_form(request, session)
    require_role(session.principal, "approver")  # as POST /v1/approvals/{id}/decision
    decision = form.get("decision", "")
    if decision not in ("approve", "reject"):
        refused = Problem(422, "validation-error", "Invalid decision", "choose approve or reject")
        return await _inbox_page(session, client, context, error=refused)
    comment = form.get("comment", "")[:2000]
    verdict: Literal["approve", "reject"] = "approve" if decision == "approve" else "reject"
    action = decide_approval(client, session.principal, approval_id, verdict, comment)
    done = "approved" if verdict == "approve" else "rejected"
    return await _acted(action, done, session, client, context)


@router.post("/approvals/{approval_id}/recall")
async def recall(
    request: Request,
    approval_id: str,
    session: SessionDep,
    client: TemporalDep,
    context: ContextDep,
) -> Response:
    form = await _checked_form(request, session)
    action = recall_approval(client, session.principal, approval_id, form.get("reason", "")[:500])
    return await _acted(action, "recalled", session, client, context)


@router.post("/notifications/{notification_id}/read")
async def read(
    request: Request,
    notification_id: NotificationId,
    session: SessionDep,
    client: TemporalDep,
    context: ContextDep,
) -> Response:
    await _checked_form(request, session)
    staff = session.principal.staff_id or ""
    await context.database.run(lambda db: mark_read(db, staff, notification_id))
    return _done("read")


async def _acted(
    action: Awaitable[object],
    done: str,
    session: SignedIn,
    client: TemporalDep,
    context: ContextDep,
) -> Response:
    """Do ``action``: back to the page saying ``done``, or the page saying why it was refused."""
    try:
        await action
    except Problem as err:
        return await _inbox_page(session, client, context, error=err)
    return _done(done)


async def _checked_form(request: Request, session: SignedIn) -> dict[str, str]:
    form = await read_form(request)
    check_csrf(session, form)
    return form


def _done(what: str) -> Response:
    return RedirectResponse(f"{CONSOLE_PATH}/inbox?done={what}", status_code=303)


async def _inbox_page(
    session: SignedIn,
    client: TemporalDep,
    context: ContextDep,
    flash: str | None = None,
    error: Problem | None = None,
) -> Response:
    """The page, with what an action answered: its success, or why it was refused."""
    if session.principal.staff_id is None:
        raise ConsoleRefused(403, f"My work is a staff member's: {session.principal.id} is none.")
    work = await inbox_of(client, context.database, context.policy, session.principal)
    return page(
        "inbox.html",
        status_code=error.status if error else 200,
        **page_context(session, "inbox", "My work"),
        work=work,
        flash=flash,
        error=(error.detail or error.title) if error else None,
    )
