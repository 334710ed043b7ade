"""The console's reports: the catalogue, one report with its chart and table, its CSV.

A report's range is whole days, both ends included as the page shows them;
a range that ends before it begins, runs over three years or past the last
day a report counts, or groups by what the report does not is explained on
the page (422), never a 500.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response

from api.console.charts import Series, bar_chart
from api.console.rendering import page, page_context
from api.console.security import (
    CONSOLE_PATH,
    CONSOLE_ROLES,
    ConsoleRefused,
    SessionDep,
    require_role,
)
from api.deps import DatabaseDep
from crm.reports import (
    DEFAULT_RANGE,
    LAST_END,
    MAX_RANGE,
    REPORTS,
    ReportQuery,
    ReportTable,
    report_csv,
)

router = APIRouter(prefix=f"{CONSOLE_PATH}/reports", include_in_schema=False)


@router.get("")
async def report_index(session: SessionDep) -> Response:
    require_role(session.principal, *CONSOLE_ROLES)
    return page(
        "reports.html",
        **page_context(session, "reports", "Reports"),
        reports=list(REPORTS.values()),
    )


@router.get("/{name}.csv")
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


@router.get("/{name}")
async def report(
    request: Request, name: str, session: SessionDep, database: DatabaseDep
) -> Response:
    require_role(session.principal, *CONSOLE_ROLES)
    query, start, end = _report_query(name, request)
    table = await REPORTS[name].run(database, session.principal.tenant, query)
    csv_query = {k: v for k, v in request.query_params.items() if v}
    return page(
        "report.html",
        **page_context(session, "reports", table.title),
        spec=REPORTS[name],
        table=table,
        start=start,
        end=end,
        chart=bar_chart(table.title, *_chart_series(table)),
        csv_url=f"{CONSOLE_PATH}/reports/{name}.csv?{urlencode(csv_query)}",
        error=None,
    )


def _report_query(name: str, request: Request) -> tuple[ReportQuery, str, str]:
    """The report's query from the page's parameters; ConsoleRefused 404/422 when they
    name no report or do not make a range."""
    spec = REPORTS.get(name)
    if spec is None:
        raise ConsoleRefused(404, f"There is no report {name!r}.")
    params = request.query_params
    end = _day(params.get("end"), "To") or datetime.now(UTC).date()
    if end >= LAST_END:
        raise ConsoleRefused(422, f"To: a report counts days up to {LAST_END - timedelta(days=1)}.")
    start = _day(params.get("start"), "From")
    if start is None:  # the twelve weeks up to and with the day To names, as the API counts
        if end - date.min < DEFAULT_RANGE:
            raise ConsoleRefused(422, "From: give the first day of a range this early.")
        start = end - DEFAULT_RANGE + timedelta(days=1)
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
    if end - start >= MAX_RANGE:  # To counts: the range is a day longer than end - start
        raise ConsoleRefused(422, "From: a report covers at most three years.")
    query = ReportQuery(
        start=datetime(start.year, start.month, start.day, tzinfo=UTC),
        end=datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1),
        period="week" if period == "week" else "month",
        by=by,
    )
    return query, start.isoformat(), end.isoformat()


def _day(value: str | None, label: str) -> date | None:
    """The date of a date field (None when empty); ConsoleRefused 422 when it is none."""
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as err:
        raise ConsoleRefused(422, f"{label}: {value!r} is not a date.") from err


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
