"""Daily roll-ups of the reports: what each UTC day added, per group, read instead of the facts.

A fact (an outcome, an SLA outcome) adds its counts and durations to one row
per group it belongs to (the whole day, and one per dimension of its report)
in the transaction that stores it, so a report over a year reads at most a
row per day and group, however many outcomes there were. Durations go into
log-scale buckets, ``BUCKETS_PER_DOUBLING`` per doubling: a median or p90
read from them is within ``PERCENTILE_ERROR`` of the exact one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col
from sqlmodel import select as select_rows

from crm.store.models import ReportRollup

#: Buckets per doubling of a duration; a bucket is ``2 ** (1 / 16)`` (4.4%) wide.
BUCKETS_PER_DOUBLING = 16
#: The most a percentile read from the buckets (their geometric middle) is off by.
PERCENTILE_ERROR = 2 ** (0.5 / BUCKETS_PER_DOUBLING) - 1

#: The dimension of a day's row for the whole report.
WHOLE = ""


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


def add_to_rollups(session: Session, contribution: Contribution) -> None:
    """Add ``contribution`` to its day's rows (created when missing), under a row lock on
    PostgreSQL; the rows are taken in one order, so two writers never deadlock."""
    histograms = {name: bucket_of(value) for name, value in contribution.durations.items()}
    groups = sorted([(WHOLE, ""), *contribution.groups.items()])
    connection = session.connection()
    insert = _INSERTS[connection.dialect.name](ReportRollup.__table__)  # type: ignore[attr-defined]
    for dimension, value in groups:
        where = _group(contribution, dimension, value)
        connection.execute(
            insert.values(
                tenant=contribution.tenant,
                report=contribution.report,
                dimension=dimension,
                day=contribution.day,
                value=value,
                counts={},
                histograms={},
            ).on_conflict_do_nothing()
        )
        row = session.exec(select_rows(ReportRollup).where(*where).with_for_update()).one()
        row.counts = merge_counts(row.counts, contribution.counts)
        row.histograms = {
            **row.histograms,
            **{
                name: merge_histogram(row.histograms.get(name, {}), {str(bucket): 1})
                for name, bucket in histograms.items()
            },
        }
        session.add(row)
    session.flush()


def _group(contribution: Contribution, dimension: str, value: str) -> list[Any]:
    return [
        col(ReportRollup.tenant) == contribution.tenant,
        col(ReportRollup.report) == contribution.report,
        col(ReportRollup.dimension) == dimension,
        col(ReportRollup.day) == contribution.day,
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


def read_rollups(
    session: Session, tenant: str, report: str, dimension: str, start: date, end: date
) -> list[tuple[date, str, dict[str, float], dict[str, dict[str, int]]]]:
    """The report's rows for ``dimension`` from day ``start`` up to ``end`` (excluded):
    (day, value, counts, histograms), in no particular order."""
    table = ReportRollup.__table__  # type: ignore[attr-defined]
    rows = session.connection().execute(
        select(table.c.day, table.c.value, table.c.counts, table.c.histograms).where(
            table.c.tenant == tenant,
            table.c.report == report,
            table.c.dimension == dimension,
            table.c.day >= start,
            table.c.day < end,
        )
    )
    return [(day, value, counts, histograms) for day, value, counts, histograms in rows]
