"""Email delivery events from the relay, and the one-click unsubscribe links in emails.

``POST /v1/email/events`` (service) takes a relay's report on a message it
was given, by Message-ID: a hard bounce suppresses the address for all mail,
a complaint for marketing mail, and each event is recorded once in the
audit trail of the process that sent the message. ``/email/unsubscribe/{token}``
is the link of an email's footer and of its ``List-Unsubscribe`` header:
``GET`` shows a page with a button, ``POST`` (the button, or a mail
provider's RFC 8058 one-click request) unsubscribes without a login; the
signed token in the URL is what authorises it, so no CSRF token is needed.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request, status
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, select

from api.auth import Service
from api.console.rendering import page
from api.deps import ContextDep
from api.problems import Problem
from crm.mail.links import UNSUBSCRIBE_PATH, LinkError, UnsubscribeToken, verify
from crm.store.db import insert_once
from crm.store.models import AuditEntry, OutboundEmail
from crm.store.suppressions import link_secret, suppress, suppression_of

router = APIRouter(prefix="/v1/email", tags=["email"])
links_router = APIRouter(prefix=UNSUBSCRIBE_PATH, include_in_schema=False)

#: What each delivery event puts on the suppression list (delivered: nothing).
SUPPRESSES = {"hard_bounce": "all", "complaint": "marketing"}
#: The unsubscribe pages' own policy: crmflow's stylesheet and a form to itself, nothing else.
PAGE_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
_PAGE_HEADERS = {
    "content-security-policy": PAGE_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


class EmailEvent(BaseModel):
    """A relay's report on one message crmflow sent."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["hard_bounce", "complaint", "delivered"]
    message_id: str = Field(
        min_length=3,
        max_length=300,
        pattern=r"^<?[A-Za-z0-9._%+=-]+@[A-Za-z0-9.-]+>?$",
        examples=["<4f0c2a7d9e1b3c5a6d8e0f1a2b3c4d5e@crmflow.localhost>"],
    )
    occurred_at: datetime | None = None
    detail: str = Field(default="", max_length=1000)


class EmailEventRecorded(BaseModel):
    """What the event did: the process whose audit trail has it, and whether it put the
    address on the suppression list just now."""

    message_id: str
    type: str
    process_id: str
    suppressed: bool
    recorded: bool


@router.post(
    "/events",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=EmailEventRecorded,
)
async def email_event(
    event: EmailEvent, context: ContextDep, principal: Service
) -> EmailEventRecorded:
    """Record a delivery event of the message with ``message_id``, once per type.

    A ``hard_bounce`` suppresses the recipient for all mail and a ``complaint``
    for marketing mail; each event is an audit entry ``email_<type>:<template>``
    of the process that sent the message. 404 when crmflow sent no such
    message (or another tenant's process did).
    """
    message_id = "<" + event.message_id.strip("<>") + ">"

    def record(session: Session) -> EmailEventRecorded | None:
        outbox = session.exec(
            select(OutboundEmail).where(OutboundEmail.message_id == message_id)
        ).first()
        if outbox is None or not _of_tenant(outbox.process_id, principal.tenant):
            return None
        suppressed = False
        category = SUPPRESSES.get(event.type)
        if category is not None:
            suppressed = suppress(
                session,
                outbox.recipient.rpartition("<")[2].rstrip(">"),
                category,
                event.type,
                process_id=outbox.process_id,
                message_id=message_id,
            )
        occurred = event.occurred_at or datetime.now(UTC)
        audit = AuditEntry(
            key=_bounded(f"{outbox.key}/{event.type}"),
            process_id=outbox.process_id,
            step=f"email_{event.type}:{outbox.template}"[:100],
            detail={
                "message_id": message_id,
                "occurred_at": occurred.isoformat(),
                "detail": event.detail,
                "suppressed": category if category is not None else None,
            },
        )
        _, recorded = insert_once(session, audit)
        return EmailEventRecorded(
            message_id=message_id,
            type=event.type,
            process_id=outbox.process_id,
            suppressed=suppressed,
            recorded=recorded,
        )

    result = await context.database.run(record)
    if result is None:
        raise Problem(404, "message-not-found", "Message not found", f"no message {message_id}")
    return result


@links_router.get("/{token}")
async def unsubscribe_page(
    context: ContextDep, token: Annotated[str, Path(max_length=2000)]
) -> HTMLResponse:
    """The page an email's unsubscribe or preferences link opens: who, and a button."""
    found = await _token(context, token)
    if isinstance(found, HTMLResponse):
        return found
    held = await context.database.run(
        lambda session: suppression_of(session, found.address, "marketing")
    )
    return _page(
        "mail_unsubscribe.html",
        address=found.address,
        unsubscribed=held is not None,
        action=f"{UNSUBSCRIBE_PATH}/{token}",
    )


@links_router.post("/{token}")
async def unsubscribe(
    request: Request, context: ContextDep, token: Annotated[str, Path(max_length=2000)]
) -> HTMLResponse:
    """Unsubscribe the token's address from marketing mail (RFC 8058 one-click, or the
    page's button); recorded in the audit trail of the process whose email it came from."""
    found = await _token(context, token)
    if isinstance(found, HTMLResponse):
        return found

    def record(session: Session) -> None:
        suppress(session, found.address, "marketing", "unsubscribed", process_id=found.process_id)
        audit = AuditEntry(
            key=_bounded(f"{found.email_key}/unsubscribed"),
            process_id=found.process_id,
            step="email_unsubscribed",
            detail={"category": "marketing"},
        )
        insert_once(session, audit)

    await context.database.run(record)
    return _page("mail_unsubscribe.html", address=found.address, unsubscribed=True, action=None)


async def _token(context: ContextDep, token: str) -> UnsubscribeToken | HTMLResponse:
    secret = context.settings.email_link_secret
    if secret is None:
        secret = await context.database.run(link_secret)
    try:
        return verify(token, secret, datetime.now(UTC))
    except LinkError as err:
        return _page("mail_unsubscribe.html", status_code=404, error=str(err), address=None)


def _page(name: str, status_code: int = 200, **values: object) -> HTMLResponse:
    response = page(name, status_code=status_code, title="Email preferences", user=None, **values)
    response.headers.update(_PAGE_HEADERS)
    return response


def _of_tenant(process_id: str, tenant: str | None) -> bool:
    """Whether a process is the tenant's (its id ends ``@tenant``); every one for no tenant."""
    return tenant is None or process_id.endswith(f"@{tenant}")


def _bounded(key: str) -> str:
    """An audit key within its column's 300 characters, unique still."""
    if len(key) <= 300:
        return key
    return key[:250] + "#" + hashlib.sha256(key.encode()).hexdigest()[:40]
