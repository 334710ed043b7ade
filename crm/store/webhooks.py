"""Webhook endpoints and the events emitted to them, in the database.

An event is stored once per ``(tenant, event_id)``, with its fact for the
reports, and gets one delivery row per endpoint of its tenant subscribed to
its type (the outbox): emitting is a local transaction, so it never waits on
a receiver. What becomes of the
deliveries (rounds, retries, the log) is ``crm.store.webhook_deliveries``.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from crm.domain.webhook_events import subscribes
from crm.platform.sealing import seal, unseal
from crm.reports.facts import record_fact
from crm.store.db import Database, insert_all_once
from crm.store.models import (
    NO_TENANT,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    as_utc,
    utcnow,
)


def new_secret() -> str:
    """A fresh Standard Webhooks signing secret: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def message_id(endpoint_id: str, event_key: str) -> str:
    """The ``webhook-id`` of an event's delivery to an endpoint: the same on every attempt,
    and unique across endpoints (whose ids are random) and events."""
    digest = hashlib.sha256(f"{endpoint_id}/{event_key}".encode()).hexdigest()
    return f"msg_{digest[:32]}"


def _tenant(tenant: str | None) -> str:
    return tenant if tenant is not None else NO_TENANT


async def create_endpoint(
    database: Database,
    tenant: str | None,
    *,
    url: str,
    event_types: list[str],
    personal_data: bool,
    enabled: bool,
    codec_keys: str | None,
) -> tuple[WebhookEndpoint, str]:
    """Store a new endpoint; it and its signing secret (shown once, stored sealed)."""
    endpoint_id = "ep_" + secrets.token_hex(10)
    secret = new_secret()
    row = WebhookEndpoint(
        endpoint_id=endpoint_id,
        tenant=_tenant(tenant),
        url=url,
        event_types=event_types,
        personal_data=personal_data,
        enabled=enabled,
        secret=seal(secret, endpoint_id, codec_keys),
    )
    await database.run(lambda session: session.add(row))
    return row, secret


def _endpoint(session: Session, tenant: str | None, endpoint_id: str) -> WebhookEndpoint | None:
    return session.exec(
        select(WebhookEndpoint).where(
            WebhookEndpoint.endpoint_id == endpoint_id,
            WebhookEndpoint.tenant == _tenant(tenant),
            col(WebhookEndpoint.deleted_at).is_(None),
        )
    ).first()


async def endpoint_of(
    database: Database, tenant: str | None, endpoint_id: str
) -> WebhookEndpoint | None:
    """The tenant's endpoint ``endpoint_id``; None when it has none (or it was deleted)."""
    return await database.run(lambda s: _endpoint(s, tenant, endpoint_id), write=False)


async def endpoints_of(database: Database, tenant: str | None) -> list[WebhookEndpoint]:
    """The tenant's endpoints, oldest first."""
    return await database.all(
        select(WebhookEndpoint)
        .where(
            WebhookEndpoint.tenant == _tenant(tenant),
            col(WebhookEndpoint.deleted_at).is_(None),
        )
        .order_by(col(WebhookEndpoint.id))
    )


async def update_endpoint(
    database: Database, tenant: str | None, endpoint_id: str, changes: dict[str, Any]
) -> WebhookEndpoint | None:
    """Apply ``changes`` (url, event_types, personal_data, enabled); None if no such endpoint.

    Enabling an endpoint forgets why it was disabled and its run of failures.
    """

    def update(session: Session) -> WebhookEndpoint | None:
        row = _endpoint(session, tenant, endpoint_id)
        if row is None:
            return None
        for name, value in changes.items():
            setattr(row, name, value)
        if changes.get("enabled") is True:
            row.disabled_reason = None
            row.failing_since = None
        row.updated_at = utcnow()
        session.add(row)
        return row

    return await database.run(update)


async def delete_endpoint(database: Database, tenant: str | None, endpoint_id: str) -> bool:
    """Delete the endpoint (its log is kept); its pending deliveries fail. False if none."""

    def delete(session: Session) -> bool:
        row = _endpoint(session, tenant, endpoint_id)
        if row is None:
            return False
        row.deleted_at = row.updated_at = utcnow()
        row.enabled = False
        session.add(row)
        fail_pending(session, endpoint_id, "the endpoint was deleted")
        return True

    return await database.run(delete)


async def rotate_secret(
    database: Database,
    tenant: str | None,
    endpoint_id: str,
    overlap: timedelta,
    codec_keys: str | None,
) -> tuple[WebhookEndpoint, str] | None:
    """A new signing secret for the endpoint; the old one also signs for ``overlap``."""
    secret = new_secret()

    def rotate(session: Session) -> WebhookEndpoint | None:
        row = _endpoint(session, tenant, endpoint_id)
        if row is None:
            return None
        now = utcnow()
        row.previous_secret = row.secret if overlap > timedelta(0) else None
        row.previous_secret_expires_at = now + overlap if overlap > timedelta(0) else None
        row.secret = seal(secret, endpoint_id, codec_keys)
        row.updated_at = now
        session.add(row)
        return row

    rotated = await database.run(rotate)
    return (rotated, secret) if rotated is not None else None


def signing_secrets(row: WebhookEndpoint, now: datetime, codec_keys: str | None) -> list[str]:
    """The secrets that sign the endpoint's deliveries at ``now``: the current one, and the
    previous one during a rotation's overlap."""
    current = [unseal(row.secret, row.endpoint_id, codec_keys)]
    expires = row.previous_secret_expires_at
    if row.previous_secret is not None and expires is not None and as_utc(expires) > now:
        current.append(unseal(row.previous_secret, row.endpoint_id, codec_keys))
    return current


@dataclass(frozen=True)
class Emitted:
    """An event to emit: what happened, to which process, and its data."""

    tenant: str | None
    event_id: str
    type: str
    process_id: str
    occurred_at: datetime
    data: dict[str, Any]
    #: The record the outcome is about (a customer, ticket, subscription, lead), when known.
    record_id: str | None = None
    #: When the run (a renewal's term) that emits it began, when known.
    started_at: datetime | None = None


def emit(session: Session, event: Emitted) -> list[str]:
    """Store ``event`` (once per id), its fact for the reports (``crm.reports.facts``) and a
    pending delivery to each subscribed, enabled endpoint of its tenant; the ids of those
    endpoints. A repeat adds only what is missing."""
    return emit_all(session, [event])[0]


def emit_all(session: Session, events: list[Emitted]) -> list[list[str]]:
    """``emit`` each of ``events``, with one statement for their events and one for their
    deliveries; for each, the ids of the endpoints it goes to."""
    for event in events:
        record_fact(session, event)
    now = utcnow()
    keys = [f"{_tenant(event.tenant)}/{event.event_id}" for event in events]
    insert_all_once(
        session,
        WebhookEvent,
        [
            {
                "key": key,
                "event_id": event.event_id,
                "tenant": _tenant(event.tenant),
                "type": event.type,
                "process_id": event.process_id,
                "occurred_at": event.occurred_at,
                "data": event.data,
                "created_at": now,
            }
            for key, event in zip(keys, events, strict=True)
        ],
    )
    stored_types = dict(  # an event stored before keeps the type it was stored with
        session.exec(
            select(WebhookEvent.key, WebhookEvent.type).where(col(WebhookEvent.key).in_(keys))
        ).all()
    )
    listening = _listening(session, {_tenant(event.tenant) for event in events})
    reached = [
        [
            endpoint_id
            for endpoint_id, event_types in listening.get(_tenant(event.tenant), [])
            if subscribes(event_types, stored_types[key])
        ]
        for key, event in zip(keys, events, strict=True)
    ]
    insert_all_once(
        session,
        WebhookDelivery,
        [
            {
                "key": f"{endpoint_id}/{key}",
                "endpoint_id": endpoint_id,
                "event_key": key,
                "message_id": message_id(endpoint_id, key),
                "state": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for key, endpoint_ids in zip(keys, reached, strict=True)
            for endpoint_id in endpoint_ids
        ],
    )
    return reached


def _listening(session: Session, tenants: set[str]) -> dict[str, list[tuple[str, list[str]]]]:
    """The enabled endpoints of each of ``tenants``, with the event types they take."""
    listening: dict[str, list[tuple[str, list[str]]]] = {}
    for tenant, endpoint_id, event_types in session.exec(
        select(WebhookEndpoint.tenant, WebhookEndpoint.endpoint_id, WebhookEndpoint.event_types)
        .where(
            col(WebhookEndpoint.tenant).in_(tenants),
            col(WebhookEndpoint.enabled).is_(True),
            col(WebhookEndpoint.deleted_at).is_(None),
        )
        .order_by(col(WebhookEndpoint.id))
    ).all():
        listening.setdefault(tenant, []).append((endpoint_id, list(event_types)))
    return listening


def undrained(session: Session, endpoint_ids: list[str]) -> list[str]:
    """Those of ``endpoint_ids`` no drain holds a lease on (``crm.store.
    webhook_deliveries``): their dispatch workflows must be woken. Read in the
    transaction that stored their deliveries, after it, and with the endpoints' rows
    share-locked (PostgreSQL), so a drain that lets go meanwhile is seen letting go."""
    if not endpoint_ids:
        return []
    now = utcnow()
    leases = session.exec(
        select(WebhookEndpoint.endpoint_id, WebhookEndpoint.draining_until)
        .where(col(WebhookEndpoint.endpoint_id).in_(endpoint_ids))
        .with_for_update(read=True)
    ).all()
    return [endpoint_id for endpoint_id, until in leases if until is None or as_utc(until) <= now]


def fail_pending(session: Session, endpoint_id: str, reason: str) -> None:
    """Fail the endpoint's pending deliveries, saying why (it was deleted or disabled)."""
    for delivery in session.exec(
        select(WebhookDelivery).where(
            WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.state == "pending"
        )
    ).all():
        delivery.state, delivery.next_attempt_at, delivery.last_error = "failed", None, reason
        session.add(delivery)
