"""Webhook deliveries in the database: the rounds that attempt them, and their log.

The endpoint's dispatch workflow (``workflows.webhook_dispatch``) takes the
due deliveries (``due_deliveries``), and each round's results are written
back in one transaction (``record_round``) with the delivery log's figures:
status, latency, the next attempt (``next_retry``), and whether the endpoint
is disabled.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from crm.store.db import Database
from crm.store.models import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    as_utc,
    utcnow,
)
from crm.store.webhooks import fail_pending

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
            fail_pending(session, endpoint_id, f"the endpoint was disabled: {disabled}")
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
