"""The reports: SLA, onboarding, renewals, leads and automations, read from the roll-ups.

Each is a list of columns computed from a group's summed counts and merged
duration histograms (``crm.reports.rollups``), so one runner serves them
all: it reads the months, weeks and days that cover the range for the
chosen dimension, sums them per period and group, and once more for the
totals. Rates are percentages with
one decimal (None with nothing to divide by); medians and p90s are read from
the histograms, within ``PERCENTILE_ERROR``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlmodel import Session

from crm.domain.schedules import OnboardingSchedule
from crm.reports.facts import AUTOMATION_ENDS
from crm.reports.rollups import (
    WHOLE,
    cover,
    percentile,
    read_rollups,
)
from crm.reports.shape import (
    ReportColumn,
    ReportFigure,
    ReportQuery,
    ReportSpec,
    ReportTable,
    Unit,
    period_of,
    periods_between,
)
from crm.reports.terms import DUE_WITHIN, open_terms_due
from crm.store.db import Database
from crm.store.models import NO_TENANT

#: A report's figures that look ahead from a day: (session, tenant, day) -> figures.
Outlook = Callable[[Session, str, date], list[ReportFigure]]


@dataclass
class Group:
    """A period's (or the range's) sums for one group."""

    counts: dict[str, float] = field(default_factory=dict)
    histograms: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, counts: dict[str, float], histograms: dict[str, dict[str, int]]) -> None:
        for name, amount in counts.items():
            self.counts[name] = self.counts.get(name, 0) + amount
        for name, histogram in histograms.items():
            summed = self.histograms.setdefault(name, {})
            for bucket, amount in histogram.items():
                summed[bucket] = summed.get(bucket, 0) + amount

    def count(self, name: str) -> float:
        return self.counts.get(name, 0)


@dataclass(frozen=True)
class Column:
    """A report column and how a group's sums give its value."""

    key: str
    label: str
    unit: Unit
    value: Callable[[Group], Any]


def count(key: str, label: str) -> Column:
    return Column(key, label, "count", lambda group: int(group.count(key)))


def money(key: str, label: str) -> Column:
    return Column(key, label, "money", lambda group: round(group.count(key), 2))


def rate(
    key: str,
    label: str,
    part: tuple[str, ...],
    whole: tuple[str, ...],
    *,
    less: tuple[str, ...] = (),
) -> Column:
    """The percentage the counts ``part`` make of the counts ``whole`` less the counts
    ``less``; None (no rate) when that is nothing."""

    def value(group: Group) -> float | None:
        total = sum(group.count(name) for name in whole) - sum(group.count(n) for n in less)
        return round(100 * sum(group.count(name) for name in part) / total, 1) if total else None

    return Column(key, label, "percent", value)


def quantile(key: str, label: str, histogram: str, fraction: float) -> Column:
    def value(group: Group) -> float | None:
        found = percentile(group.histograms.get(histogram, {}), fraction)
        return round(found) if found is not None else None

    return Column(key, label, "seconds", value)


@dataclass(frozen=True)
class Report:
    """A report over the roll-ups of ``name``."""

    name: str
    title: str
    dimensions: tuple[str, ...]
    columns: tuple[Column, ...]
    outlook: Outlook | None = None

    async def run(self, database: Database, tenant: str | None, query: ReportQuery) -> ReportTable:
        """The report for ``tenant`` (None: of no tenant) over ``query``; raises ValueError for
        a dimension the report does not have or a range that ends before it starts or after
        ``LAST_END``."""
        if query.by is not None and query.by not in self.dimensions:
            raise ValueError(f"by: one of {', '.join(self.dimensions)}")
        first, after = query.days()
        owner = tenant if tenant is not None else NO_TENANT
        dimension = query.by or WHOLE
        spans = cover(first, after, query.period)

        def read(session: Session) -> list[tuple[date, str, Any, Any]]:
            return read_rollups(session, owner, self.name, dimension, spans)

        outlook: list[ReportFigure] = []
        if self.outlook is not None:
            look = self.outlook
            today = query.as_of or datetime.now(UTC).date()
            outlook = await database.run(lambda session: look(session, owner, today), write=False)

        groups: dict[tuple[date, str], Group] = {}
        if query.by is None:
            groups = {(start, ""): Group() for start in periods_between(first, after, query.period)}
        totals = Group()
        for day, value, counts, histograms in await database.run(read, write=False):
            groups.setdefault((period_of(day, query.period), value), Group()).add(
                counts, histograms
            )
            totals.add(counts, histograms)
        leading = [ReportColumn(key="period", label="Period", unit="text")]
        if query.by is not None:
            leading.append(ReportColumn(key=query.by, label=query.by.capitalize(), unit="text"))
        rows = []
        for (start, value), group in sorted(groups.items()):
            row: dict[str, Any] = {"period": start.isoformat()}
            if query.by is not None:
                row[query.by] = value
            rows.append(row | self._values(group))
        return ReportTable(
            report=self.name,
            title=self.title,
            period=query.period,
            by=query.by,
            columns=leading
            + [ReportColumn(key=c.key, label=c.label, unit=c.unit) for c in self.columns],
            rows=rows,
            totals=self._values(totals),
            outlook=outlook,
        )

    def _values(self, group: Group) -> dict[str, Any]:
        return {column.key: column.value(group) for column in self.columns}

    def spec(self) -> ReportSpec:
        return ReportSpec(self.name, self.title, self.dimensions, self.run)


_CLOCKS = {
    "first_response": "First response",
    "next_reply": "Next reply",
    "periodic_update": "Periodic update",
    "resolution": "Resolution",
}

SLA = Report(
    "sla",
    "Ticket SLA",
    ("priority", "tier", "assignee"),
    (
        count("tickets", "Tickets"),
        *(
            column
            for clock, name in _CLOCKS.items()
            for column in (
                count(f"{clock}_met", f"{name} met"),
                count(f"{clock}_breached", f"{name} breached"),
                count(f"{clock}_breaches", f"{name} breaches"),
                rate(
                    f"{clock}_compliance",
                    f"{name} compliance",
                    (f"{clock}_met",),
                    (f"{clock}_met", f"{clock}_breached"),
                ),
                quantile(f"{clock}_median", f"{name} median", f"{clock}_seconds", 0.5),
                quantile(f"{clock}_p90", f"{name} p90", f"{clock}_seconds", 0.9),
            )
        ),
        count("escalations_warning", "Warnings"),
        count("escalations_breach", "Escalated to team lead"),
        count("escalations_manager", "Escalated to manager"),
    ),
)

_ONBOARDING_ENDS = ("activated", "stalled", "cancelled")

#: The milestones whose median time from the start the onboarding report shows: the default
#: schedule's (a policy's own milestones are counted, but not shown).
MILESTONES = tuple(OnboardingSchedule().milestones)

ONBOARDING = Report(
    "onboarding",
    "Onboarding",
    ("plan", "owner"),
    (
        count("started", "Started"),
        count("activated", "Activated"),
        count("stalled", "Stalled"),
        count("cancelled", "Cancelled"),
        rate("activation_rate", "Activation rate", ("activated",), _ONBOARDING_ENDS),
        quantile(
            "time_to_activation_median",
            "Median time to activation",
            "time_to_activation",
            0.5,
        ),
        *(
            quantile(
                f"time_to_{milestone}_median",
                f"Median time to {milestone.replace('_', ' ')}",
                f"time_to_{milestone}",
                0.5,
            )
            for milestone in MILESTONES
        ),
        count("nudges_before_activation", "Nudges before activation"),
    ),
)

_RENEWED = ("renewed", "auto_renewed")


def renewals_due(session: Session, tenant: str, today: date) -> list[ReportFigure]:
    """The open terms due in the next 90 days and their annual value."""
    terms, value = open_terms_due(session, tenant, today)
    days = DUE_WITHIN.days
    return [
        ReportFigure(
            key="due_next_90_days",
            label=f"Open terms due in the next {days} days",
            unit="count",
            value=terms,
            as_of=today,
        ),
        ReportFigure(
            key="value_due_next_90_days",
            label=f"Annual value due in the next {days} days",
            unit="money",
            value=round(value, 2),
            as_of=today,
        ),
    ]


RENEWALS = Report(
    "renewals",
    "Renewals",
    ("plan", "owner"),
    (
        count("due", "Due"),
        money("value_due", "Annual value due"),
        count("renewed", "Renewed"),
        count("auto_renewed", "Auto-renewed"),
        count("lapsed", "Lapsed"),
        count("cancelled", "Cancelled"),
        rate("renewal_rate", "Renewal rate", _RENEWED, (*_RENEWED, "lapsed")),
        money("value_renewed", "Annual value renewed"),
        money("value_lapsed", "Annual value lapsed"),
        count("reminders", "Reminders sent"),
        count("upsells_offered", "Upsell offers"),
        count("upsells_accepted", "Upsells accepted"),
        rate("upsell_acceptance", "Upsell acceptance", ("upsells_accepted",), ("upsells_offered",)),
    ),
    renewals_due,
)

_LEAD_ENDS = ("qualified", "nurture", "unresponsive", "unsubscribed", "bounced", "cancelled")

LEADS = Report(
    "leads",
    "Leads",
    ("owner", "grade"),
    (
        count("routed", "Routed"),
        *(count(outcome, outcome.capitalize()) for outcome in _LEAD_ENDS),
        rate("qualified_rate", "Qualified rate", ("qualified",), _LEAD_ENDS),
        count("first_contacted", "First contacted"),
        quantile(
            "time_to_first_contact_median",
            "Median time to first contact",
            "time_to_first_contact",
            0.5,
        ),
    ),
)

AUTOMATIONS = Report(
    "automations",
    "Automations",
    ("automation", "version"),
    (
        count("enrolled", "Enrolled"),
        count("goal_met", "Goal met"),
        count("completed", "Completed"),
        count("step_failed", "Step failed"),
        count("cancelled", "Cancelled"),
        rate(  # of the runs whose automation has a goal
            "goal_rate", "Goal rate", ("goal_met",), AUTOMATION_ENDS, less=("ended_without_goal",)
        ),
    ),
)

#: Every report by name, in the order the catalogue lists them.
REPORTS: dict[str, ReportSpec] = {
    report.name: report.spec() for report in (SLA, ONBOARDING, RENEWALS, LEADS, AUTOMATIONS)
}
