"""``/v1/subscriptions/{subscription_id}/usage``: usage the product reports per subscription.

Renewals read it at their usage-analysis mark (60 days before the renewal
date by default) to decide whether to offer an upsell.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, status
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select

from api.auth import Service, ServiceOrSupport
from api.deps import DatabaseDep
from crm.store.models import UsageReport, as_utc, utcnow
from processes.registry import Instant

router = APIRouter(prefix="/v1/subscriptions", tags=["usage"])

SubscriptionId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")]


class UsageCreate(BaseModel):
    """How much of one metric of its plan a subscription uses now."""

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(min_length=1, max_length=50, description="e.g. seats, api_calls")
    used: float = Field(ge=0, allow_inf_nan=False, strict=True)  # a number, not true
    included: float = Field(
        gt=0, allow_inf_nan=False, strict=True, description="What the plan includes of the metric."
    )
    reported_at: Instant | None = Field(default=None, description="Default: now.")


class UsageView(BaseModel):
    """One stored usage report."""

    id: int
    subscription_id: str
    metric: str
    used: float
    included: float
    reported_at: datetime


@router.post(
    "/{subscription_id}/usage", response_model=UsageView, status_code=status.HTTP_201_CREATED
)
async def report_usage(
    subscription_id: SubscriptionId, body: UsageCreate, database: DatabaseDep, principal: Service
) -> UsageView:
    """Store a usage report for the subscription, as the caller's tenant's."""
    reported_at = body.reported_at or utcnow()
    if reported_at.tzinfo is None:
        reported_at = reported_at.replace(tzinfo=UTC)
    row = UsageReport(
        subscription_id=subscription_id,
        metric=body.metric,
        used=body.used,
        included=body.included,
        reported_at=reported_at,
        tenant=principal.tenant,
    )
    await database.run(lambda session: session.add(row))
    return _view(row)


@router.get("/{subscription_id}/usage", response_model=list[UsageView])
async def list_usage(
    subscription_id: SubscriptionId, database: DatabaseDep, principal: ServiceOrSupport
) -> list[UsageView]:
    """The subscription's usage reports, newest first (at most 100); a tenant's only its own."""
    statement = (
        select(UsageReport)
        .where(UsageReport.subscription_id == subscription_id)
        .order_by(col(UsageReport.reported_at).desc())
        .limit(100)
    )
    if principal.tenant is not None:
        statement = statement.where(UsageReport.tenant == principal.tenant)
    rows = await database.all(statement)
    return [_view(row) for row in rows]


def _view(row: UsageReport) -> UsageView:
    return UsageView(
        id=row.id or 0,
        subscription_id=row.subscription_id,
        metric=row.metric,
        used=row.used,
        included=row.included,
        reported_at=as_utc(row.reported_at),
    )
