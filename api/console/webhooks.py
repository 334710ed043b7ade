"""The console's webhooks: the admin's endpoints, each one's delivery log, and acting on them.

``/console/webhooks`` lists the tenant's endpoints with what is pending and
failed and how the newest delivery went; ``/console/webhooks/{id}`` is the
endpoint's delivery log (newest first, every attempt's status, latency and
error, the next attempt), filtered by state. From there an admin enables a
disabled endpoint and sends failed deliveries again, one or all: the same
actions (``api.webhook_actions``) and store reads the ``/v1/webhooks`` API
answers with, so the page shows what the API would, for the admin's tenant only.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import RedirectResponse

from api.console.rendering import page, page_context
from api.console.security import (
    CONSOLE_PATH,
    ConsoleRefused,
    SessionDep,
    check_csrf,
    read_form,
    require_role,
)
from api.deps import ContextDep
from api.problems import Problem
from api.webhook_actions import enable_endpoint, send_failed_again
from api.webhook_bodies import DeliveryView, EndpointView
from crm.store.console_sessions import SignedIn
from crm.store.models import WebhookEndpoint
from crm.store.webhook_deliveries import deliveries_of, endpoint_health
from crm.store.webhooks import endpoint_of, endpoints_of

router = APIRouter(prefix=f"{CONSOLE_PATH}/webhooks", include_in_schema=False)

EndpointId = Annotated[str, Path(pattern=r"^ep_[0-9a-f]{20}$")]
STATES = ("pending", "delivered", "failed")
#: Deliveries the log page shows, newest first.
SHOWN = 100


@router.get("")
async def endpoints(session: SessionDep, context: ContextDep) -> Response:
    require_role(session.principal, "admin")
    rows = await endpoints_of(context.database, session.principal.tenant)
    health = await endpoint_health(context.database, [row.endpoint_id for row in rows])
    return page(
        "webhooks.html",
        **page_context(session, "webhooks", "Webhooks"),
        endpoints=[(EndpointView.of(row), health[row.endpoint_id]) for row in rows],
    )


@router.get("/{endpoint_id}")
async def delivery_log(
    request: Request,
    endpoint_id: EndpointId,
    session: SessionDep,
    context: ContextDep,
    state: Annotated[str | None, Query(pattern="^(|pending|delivered|failed)$")] = None,
) -> Response:
    require_role(session.principal, "admin")
    endpoint = await _endpoint(session, context, endpoint_id)
    return await _log_page(session, context, endpoint, state or None, _flash(request))


@router.post("/{endpoint_id}/enable")
async def enable(
    request: Request, endpoint_id: EndpointId, session: SessionDep, context: ContextDep
) -> Response:
    check_csrf(session, await read_form(request))
    require_role(session.principal, "admin")
    if await enable_endpoint(context, session.principal.tenant, endpoint_id) is None:
        raise _not_found(endpoint_id)
    return _back(endpoint_id, enabled="1")


@router.post("/{endpoint_id}/redeliver")
async def redeliver(
    request: Request, endpoint_id: EndpointId, session: SessionDep, context: ContextDep
) -> Response:
    form = await read_form(request)
    check_csrf(session, form)
    require_role(session.principal, "admin")
    endpoint = await _endpoint(session, context, endpoint_id)
    delivery_id = form.get("delivery_id", "")
    if delivery_id and not (
        delivery_id.isascii() and delivery_id.isdigit() and len(delivery_id) <= 18
    ):
        refused = Problem(
            422, "validation-error", "Invalid delivery", "delivery_id: not a delivery"
        )
        return await _log_page(session, context, endpoint, None, error=refused)
    try:
        count = await send_failed_again(
            context, endpoint, delivery_id=int(delivery_id) if delivery_id else None
        )
    except Problem as refused:
        return await _log_page(session, context, endpoint, None, error=refused)
    if delivery_id and count == 0:
        missing = Problem(
            404, "not-found", "No such delivery", f"no failed delivery {delivery_id} here"
        )
        return await _log_page(session, context, endpoint, None, error=missing)
    return _back(endpoint_id, sent=str(count))


async def _endpoint(session: SignedIn, context: ContextDep, endpoint_id: str) -> WebhookEndpoint:
    row = await endpoint_of(context.database, session.principal.tenant, endpoint_id)
    if row is None:
        raise _not_found(endpoint_id)
    return row


async def _log_page(
    session: SignedIn,
    context: ContextDep,
    endpoint: WebhookEndpoint,
    state: str | None,
    flash: str | None = None,
    error: Problem | None = None,
) -> Response:
    """The endpoint's log, with what an action answered: its success, or why it was refused."""
    logs = await deliveries_of(context.database, endpoint.endpoint_id, state=state, limit=SHOWN)
    health = await endpoint_health(context.database, [endpoint.endpoint_id])
    return page(
        "webhook.html",
        status_code=error.status if error else 200,
        **page_context(session, "webhooks", f"Webhook {endpoint.url}"),
        endpoint=EndpointView.of(endpoint),
        health=health[endpoint.endpoint_id],
        deliveries=[DeliveryView.of(log) for log in logs],
        state=state,
        states=STATES,
        shown=SHOWN,
        flash=flash,
        error=(error.detail or error.title) if error else None,
    )


def _flash(request: Request) -> str | None:
    """What the redirect after an action says it did."""
    params = request.query_params
    if params.get("enabled"):
        return (
            "Endpoint enabled: new events go to it again. Deliveries that failed stay failed "
            "until you send them again."
        )
    sent = params.get("sent")
    if sent is not None and sent.isdigit():
        return f"{sent} failed {'delivery' if sent == '1' else 'deliveries'} sent again."
    return None


def _back(endpoint_id: str, **done: str) -> Response:
    return RedirectResponse(
        f"{CONSOLE_PATH}/webhooks/{endpoint_id}?{urlencode(done)}", status_code=303
    )


def _not_found(endpoint_id: str) -> ConsoleRefused:
    return ConsoleRefused(404, f"There is no webhook endpoint {endpoint_id} in your tenant.")
