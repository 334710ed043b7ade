"""The console's pages: sign-in, runs, a customer's timeline, what needs attention.

Pages are rendered on the server from the same functions the JSON API
answers with (``api.run_list``, ``api.attention``), so the console shows
what the API would and sees only the signed-in user's tenant.
"""

from __future__ import annotations

import secrets
from datetime import date
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import ValidationError

from api.attention import needs_attention
from api.auth import token_expiry
from api.console.rendering import STATIC, page, page_context
from api.console.security import (
    CONSOLE_PATH,
    CONSOLE_ROLES,
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    ConsoleRefused,
    SessionDep,
    check_csrf,
    is_secure,
    read_form,
    require_role,
    safe_next,
)
from api.deps import ContextDep, DatabaseDep, TemporalDep
from api.problems import Problem
from api.run_list import PROCESS_NAMES, RunFilters, customer_timeline, list_runs
from api.runs import describe_process, ensure_running
from api.visibility import web_ui_url
from crm.platform.principals import key_id_of
from crm.store.console_sessions import SESSION_LIFETIME, close_session, open_session

STATUSES = ("running", "completed", "failed", "cancelled", "terminated", "timed_out")

router = APIRouter(prefix=CONSOLE_PATH, include_in_schema=False)


@router.get("/static/console.css")
async def stylesheet() -> FileResponse:
    return FileResponse(STATIC / "console.css", media_type="text/css")


@router.get("")
async def home(session: SessionDep) -> RedirectResponse:
    """Staff members start at their work; support staff and admins at the runs."""
    principal = session.principal
    if principal.staff_id is not None and not principal.has_any(*CONSOLE_ROLES):
        return RedirectResponse(f"{CONSOLE_PATH}/inbox", status_code=303)
    require_role(principal, *CONSOLE_ROLES)
    return RedirectResponse(f"{CONSOLE_PATH}/runs", status_code=303)


@router.get("/sign-in")
async def sign_in_form(request: Request, next: str | None = None) -> Response:
    return _sign_in_page(request, next)


@router.post("/sign-in")
async def sign_in(request: Request, database: DatabaseDep) -> Response:
    form = await read_form(request)
    expected = request.cookies.get(SIGN_IN_COOKIE, "")
    if not expected or not secrets.compare_digest(form.get("csrf_token", ""), expected):
        raise ConsoleRefused(
            403, "The sign-in form's security token is missing or stale: reload the page."
        )
    presented = form.get("key", "").strip()
    principal = await request.app.state.authenticator.verify(presented)
    if principal is None:
        error = "That key or token is unknown, revoked or expired."
        return _sign_in_page(request, form.get("next"), error)
    if principal.staff_id is None:  # staff members have their work; others need a role
        require_role(principal, *CONSOLE_ROLES)
    key_id = key_id_of(presented)
    until = None if key_id is not None else token_expiry(presented)
    token, _ = await open_session(database, principal, key_id=key_id, until=until)
    signed_in = RedirectResponse(safe_next(form.get("next")), status_code=303)
    _set_cookie(
        request,
        signed_in,
        SESSION_COOKIE,
        token,
        CONSOLE_PATH,
        int(SESSION_LIFETIME.total_seconds()),
    )
    signed_in.delete_cookie(SIGN_IN_COOKIE, path=f"{CONSOLE_PATH}/sign-in")
    return signed_in


@router.post("/sign-out")
async def sign_out(request: Request, session: SessionDep, database: DatabaseDep) -> Response:
    check_csrf(session, await read_form(request))
    await close_session(database, request.cookies.get(SESSION_COOKIE, ""))
    response = RedirectResponse(f"{CONSOLE_PATH}/sign-in", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=CONSOLE_PATH)
    return response


@router.get("/runs")
async def runs(
    request: Request, session: SessionDep, client: TemporalDep, context: ContextDep
) -> Response:
    require_role(session.principal, *CONSOLE_ROLES)
    params = request.query_params
    values = {
        name: params.get(name) or None for name in ("process", "stage", "customer_id", "status")
    }
    started_after = params.get("started_after") or ""
    error = None
    listed: list[Any] = []
    next_url = None
    try:
        filters = RunFilters(
            **values,
            started_after=_day(started_after, "started_after") if started_after else None,
        )
        found = await list_runs(
            client, context.settings, session.principal, filters, params.get("page_token"), 50
        )
        listed = found.runs
        if found.next_page_token:
            query = {k: v for k, v in params.items() if v and k != "page_token"}
            next_url = (
                f"{CONSOLE_PATH}/runs?{urlencode({**query, 'page_token': found.next_page_token})}"
            )
    except (Problem, ValidationError) as err:
        filters = RunFilters()
        error = _message(err)
    return page(
        "runs.html",
        status_code=422 if error else 200,
        **page_context(session, "runs", "Runs"),
        runs=listed,
        filters=values,
        started_after=started_after,
        processes=PROCESS_NAMES,
        statuses=STATUSES,
        next_url=next_url,
        error=error,
    )


@router.get("/customers/{customer_id}")
async def timeline(
    request: Request,
    customer_id: str,
    session: SessionDep,
    client: TemporalDep,
    database: DatabaseDep,
    page_token: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    require_role(session.principal, *CONSOLE_ROLES)
    found = await customer_timeline(
        client, database, session.principal, customer_id, page_token, 200
    )
    next_url = None
    if found.next_page_token:
        next_url = f"{request.url.path}?{urlencode({'page_token': found.next_page_token})}"
    return page(
        "timeline.html",
        **page_context(session, "runs", f"Customer {customer_id}"),
        customer_id=customer_id,
        entries=found.entries,
        next_url=next_url,
    )


@router.get("/attention")
async def attention(
    request: Request,
    session: SessionDep,
    client: TemporalDep,
    database: DatabaseDep,
    context: ContextDep,
) -> Response:
    require_role(session.principal, *CONSOLE_ROLES)
    items = await needs_attention(client, database, context.settings, session.principal)
    done = request.query_params.get("cancelled")
    return page(
        "attention.html",
        **page_context(session, "attention", "Needs attention"),
        items=items,
        web_ui=lambda process_id: web_ui_url(context.settings, process_id),
        flash=f"Cancellation of {done} requested." if done else None,
        error=None,
    )


@router.post("/processes/{process_id}/cancel")
async def cancel(
    request: Request, process_id: str, session: SessionDep, client: TemporalDep
) -> Response:
    check_csrf(session, await read_form(request))
    require_role(session.principal, "support")
    description = await describe_process(client, process_id, session.principal)
    ensure_running(description)
    await client.get_workflow_handle(process_id, run_id=description.run_id).cancel(
        reason=f"cancelled in the console by {session.principal.id}"
    )
    return RedirectResponse(
        f"{CONSOLE_PATH}/attention?{urlencode({'cancelled': process_id})}", status_code=303
    )


def _day(value: str, field: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as err:
        raise Problem(422, "validation-error", "Invalid request", f"{field}: not a date") from err


def _message(err: Exception) -> str:
    if isinstance(err, Problem):
        return err.detail or err.title
    if isinstance(err, ValidationError):
        first = err.errors()[0]
        return f"{'.'.join(str(part) for part in first['loc'])}: {first['msg']}"
    return str(err)


def _sign_in_page(request: Request, next_path: str | None, error: str | None = None) -> Response:
    """The sign-in form, with a fresh double-submit token in a cookie of its own."""
    token = secrets.token_urlsafe(24)
    response = page(
        "sign_in.html",
        status_code=401 if error else 200,
        title="Sign in",
        sign_in_token=token,
        next_path=safe_next(next_path),
        error=error,
    )
    _set_cookie(request, response, SIGN_IN_COOKIE, token, f"{CONSOLE_PATH}/sign-in", 600)
    return response


def _set_cookie(
    request: Request, response: Response, name: str, value: str, path: str, max_age: int
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        httponly=True,
        samesite="strict",
        secure=is_secure(request),
    )
