"""Webhook endpoints, the events emitted to them and their deliveries, in the database.

An event is stored once per ``(tenant, event_id)`` and gets one delivery row
per endpoint of its tenant subscribed to its type (the outbox): emitting is a
local transaction, so it never waits on a receiver. The endpoint's dispatch
workflow (``workflows.webhook_dispatch``) takes the due deliveries, and each
attempt's result is written back here (``record_attempt``) with the delivery
log's figures: status, latency, the next attempt.
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
from crm.store.db import Database, insert_once
from crm.store.models import (
    NO_TENANT,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    as_utc,
    utcnow,
)

#: How long after a delivery's first attempt it is given up, and how long an
#: endpoint may fail without a success before it is disabled.
GIVE_UP_AFTER = timedelta(days=3)
#: The delays between a delivery's attempts: the n-th retry waits the n-th (then the last).
BACK_OFF: tuple[timedelta, ...] = (
    timedelta(seconds=5),
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
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
        _fail_pending(session, endpoint_id, "the endpoint was deleted")
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


def emit(session: Session, event: Emitted) -> list[str]:
    """Store ``event`` (once per id) and a pending delivery to each subscribed, enabled
    endpoint of its tenant; the ids of those endpoints. A repeat adds only what is missing."""
    tenant = _tenant(event.tenant)
    stored, _ = insert_once(
        session,
        WebhookEvent(
            key=f"{tenant}/{event.event_id}",
            event_id=event.event_id,
            tenant=tenant,
            type=event.type,
            process_id=event.process_id,
            occurred_at=event.occurred_at,
            data=event.data,
        ),
    )
    endpoints = session.exec(
        select(WebhookEndpoint).where(
            WebhookEndpoint.tenant == tenant,
            col(WebhookEndpoint.enabled).is_(True),
            col(WebhookEndpoint.deleted_at).is_(None),
        )
    ).all()
    reached = []
    for endpoint in endpoints:
        if not subscribes(endpoint.event_types, stored.type):
            continue
        insert_once(
            session,
            WebhookDelivery(
                key=f"{endpoint.endpoint_id}/{stored.key}",
                endpoint_id=endpoint.endpoint_id,
                event_key=stored.key,
                message_id=message_id(endpoint.endpoint_id, stored.key),
                next_attempt_at=utcnow(),
            ),
        )
        reached.append(endpoint.endpoint_id)
    return reached


@dataclass(frozen=True)
class Due:
    """A delivery to attempt now, with its event."""

    delivery: WebhookDelivery
    event: WebhookEvent


async def due_deliveries(
    database: Database, endpoint_id: str, now: datetime, limit: int
) -> tuple[WebhookEndpoint | None, list[Due]]:
    """The endpoint (None once deleted) and its pending deliveries due at ``now``, oldest
    first."""

    def read(session: Session) -> tuple[WebhookEndpoint | None, list[Due]]:
        endpoint = session.exec(
            select(WebhookEndpoint).where(
                WebhookEndpoint.endpoint_id == endpoint_id,
                col(WebhookEndpoint.deleted_at).is_(None),
            )
        ).first()
        if endpoint is None or not endpoint.enabled:
            return endpoint, []
        rows = session.exec(
            select(WebhookDelivery, WebhookEvent)
            .join(WebhookEvent, col(WebhookEvent.key) == col(WebhookDelivery.event_key))
            .where(
                WebhookDelivery.endpoint_id == endpoint_id,
                WebhookDelivery.state == "pending",
                col(WebhookDelivery.next_attempt_at) <= now,
            )
            .order_by(col(WebhookDelivery.next_attempt_at), col(WebhookDelivery.id))
            .limit(limit)
        ).all()
        return endpoint, [Due(delivery, event) for delivery, event in rows]

    return await database.run(read, write=False)


@dataclass(frozen=True)
class Attempted:
    """The result of one attempt: the status (None when unanswered), latency, error, and
    what follows: ``delivered``, ``retry`` (at ``retry_at``), ``failed`` or ``gone`` (410)."""

    delivery_key: str
    at: datetime
    status: int | None
    latency_ms: float
    error: str | None
    result: str
    retry_at: datetime | None = None


@dataclass(frozen=True)
class EndpointState:
    """Where the endpoint stands after a round: disabled (and why), its next due delivery."""

    disabled_reason: str | None
    next_due: datetime | None


def next_retry(first_attempt: datetime, attempts: int, now: datetime) -> datetime | None:
    """When a delivery that failed ``attempts`` times is tried again: after the back-off, and
    last at ``GIVE_UP_AFTER`` from its first attempt; None once that last attempt failed."""
    deadline = first_attempt + GIVE_UP_AFTER
    if now >= deadline:
        return None
    return min(now + BACK_OFF[min(attempts, len(BACK_OFF)) - 1], deadline)


async def record_round(
    database: Database, endpoint_id: str, results: list[Attempted], now: datetime
) -> EndpointState:
    """Write a round of attempts to the log and the deliveries; disable the endpoint on a
    410 or after ``GIVE_UP_AFTER`` of failures without a success."""

    def record(session: Session) -> EndpointState:
        endpoint = session.exec(
            select(WebhookEndpoint).where(WebhookEndpoint.endpoint_id == endpoint_id)
        ).one()
        disabled: str | None = None
        succeeded = failed = False
        keys = [result.delivery_key for result in results]
        deliveries = (
            {
                row.key: row
                for row in session.exec(
                    select(WebhookDelivery).where(col(WebhookDelivery.key).in_(keys))
                ).all()
            }
            if keys
            else {}
        )
        for result in results:
            delivery = deliveries[result.delivery_key]
            delivery.attempts += 1
            delivery.first_attempt_at = delivery.first_attempt_at or result.at
            delivery.last_attempt_at = result.at
            delivery.last_status = result.status
            delivery.last_latency_ms = result.latency_ms
            delivery.last_error = result.error
            if result.result == "delivered":
                delivery.state, delivery.delivered_at = "delivered", result.at
                delivery.next_attempt_at = None
                succeeded = True
            elif result.result == "retry" and result.retry_at is not None:
                delivery.next_attempt_at = result.retry_at
                failed = True
            else:
                delivery.state, delivery.next_attempt_at = "failed", None
                failed = True
                if result.result == "gone":
                    disabled = f"the endpoint answered 410 Gone at {result.at.isoformat()}"
                elif result.result == "refused":
                    disabled = result.error
            session.add(delivery)
            session.add(
                WebhookAttempt(
                    delivery_key=result.delivery_key,
                    attempt=delivery.attempts,
                    at=result.at,
                    status=result.status,
                    latency_ms=result.latency_ms,
                    error=result.error,
                )
            )
        if succeeded:
            endpoint.failing_since = None
        elif failed:
            endpoint.failing_since = endpoint.failing_since or now
            if now - as_utc(endpoint.failing_since) >= GIVE_UP_AFTER and disabled is None:
                disabled = f"every attempt failed for {GIVE_UP_AFTER.days} days"
        if disabled is not None and endpoint.enabled:
            endpoint.enabled, endpoint.disabled_reason = False, disabled
            endpoint.updated_at = now
            _fail_pending(session, endpoint_id, f"the endpoint was disabled: {disabled}")
        session.flush()
        if failed and endpoint.enabled and not _retrying(session, endpoint_id):
            endpoint.failing_since = None  # what failed was given up: no run of failures left
        session.add(endpoint)
        session.flush()
        return EndpointState(
            disabled_reason=disabled if disabled and not endpoint.enabled else None,
            next_due=None if not endpoint.enabled else _next_due(session, endpoint_id),
        )

    return await database.run(record)


def _retrying(session: Session, endpoint_id: str) -> bool:
    """Whether a pending delivery of the endpoint has failed at least once."""
    return (
        session.exec(
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.endpoint_id == endpoint_id,
                WebhookDelivery.state == "pending",
                col(WebhookDelivery.first_attempt_at).is_not(None),
            )
            .limit(1)
        ).first()
        is not None
    )


def _next_due(session: Session, endpoint_id: str) -> datetime | None:
    due = session.exec(
        select(WebhookDelivery.next_attempt_at)
        .where(WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.state == "pending")
        .order_by(col(WebhookDelivery.next_attempt_at))
        .limit(1)
    ).first()
    return as_utc(due) if due is not None else None


async def endpoints_with_pending(database: Database) -> list[str]:
    """The enabled endpoints (of every tenant) with pending deliveries."""
    statement = (
        select(WebhookDelivery.endpoint_id)
        .join(WebhookEndpoint, col(WebhookEndpoint.endpoint_id) == col(WebhookDelivery.endpoint_id))
        .where(WebhookDelivery.state == "pending", col(WebhookEndpoint.enabled).is_(True))
        .distinct()
    )
    return list(await database.all(statement))


async def next_due(database: Database, endpoint_id: str) -> datetime | None:
    """When the endpoint's next pending delivery is due; None when none is pending."""
    return await database.run(lambda s: _next_due(s, endpoint_id), write=False)


def _fail_pending(session: Session, endpoint_id: str, reason: str) -> None:
    for delivery in session.exec(
        select(WebhookDelivery).where(
            WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.state == "pending"
        )
    ).all():
        delivery.state, delivery.next_attempt_at, delivery.last_error = "failed", None, reason
        session.add(delivery)


@dataclass(frozen=True)
class DeliveryLog:
    """A delivery with its event and every attempt, newest delivery first."""

    delivery: WebhookDelivery
    event: WebhookEvent
    attempts: list[WebhookAttempt]


async def deliveries_of(
    database: Database,
    endpoint_id: str,
    *,
    state: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[DeliveryLog]:
    """The endpoint's deliveries (of ``state``, created since ``since``), newest first."""

    def read(session: Session) -> list[DeliveryLog]:
        query = (
            select(WebhookDelivery, WebhookEvent)
            .join(WebhookEvent, col(WebhookEvent.key) == col(WebhookDelivery.event_key))
            .where(WebhookDelivery.endpoint_id == endpoint_id)
        )
        if state is not None:
            query = query.where(WebhookDelivery.state == state)
        if since is not None:
            query = query.where(col(WebhookDelivery.created_at) >= since)
        rows = session.exec(query.order_by(col(WebhookDelivery.id).desc()).limit(limit)).all()
        keys = [delivery.key for delivery, _ in rows]
        attempts: dict[str, list[WebhookAttempt]] = {key: [] for key in keys}
        if keys:
            for attempt in session.exec(
                select(WebhookAttempt)
                .where(col(WebhookAttempt.delivery_key).in_(keys))
                .order_by(col(WebhookAttempt.id))
            ).all():
                attempts[attempt.delivery_key].append(attempt)
        return [DeliveryLog(d, e, attempts[d.key]) for d, e in rows]

    return await database.run(read, write=False)


async def redeliver(
    database: Database,
    endpoint_id: str,
    *,
    delivery_id: int | None = None,
    since: datetime | None = None,
) -> int:
    """Make failed deliveries pending again, due now, with three more days: the one
    ``delivery_id``, or every one created since ``since``; how many."""

    def again(session: Session) -> int:
        query = select(WebhookDelivery).where(
            WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.state == "failed"
        )
        if delivery_id is not None:
            query = query.where(WebhookDelivery.id == delivery_id)
        if since is not None:
            query = query.where(col(WebhookDelivery.created_at) >= since)
        now = utcnow()
        rows = session.exec(query).all()
        for delivery in rows:
            delivery.state, delivery.next_attempt_at = "pending", now
            delivery.first_attempt_at, delivery.attempts_before = None, delivery.attempts
            session.add(delivery)
        return len(rows)

    return await database.run(again)
