"""``/v1/reports``: what the processes did over a date range, by week or month.

One route per report (``crm.reports.REPORTS``), so each documents the
dimensions it groups by; a report answers a ``ReportTable`` as JSON, or as
CSV for ``Accept: text/csv`` or ``format=csv``. The caller's tenant sees its
own outcomes only (a principal of no tenant, those of no tenant).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, BeforeValidator

from api.auth import AdminOrSupport
from api.deps import DatabaseDep
from api.problems import Problem
from crm.reports import (
    DEFAULT_RANGE,
    LAST_END,
    MAX_RANGE,
    REPORTS,
    ReportQuery,
    ReportSpec,
    ReportTable,
    report_csv,
)

router = APIRouter(prefix="/v1/reports", tags=["reports"])

_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_day(value: Any) -> Any:
    """Only ``YYYY-MM-DD``: pydantic would also take a number as days since 1970."""
    if isinstance(value, str) and not _ISO_DAY.fullmatch(value):
        raise ValueError("a date as YYYY-MM-DD")
    return value


Day = Annotated[date, BeforeValidator(_iso_day)]


class ReportInfo(BaseModel):
    """A report of the catalogue: where to get it and what it groups by."""

    name: str
    title: str
    dimensions: list[str]
    path: str


class ReportCatalogue(BaseModel):
    """Every report the API answers."""

    reports: list[ReportInfo]


@router.get("", response_model=ReportCatalogue)
async def list_reports(principal: AdminOrSupport) -> ReportCatalogue:
    """The reports: their names, titles and the dimensions each groups by."""
    return ReportCatalogue(
        reports=[
            ReportInfo(
                name=spec.name,
                title=spec.title,
                dimensions=list(spec.dimensions),
                path=f"/v1/reports/{spec.name}",
            )
            for spec in REPORTS.values()
        ]
    )


def _invalid(field: str, message: str) -> Problem:
    return Problem(
        422,
        "validation-error",
        "Invalid request",
        f"{field}: {message}",
        errors=[{"loc": ["query", field], "msg": message, "type": "value_error"}],
    )


def report_range(start: date | None, end: date | None) -> tuple[datetime, datetime]:
    """The range asked, as UTC midnights: ``end`` defaults to tomorrow (so today counts),
    ``start`` to twelve weeks before ``end``. A 422 on the field for a range that ends
    before it starts, after ``LAST_END`` or is longer than three years."""
    end = end or (datetime.now(UTC).date() + timedelta(days=1))
    if end > LAST_END:
        raise _invalid("end", f"at most {LAST_END.isoformat()}")
    try:
        start = start or (end - DEFAULT_RANGE)
    except OverflowError:  # the default start would be before year 1
        raise _invalid("end", "too early for the default start: give start") from None
    if end <= start:
        raise _invalid("end", "must be after start")
    if end - start > MAX_RANGE:
        raise _invalid("end", "at most three years after start")
    return datetime.combine(start, time(), UTC), datetime.combine(end, time(), UTC)


def _report_route(spec: ReportSpec) -> None:
    dimension: Any = Literal[spec.dimensions]  # each report documents its own

    async def get_report(
        request: Request,
        database: DatabaseDep,
        principal: AdminOrSupport,
        start: Annotated[
            Day | None, Query(description="First day counted (UTC). Default: 12 weeks before end.")
        ] = None,
        end: Annotated[
            Day | None,
            Query(
                description="Day after the last day counted, at most "
                f"{LAST_END.isoformat()}. Default: tomorrow."
            ),
        ] = None,
        period: Annotated[Literal["week", "month"], Query()] = "week",
        by: str | None = None,  # annotated below: the report's own dimensions
        format: Annotated[Literal["json", "csv"] | None, Query()] = None,
    ) -> Any:
        first, after = report_range(start, end)
        table = await spec.run(database, principal.tenant, ReportQuery(first, after, period, by))
        if format == "csv" or (format is None and _wants_csv(request)):
            name = f"{spec.name}-{first:%Y-%m-%d}-{after:%Y-%m-%d}-{period}"
            return Response(
                report_csv(table),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
            )
        return table

    # Set here, not written above: postponed annotations cannot name a local type.
    get_report.__annotations__["by"] = Annotated[
        dimension | None, Query(description="Group each period by this.")
    ]
    get_report.__doc__ = (
        f"The {spec.title.lower()} report over ``[start, end)`` per week or month, grouped "
        f"by ``by`` (one of {', '.join(spec.dimensions)}) when given; CSV for "
        "``Accept: text/csv`` or ``format=csv``."
    )
    router.add_api_route(
        f"/{spec.name}",
        get_report,
        methods=["GET"],
        response_model=ReportTable,
        name=f"report_{spec.name}",
        summary=spec.title,
        responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
    )


def _wants_csv(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/csv" in accept and "application/json" not in accept


for _spec in REPORTS.values():
    _report_route(_spec)
