"""The activity that measures how much of its plan a subscription uses.

The product reports usage per metric (seats, API calls, storage...) through
``POST /v1/subscriptions/{subscription_id}/usage``, which stores one
``usage_reports`` row per report. The analysis takes the latest report of
each metric since the given time and answers with the most used metric: a
subscription near the limit of any one metric is a candidate for a bigger plan.
"""

from __future__ import annotations

from sqlmodel import col, select
from temporalio import activity

from crm.store.db import Database
from crm.store.models import UsageReport, as_utc, of_tenant
from workflows.contracts import ANALYSE_USAGE, UsageRequest, UsageSummary


class UsageActivities:
    """Reads the usage reports of the CRM database (read-only, safe to retry)."""

    def __init__(self, database: Database) -> None:
        self._database = database

    @activity.defn(name=ANALYSE_USAGE)
    async def analyse_usage(self, request: UsageRequest) -> UsageSummary:
        """The highest utilisation among the latest report of each metric since ``since``.

        Only the reports of the run's tenant count (those of no tenant for a run
        of no tenant), so one tenant's reports never shape another's renewal.
        """
        statement = (
            select(UsageReport)
            .where(UsageReport.subscription_id == request.subscription_id)
            .where(col(UsageReport.reported_at) >= as_utc(request.since))
            .where(of_tenant(col(UsageReport.tenant), request.tenant))
            .order_by(col(UsageReport.reported_at), col(UsageReport.id))
        )
        rows = await self._database.all(statement)
        latest: dict[str, UsageReport] = {}
        for row in rows:
            latest[row.metric] = row
        if not latest:
            activity.logger.info("no usage reported for %s", request.subscription_id)
            return UsageSummary(request.subscription_id, None, 0.0, 0.0, 0.0, reports=0)
        top = max(latest.values(), key=lambda row: row.used / row.included)
        return UsageSummary(
            subscription_id=request.subscription_id,
            metric=top.metric,
            used=top.used,
            included=top.included,
            utilisation=round(top.used / top.included, 4),
            reports=len(rows),
            reported_at=as_utc(top.reported_at),
        )
