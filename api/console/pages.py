"""The console's pages: sign-in, runs, a customer's timeline, reports, what needs attention.

Pages are rendered on the server from the same functions the JSON API
answers with (``api.run_list``, ``crm.store.reports``), so the console shows
what the API would and sees only the signed-in user's tenant.
"""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import ValidationError

from api.attention import needs_attention
from api.console.charts import Series, bar_chart
from api.console.rendering import STATIC, page
from api.console.security import (
    CONSOLE_PATH,
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
from api.run_list import RunFilters, customer_timeline, list_runs
from api.runs import describe_process, ensure_running
from api.visibility import web_ui_url
from crm.reports import REPORTS, ReportQuery, ReportTable, report_csv
from crm.store.console_sessions import SESSION_LIFETIME, SignedIn, close_session, open_session
from processes import PROCESSES

#: The roles that may use the console's pages besides "My work" (any staff member's).
CONSOLE_ROLES = ("support", "admin")
STATUSES = ("running", "completed", "failed", "cancelled", "terminated", "timed_out")
#: How far back a report looks when no range is given.
DEFAULT_RANGE = timedelta(weeks=12)
#: The widest report range the console asks for.
MAX_RANGE = timedelta(days=3 * 366)

router = APIRouter(prefix=CONSOLE_PATH, include_in_schema=False)


def _common(session: SignedIn, section: str, title: str) -> dict[str, Any]:
    return {
        "user": session.principal,
        "csrf_token": session.csrf_token,
        "section": section,
        "title": title,
    }


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
    principal = await request.app.state.authenticator.verify(form.get("key", "").strip())
    if principal is None:
        error = "That key or token is unknown, revoked or expired."
        return _sign_in_page(request, form.get("next"), error)
    if principal.staff_id is None:  # staff members have their work; others need a role
        require_role(principal, *CONSOLE_ROLES)
    token, _ = await open_session(database, principal)
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
        **_common(session, "runs", "Runs"),
        runs=listed,
        filters=values,
        started_after=started_after,
        processes=[process.name for process in PROCESSES] + ["automation"],
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
        **_common(session, "runs", f"Customer {customer_id}"),
        customer_id=customer_id,
        entries=found.entries,
        next_url=next_url,
    )


@router.get("/reports")
async def report_index(session: SessionDep) -> Response:
    require_role(session.principal, *CONSOLE_ROLES)
    return page(
        "reports.html", **_common(session, "reports", "Reports"), reports=list(REPORTS.values())
    )


@router.get("/reports/{name}.csv")
async def report_download(
    request: Request, name: str, session: SessionDep, database: DatabaseDep
) -> Response:
    require_role(session.principal, *CONSOLE_ROLES)
    query, start, end = _report_query(name, request)
    table = await REPORTS[name].run(database, session.principal.tenant, query)
    return Response(
        report_csv(table),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}-{start}-{end}.csv"'},
    )


@router.get("/reports/{name}")
async def report(
    request: Request, name: str, session: SessionDep, database: DatabaseDep
) -> Response:
    require_role(session.principal, *CONSOLE_ROLES)
    query, start, end = _report_query(name, request)
    table = await REPORTS[name].run(database, session.principal.tenant, query)
    csv_query = {k: v for k, v in request.query_params.items() if v}
    return page(
        "report.html",
        **_common(session, "reports", table.title),
        spec=REPORTS[name],
        table=table,
        start=start,
        end=end,
        chart=bar_chart(table.title, *_chart_series(table)),
        csv_url=f"{CONSOLE_PATH}/reports/{name}.csv?{urlencode(csv_query)}",
        error=None,
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
        **_common(session, "attention", "Needs attention"),
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


def _report_query(name: str, request: Request) -> tuple[ReportQuery, str, str]:
    """The report's query from the page's parameters; ConsoleRefused 404/422 when they
    name no report or do not make a range."""
    spec = REPORTS.get(name)
    if spec is None:
        raise ConsoleRefused(404, f"There is no report {name!r}.")
    params = request.query_params
    today = datetime.now(UTC).date()
    try:
        end = _day(params["end"], "end") if params.get("end") else today
        start = _day(params["start"], "start") if params.get("start") else end - DEFAULT_RANGE
    except Problem as err:
        raise ConsoleRefused(422, _message(err)) from err
    period = params.get("period") or "week"
    by = params.get("by") or None
    if period not in ("week", "month"):
        raise ConsoleRefused(422, "Per: choose week or month.")
    if by is not None and by not in spec.dimensions:
        raise ConsoleRefused(
            422, f"Grouped by: {spec.title} groups by {', '.join(spec.dimensions)}."
        )
    if end < start:
        raise ConsoleRefused(422, "To: the range ends before it begins.")
    if end - start > MAX_RANGE:
        raise ConsoleRefused(422, "From: a report covers at most three years.")
    query = ReportQuery(
        start=datetime(start.year, start.month, start.day, tzinfo=UTC),
        end=datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1),
        period=period,  # type: ignore[arg-type]  # checked above
        by=by,
    )
    return query, start.isoformat(), end.isoformat()


def _chart_series(table: ReportTable) -> tuple[list[str], list[Series]]:
    """The report's counts per period (summed over groups), at most four of them."""
    counts = [
        column
        for column in table.columns
        if column.unit == "count" and column.key not in ("period", table.by)
    ][:4]
    periods: list[str] = []
    for row in table.rows:
        if str(row["period"]) not in periods:
            periods.append(str(row["period"]))
    series = []
    for column in counts:
        values = [0.0] * len(periods)
        for row in table.rows:
            values[periods.index(str(row["period"]))] += float(row.get(column.key) or 0)
        series.append(Series(column.label, values))
    return periods, series


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
