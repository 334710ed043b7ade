"""``/v1/customers/{customer_id}/timeline``: every step every process took for a customer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.auth import ServiceOrSupport
from api.deps import DatabaseDep, TemporalDep
from api.run_list import MAX_TIMELINE_PAGE, TimelinePage, customer_timeline
from api.visibility import VALUE_PATTERN

router = APIRouter(prefix="/v1/customers", tags=["customers"])


@router.get("/{customer_id}/timeline", response_model=TimelinePage)
async def get_timeline(
    customer_id: Annotated[str, Path(pattern=VALUE_PATTERN)],
    client: TemporalDep,
    database: DatabaseDep,
    principal: ServiceOrSupport,
    page_token: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_TIMELINE_PAGE)] = 100,
) -> TimelinePage:
    """The steps of the customer's processes (the runs with its ``CustomerId``), across
    runs and continued-as-new terms, oldest first; a page of ``limit`` at a time. A
    customer with no processes has an empty timeline."""
    return await customer_timeline(client, database, principal, customer_id, page_token, limit)
