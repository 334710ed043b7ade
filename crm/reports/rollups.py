"""Roll-ups of the reports: what each UTC day, week and month added, per group.

A fact (an outcome, an SLA outcome) adds its counts and durations to one row
per grain (its day, its week, its month) and group it belongs to (the whole
report, and one per dimension) in the transaction that stores it. A report
reads the fewest rows that cover its range without crossing its periods
(``cover``): a year by month is twelve month rows per group, however many
outcomes there were. Durations go into log-scale buckets,
``BUCKETS_PER_DOUBLING`` per doubling: a median or p90 read from them is
within ``PERCENTILE_ERROR`` of the exact one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col
from sqlmodel import select as select_rows

from crm.reports.shape import Period, period_of
from crm.store.models import ReportRollup

#: Buckets per doubling of a duration; a bucket is ``2 ** (1 / 8)`` (9%) wide.
BUCKETS_PER_DOUBLING = 8
#: The most a percentile read from the buckets (their geometric middle) is off by.
PERCENTILE_ERROR = 2 ** (0.5 / BUCKETS_PER_DOUBLING) - 1

#: The dimension of the rows of the whole report.
WHOLE = ""
#: The spans a fact is summed into; a row's ``day`` is the first day of its span.
GRAINS = ("day", "week", "month")


#: The bucket of every duration under a second.
UNDER_A_SECOND = -1

_INSERTS: dict[str, Any] = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def bucket_of(seconds: float) -> int:
    """The bucket of a duration: ``floor(log2(seconds) * BUCKETS_PER_DOUBLING)``; one bucket
    for everything under a second."""
    if seconds < 1:
        return UNDER_A_SECOND
    return math.floor(math.log2(seconds) * BUCKETS_PER_DOUBLING)


def bucket_middle(bucket: int) -> float:
    """The duration a bucket stands for: its geometric middle (0 s under a second)."""
    if bucket == UNDER_A_SECOND:
        return 0.0
    return float(2 ** ((bucket + 0.5) / BUCKETS_PER_DOUBLING))


@dataclass
class Contribution:
    """What one fact adds to a report's day: counts, durations, and the groups it is in."""

    report: str
    tenant: str
    day: date
    groups: Mapping[str, str]  # dimension -> this fact's value ("" when unknown)
    counts: dict[str, float] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)


def add_to_rollups(session: Session, *contributions: Contribution) -> None:
    """Add each of ``contributions`` (one transaction's) to its day's rows, created when
    missing, under a row lock on PostgreSQL. Every row is taken in one order across them
    (``_row_order``): two writers share no order-dependent lock, so they never deadlock,
    not even one moving a renewal from one day to another while one moves another renewal
    back."""
    rows = sorted(
        (
            (contribution, dimension, value, grain, _span_start(contribution.day, grain))
            for contribution in contributions
            for (dimension, value), grain in itertools.product(
                [(WHOLE, ""), *contribution.groups.items()], GRAINS
            )
        ),
        key=_row_order,
    )
    connection = session.connection()
    insert = _INSERTS[connection.dialect.name](ReportRollup.__table__)  # type: ignore[attr-defined]
    for contribution, dimension, value, grain, first in rows:
        connection.execute(
            insert.values(
                tenant=contribution.tenant,
                report=contribution.report,
                dimension=dimension,
                grain=grain,
                day=first,
                value=value,
                counts={},
                histograms={},
            ).on_conflict_do_nothing()
        )
        where = _span(contribution, dimension, value, grain, first)
        row = session.exec(select_rows(ReportRollup).where(*where).with_for_update()).one()
        row.counts = merge_counts(row.counts, contribution.counts)
        row.histograms = {
            **row.histograms,
            **{
                name: merge_histogram(row.histograms.get(name, {}), {str(bucket_of(seconds)): 1})
                for name, seconds in contribution.durations.items()
            },
        }
        session.add(row)
    session.flush()


def _row_order(
    row: tuple[Contribution, str, str, str, date],
) -> tuple[str, str, str, date, str, str]:
    """A roll-up row's place in the one order every writer takes them in: its unique key."""
    contribution, dimension, value, grain, first = row
    return (contribution.tenant, contribution.report, grain, first, dimension, value)


def _span_start(day: date, grain: str) -> date:
    if grain == "week":
        return period_of(day, "week")
    return period_of(day, "month") if grain == "month" else day


def _span(
    contribution: Contribution, dimension: str, value: str, grain: str, first: date
) -> list[Any]:
    return [
        col(ReportRollup.tenant) == contribution.tenant,
        col(ReportRollup.report) == contribution.report,
        col(ReportRollup.dimension) == dimension,
        col(ReportRollup.grain) == grain,
        col(ReportRollup.day) == first,
        col(ReportRollup.value) == value,
    ]


def merge_counts(into: Mapping[str, float], more: Mapping[str, float]) -> dict[str, float]:
    """The sums of two sets of counts."""
    merged = dict(into)
    for name, amount in more.items():
        merged[name] = merged.get(name, 0) + amount
    return merged


def merge_histogram(into: Mapping[str, int], more: Mapping[str, int]) -> dict[str, int]:
    """Two histograms of one duration added bucket by bucket."""
    merged = dict(into)
    for bucket, amount in more.items():
        merged[bucket] = merged.get(bucket, 0) + amount
    return merged


def percentile(histogram: Mapping[str, int], fraction: float) -> float | None:
    """The duration below which ``fraction`` of the histogram's durations fall (nearest
    rank, a bucket's middle); None for an empty histogram."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for bucket, amount in sorted((int(b), n) for b, n in histogram.items()):
        seen += amount
        if seen >= rank:
            return bucket_middle(bucket)
    raise AssertionError("unreachable: the ranks add up to the total")


def cover(first: date, after: date, period: Period) -> list[tuple[str, date]]:
    """The fewest (grain, first day) spans that cover the days ``[first, after)`` exactly,
    none crossing a period: whole months (for periods of a month), whole weeks (inside
    one month, unless the periods are weeks), and days for the rest."""
    spans = []
    day = first
    while day < after:
        month, next_month = day.replace(day=1), _next_month(day)
        week_end = day + timedelta(days=7)
        if period == "month" and day == month and next_month <= after:
            spans.append(("month", day))
            day = next_month
        elif (
            day.weekday() == 0
            and week_end <= after
            and (period == "week" or week_end <= next_month)
        ):
            spans.append(("week", day))
            day = week_end
        else:
            spans.append(("day", day))
            day += timedelta(days=1)
    return spans


def _next_month(day: date) -> date:
    return (day.replace(day=28) + timedelta(days=4)).replace(day=1)


def read_rollups(
    session: Session, tenant: str, report: str, dimension: str, spans: list[tuple[str, date]]
) -> list[tuple[date, str, dict[str, float], dict[str, dict[str, int]]]]:
    """The report's rows for ``dimension`` over ``spans`` (``cover``): (first day of the
    span, value, counts, histograms), in no particular order."""
    table = ReportRollup.__table__  # type: ignore[attr-defined]
    by_grain: dict[str, list[date]] = {}
    for grain, first in spans:
        by_grain.setdefault(grain, []).append(first)
    if not by_grain:
        return []
    rows = session.connection().execute(
        select(table.c.day, table.c.value, table.c.counts, table.c.histograms).where(
            table.c.tenant == tenant,
            table.c.report == report,
            table.c.dimension == dimension,
            or_(
                *(
                    and_(table.c.grain == grain, table.c.day.in_(days))
                    for grain, days in by_grain.items()
                )
            ),
        )
    )
    return [(day, value, counts, histograms) for day, value, counts, histograms in rows]
