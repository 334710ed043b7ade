"""``/v1/webhooks``: endpoints that receive the processes' events, signed, and their log.

An ``admin`` creates an endpoint with a URL and the event types it wants
(``ticket.breached``, ``ticket.*``, ``*``; the catalogue and each type's
payload schema are at ``/v1/webhooks/event-types``). The answer carries the
signing secret, once; it is stored sealed (``crm.platform.sealing``). Rotating it
gives a new secret and keeps the old one signing for an overlap, so a
receiver can switch without losing a delivery. ``/deliveries`` is the
delivery log (attempts, statuses, latency, the next attempt) and
``/redeliver`` sends failed deliveries again. A principal of a tenant sees
only its tenant's endpoints; another tenant's id is a 404.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response, status

from api.auth import Admin
from api.deps import AppContext, ContextDep, DatabaseDep
from api.problems import Problem, invalid_input
from api.webhook_actions import send_failed_again, wake
from api.webhook_bodies import (
    DeliveryView,
    EndpointChanges,
    EndpointView,
    EndpointWithSecret,
    NewEndpoint,
    Redelivered,
    Redelivery,
    Rotation,
)
from crm.domain.webhook_events import event_catalogue
from crm.platform.principals import Principal
from crm.platform.sealing import SealingUnavailable
from crm.platform.urls import address_problem
from crm.store.db import Database
from crm.store.models import WebhookEndpoint, as_utc
from crm.store.webhook_deliveries import deliveries_of
from crm.store.webhooks import (
    create_endpoint,
    delete_endpoint,
    endpoint_of,
    endpoints_of,
    rotate_secret,
    update_endpoint,
)
from processes.registry import Instant

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

EndpointId = Annotated[str, Path(pattern=r"^ep_[0-9a-f]{20}$")]


@router.get("/event-types", response_model=dict[str, Any])
async def event_types(principal: Admin) -> dict[str, Any]:
    """Every event type an endpoint can subscribe to, with its payload's JSON Schema."""
    return event_catalogue()


@router.post("", response_model=EndpointWithSecret, status_code=status.HTTP_201_CREATED)
async def create(body: NewEndpoint, context: ContextDep, principal: Admin) -> EndpointWithSecret:
    """Create an endpoint; the answer holds its signing secret, shown only this once."""
    _check_address(body.url, context)
    try:
        row, secret = await create_endpoint(
            context.database,
            principal.tenant,
            url=body.url,
            event_types=body.event_types,
            personal_data=body.personal_data,
            enabled=body.enabled,
            codec_keys=context.settings.secret_keys,
        )
    except SealingUnavailable as err:
        raise _no_sealing(err) from err
    return EndpointWithSecret(**EndpointView.of(row).model_dump(), secret=secret)


@router.get("", response_model=list[EndpointView])
async def list_endpoints(database: DatabaseDep, principal: Admin) -> list[EndpointView]:
    """The caller's tenant's endpoints, oldest first."""
    return [EndpointView.of(row) for row in await endpoints_of(database, principal.tenant)]


@router.get("/{endpoint_id}", response_model=EndpointView)
async def get_endpoint(
    endpoint_id: EndpointId, database: DatabaseDep, principal: Admin
) -> EndpointView:
    return EndpointView.of(await _endpoint(database, principal, endpoint_id))


@router.patch("/{endpoint_id}", response_model=EndpointView)
async def change(
    endpoint_id: EndpointId, body: EndpointChanges, context: ContextDep, principal: Admin
) -> EndpointView:
    """Change the URL, the event types, personal data or whether it is enabled."""
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    if body.url is not None:
        _check_address(body.url, context)
    row = await update_endpoint(context.database, principal.tenant, endpoint_id, changes)
    if row is None:
        raise _not_found(endpoint_id)
    if changes.get("enabled") is True:
        await wake(context, endpoint_id)
    return EndpointView.of(row)


@router.delete("/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete(endpoint_id: EndpointId, database: DatabaseDep, principal: Admin) -> Response:
    """Delete the endpoint: nothing more is delivered to it; its log is kept."""
    if not await delete_endpoint(database, principal.tenant, endpoint_id):
        raise _not_found(endpoint_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{endpoint_id}/rotate-secret", response_model=EndpointWithSecret)
async def rotate(
    endpoint_id: EndpointId, body: Rotation, context: ContextDep, principal: Admin
) -> EndpointWithSecret:
    """A new signing secret (shown this once); the old one also signs for the overlap."""
    try:
        rotated = await rotate_secret(
            context.database,
            principal.tenant,
            endpoint_id,
            timedelta(hours=body.overlap_hours),
            context.settings.secret_keys,
        )
    except SealingUnavailable as err:
        raise _no_sealing(err) from err
    if rotated is None:
        raise _not_found(endpoint_id)
    row, secret = rotated
    return EndpointWithSecret(**EndpointView.of(row).model_dump(), secret=secret)


@router.get("/{endpoint_id}/deliveries", response_model=list[DeliveryView])
async def deliveries(
    endpoint_id: EndpointId,
    database: DatabaseDep,
    principal: Admin,
    state: Annotated[str | None, Query(pattern="^(pending|delivered|failed)$")] = None,
    since: Instant | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[DeliveryView]:
    """The endpoint's deliveries, newest first, with their attempts."""
    await _endpoint(database, principal, endpoint_id)
    logs = await deliveries_of(database, endpoint_id, state=state, since=_utc(since), limit=limit)
    return [DeliveryView.of(log) for log in logs]


@router.post("/{endpoint_id}/redeliver", response_model=Redelivered)
async def send_again(
    endpoint_id: EndpointId, body: Redelivery, context: ContextDep, principal: Admin
) -> Redelivered:
    """Send failed deliveries again (one by ``delivery_id``, or all created ``since``; all
    if neither), each under its own ``webhook-id``, with three more days of retries."""
    row = await _endpoint(context.database, principal, endpoint_id)
    count = await send_failed_again(
        context, row, delivery_id=body.delivery_id, since=_utc(body.since)
    )
    return Redelivered(redelivered=count)


async def _endpoint(database: Database, principal: Principal, endpoint_id: str) -> WebhookEndpoint:
    row = await endpoint_of(database, principal.tenant, endpoint_id)
    if row is None:
        raise _not_found(endpoint_id)
    return row


def _utc(at: datetime | None) -> datetime | None:
    """``at`` in UTC (a time without an offset is taken as UTC; ``Instant`` holds in UTC)."""
    return as_utc(at) if at is not None else None


def _check_address(url: str, context: AppContext) -> None:
    """422 for a URL whose host is an address inside the network (not allowlisted)."""
    problem = address_problem(url, context.settings.outbound_allowed_hosts)
    if problem is not None:
        raise invalid_input("url", problem)


def _not_found(endpoint_id: str) -> Problem:
    return Problem(404, "not-found", "No such webhook endpoint", f"no endpoint {endpoint_id}")


def _no_sealing(err: Exception) -> Problem:
    return Problem(409, "sealing-unavailable", "Secrets cannot be stored", str(err))
