"""Admins acting on a webhook endpoint: enabling it again and sending its failed
deliveries again. The API routes (``/v1/webhooks``) and the console both call these.

A disabled endpoint is enabled before anything is sent again: sending to one
that answered 410 or failed for three days would only fail again. Whatever is
due afterwards wakes the endpoint's dispatch workflow; when Temporal is away
that is a 503, and the deliveries stay pending for the next wake.
"""

from __future__ import annotations

from datetime import datetime

from api.deps import AppContext
from api.problems import Problem
from crm.platform.dispatch import wake_endpoints
from crm.store.models import WebhookEndpoint
from crm.store.webhook_deliveries import next_due, redeliver
from crm.store.webhooks import update_endpoint


async def enable_endpoint(
    context: AppContext, tenant: str | None, endpoint_id: str
) -> WebhookEndpoint | None:
    """Enable the endpoint (forgetting why it was disabled) and wake its dispatcher; None if
    the tenant has no such endpoint."""
    row = await update_endpoint(context.database, tenant, endpoint_id, {"enabled": True})
    if row is not None:
        await wake(context, endpoint_id)
    return row


async def send_failed_again(
    context: AppContext,
    endpoint: WebhookEndpoint,
    *,
    delivery_id: int | None = None,
    since: datetime | None = None,
) -> int:
    """Make the endpoint's failed deliveries pending again (one by ``delivery_id``, or all
    created ``since``; all if neither) and wake its dispatcher; how many. Problem 409 when
    the endpoint is disabled."""
    if not endpoint.enabled:
        raise Problem(
            409,
            "endpoint-disabled",
            "The endpoint is disabled",
            f"enable {endpoint.endpoint_id} first (Enable in the console, or PATCH enabled: true)"
            + (f": {endpoint.disabled_reason}" if endpoint.disabled_reason else ""),
        )
    count = await redeliver(
        context.database, endpoint.endpoint_id, delivery_id=delivery_id, since=since
    )
    if await next_due(context.database, endpoint.endpoint_id) is not None:  # after a 503 too
        await wake(context, endpoint.endpoint_id)
    return count


async def wake(context: AppContext, endpoint_id: str) -> None:
    """Start or wake the endpoint's dispatch workflow; 503 when Temporal is away (the
    deliveries stay pending, and the next event or a repeat wakes it)."""
    client = await context.temporal.client()
    await wake_endpoints(client, context.settings.task_queue, [endpoint_id])
