"""What a report is asked and what it answers: the shape every report shares.

A report counts whole UTC days: from the day of ``start`` up to ``end``
(excluded; an ``end`` past midnight counts its own day too), in periods of a
``week`` (from Monday) or a ``month``, each named by the ISO date it begins.
The console and the CSV render any report from its columns alone.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

if TYPE_CHECKING:
    from crm.store.db import Database

Period = Literal["week", "month"]
Unit = Literal["count", "percent", "seconds", "money", "text"]

#: The latest ``end`` of a report (its last day counted is the day before): a report steps
#: to the week or month after each of its days, which must still be a date.
LAST_END = date(9999, 12, 1)
#: The longest range a report covers (three years and a leap day).
MAX_RANGE = timedelta(days=3 * 365 + 1)
#: The range of a report asked without a start: the twelve weeks up to its end.
DEFAULT_RANGE = timedelta(weeks=12)


@dataclass(frozen=True)
class ReportQuery:
    """A report's range, ``[start, end)`` (aware, UTC), its period and its one grouping."""

    start: datetime
    end: datetime
    period: Period = "week"
    by: str | None = None
    #: The day a forward-looking figure counts from (``ReportTable.outlook``); default today.
    as_of: date | None = None

    def days(self) -> tuple[date, date]:
        """The first day counted and the day after the last; raises ValueError for a range
        that ends before it starts or after ``LAST_END``, or a naive time."""
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end must be aware datetimes")
        if self.end > datetime.combine(LAST_END, time(), UTC):
            raise ValueError(f"end must be at most {LAST_END.isoformat()}")
        first = self.start.astimezone(UTC).date()
        end = self.end.astimezone(UTC)
        after = end.date() if end.timetz() == time(tzinfo=UTC) else end.date() + timedelta(days=1)
        if after <= first:
            raise ValueError("end must be after start")
        return first, after


class ReportColumn(BaseModel):
    """A column of a report: its key in each row, how to head it, what its numbers are."""

    key: str
    label: str
    unit: Unit


class ReportFigure(BaseModel):
    """A figure of a report that looks ahead from today rather than back over the range
    (the renewals' value due in the next 90 days)."""

    key: str
    label: str
    unit: Unit
    value: Any
    as_of: date


class ReportTable(BaseModel):
    """A report's answer: a row per period (and group, with ``by``), oldest first, and the
    totals over the whole range. The first columns are ``period`` and, with ``by``, the
    dimension; an empty group value means the events did not say."""

    report: str
    title: str
    period: str
    by: str | None
    columns: list[ReportColumn]
    rows: list[dict[str, Any]]
    totals: dict[str, Any]
    outlook: list[ReportFigure] = []


@dataclass(frozen=True)
class ReportSpec:
    """A report: its name, title, the dimensions it groups by and how it is run."""

    name: str
    title: str
    dimensions: tuple[str, ...]
    run: Callable[[Database, str | None, ReportQuery], Awaitable[ReportTable]]


def period_of(day: date, period: Period) -> date:
    """The first day of the week (Monday) or month ``day`` falls in."""
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def periods_between(first: date, after: date, period: Period) -> list[date]:
    """The start of every period that has a day in ``[first, after)``, oldest first."""
    starts = []
    current = period_of(first, period)
    while current < after:
        starts.append(current)
        if period == "week":
            current += timedelta(days=7)
        else:
            current = (current.replace(day=28) + timedelta(days=4)).replace(day=1)
    return starts


def report_csv(table: ReportTable) -> str:
    """The table as CSV: a header of column labels, its rows, and a last row of totals."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([column.label for column in table.columns])
    for row in table.rows:
        writer.writerow([_cell(row.get(column.key)) for column in table.columns])
    first = table.columns[0].key
    totals = {first: "total", **table.totals}
    writer.writerow([_cell(totals.get(column.key)) for column in table.columns])
    return out.getvalue()


#: What a spreadsheet takes a cell beginning with for a formula (OWASP's CSV injection list).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    # A cell a spreadsheet would run as a formula is quoted as text.
    return (
        "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _number(text) else text
    )


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
