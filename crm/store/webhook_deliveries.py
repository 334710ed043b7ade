"""Webhook deliveries in the database: the drains that attempt them, and their log.

The endpoint's drain (``activities.webhook_drain``) takes the due deliveries
(``due_deliveries``), and each batch of their answers is written back in one
transaction (``record_round``) with the delivery log's figures:
status, latency, the next attempt (``next_retry``), and whether the endpoint
is disabled.

A drain (one ``deliver_due`` activity) holds a lease on its endpoint,
``draining_until``: its first take claims it, each batch it writes renews it,
and ``release`` ends it. While it holds, whoever emits an event
for the endpoint leaves the drain to take it instead of waking the dispatch
workflow (``crm.store.webhooks.undrained``). ``release`` clears the lease and
reads what is due in one transaction, and an emission reads the lease in the
transaction that stores its deliveries, so a delivery is either seen by the
drain's last look or its emitter sees no lease and wakes the workflow.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, bindparam, case, func, insert, or_, update
from sqlalchemy import select as select_columns
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
#: How long a drain's lease lasts unless its next write renews it: a worker that died
#: mid-drain holds back wakes for at most this long (its activity is retried once its
#: heartbeat times out, as long, and takes what is due).
LEASE = timedelta(seconds=30)
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
    """A delivery to attempt now: its key, ``webhook-id`` and attempts so far, and the
    event it carries."""

    key: str
    message_id: str
    attempts: int
    attempts_before: int | None
    first_attempt_at: datetime | None
    event_type: str
    event_id: str
    process_id: str
    occurred_at: datetime
    data: dict[str, Any]


_DELIVERIES: Table = WebhookDelivery.__table__  # type: ignore[attr-defined]
_EVENTS: Table = WebhookEvent.__table__  # type: ignore[attr-defined]
_ATTEMPTS: Table = WebhookAttempt.__table__  # type: ignore[attr-defined]


async def due_deliveries(
    database: Database,
    endpoint_id: str,
    now: datetime,
    limit: int,
    *,
    claim: bool = False,
    held: Collection[str] = frozenset(),
) -> tuple[WebhookEndpoint | None, list[Due]]:
    """The endpoint (None once deleted) and up to ``limit`` of its pending deliveries due at
    ``now``, oldest first, leaving out the keys ``held`` (a drain's, still being posted or
    written back); with ``claim``, the endpoint's drain lease is taken (``LEASE`` from now).

    With deliveries held, the due ones' keys are read first and only the others are read
    whole, with their event: a drain that holds hundreds reads them often.
    """

    def read(session: Session) -> tuple[WebhookEndpoint | None, list[Due]]:
        endpoint = session.exec(
            select(WebhookEndpoint).where(
                WebhookEndpoint.endpoint_id == endpoint_id,
                col(WebhookEndpoint.deleted_at).is_(None),
            )
        ).first()
        if endpoint is None or not endpoint.enabled:
            return endpoint, []
        if claim:
            endpoint.draining_until = utcnow() + LEASE
            session.add(endpoint)
        connection = session.connection()
        deliveries = _DELIVERIES.c
        due: tuple[ColumnElement[bool], ...] = (
            deliveries.endpoint_id == endpoint_id,
            deliveries.state == "pending",
            deliveries.next_attempt_at <= now,
        )
        if held:
            keys = connection.execute(
                select_columns(deliveries.key)
                .where(*due)
                .order_by(*_OLDEST_FIRST)
                .limit(limit + len(held))
            ).scalars()
            fresh = [key for key in keys if key not in held][:limit]
            if not fresh:
                return endpoint, []
            due = (*due, deliveries.key.in_(fresh))
        rows = connection.execute(_due_rows.where(*due).limit(limit))
        return endpoint, [Due(**row._mapping) for row in rows]

    return await database.run(read, write=claim)


#: The order due deliveries are taken in.
_OLDEST_FIRST = (_DELIVERIES.c.next_attempt_at, _DELIVERIES.c.id)
#: A due delivery's columns and its event's (columns, not ORM objects: a read takes 200).
_due_rows = (
    select_columns(
        _DELIVERIES.c.key,
        _DELIVERIES.c.message_id,
        _DELIVERIES.c.attempts,
        _DELIVERIES.c.attempts_before,
        _DELIVERIES.c.first_attempt_at,
        _EVENTS.c.type.label("event_type"),
        _EVENTS.c.event_id,
        _EVENTS.c.process_id,
        _EVENTS.c.occurred_at,
        _EVENTS.c.data,
    )
    .join_from(_DELIVERIES, _EVENTS, _EVENTS.c.key == _DELIVERIES.c.event_key)
    .order_by(*_OLDEST_FIRST)
)


async def release(database: Database, endpoint_id: str) -> datetime | None:
    """End the endpoint's drain lease; when its next pending delivery is due (None: none
    is). A delivery due by then was stored before the lease ended, unwoken: take it."""

    def end(session: Session) -> datetime | None:
        endpoint = session.exec(
            select(WebhookEndpoint).where(WebhookEndpoint.endpoint_id == endpoint_id)
        ).first()
        if endpoint is None:
            return None
        endpoint.draining_until = None
        session.add(endpoint)
        session.flush()  # the row is locked (PostgreSQL) before what is due is read
        return _next_due(session, endpoint_id)

    return await database.run(end)


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
    """Where the endpoint stands after a batch of attempts: disabled (and why), its next due
    delivery."""

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
    """Write a batch of attempts to the log and the deliveries; disable the endpoint on a
    410 or after ``GIVE_UP_AFTER`` of failures without a success."""

    def record(session: Session) -> EndpointState:
        endpoint = session.exec(
            select(WebhookEndpoint).where(WebhookEndpoint.endpoint_id == endpoint_id)
        ).one()
        disabled: str | None = None
        succeeded = failed = False
        connection = session.connection()
        attempts_of = _attempts_of(connection, [result.delivery_key for result in results])
        changes, attempts = [], []
        for result in results:
            number = attempts_of[result.delivery_key] + 1
            state, next_at = "pending", result.retry_at
            if result.result == "delivered":
                state, next_at, succeeded = "delivered", None, True
            elif result.result != "retry" or result.retry_at is None:
                state, next_at, failed = "failed", None, True
                if result.result == "gone":
                    disabled = (
                        f"the endpoint answered 410 Gone at {result.at:%Y-%m-%d %H:%M:%S} UTC"
                    )
                elif result.result == "refused":
                    disabled = result.error
            else:
                failed = True
            changes.append(
                {
                    "the_key": result.delivery_key,
                    "attempts": number,
                    "at": result.at,
                    "status": result.status,
                    "latency_ms": result.latency_ms,
                    "error": result.error,
                    "state": state,
                    "next_at": next_at,
                    "delivered_at": result.at if state == "delivered" else None,
                }
            )
            attempts.append(
                {
                    "delivery_key": result.delivery_key,
                    "attempt": number,
                    "at": result.at,
                    "status": result.status,
                    "latency_ms": result.latency_ms,
                    "error": result.error,
                }
            )
        if changes:
            connection.execute(_RECORD_ATTEMPT, changes)
            connection.execute(insert(_ATTEMPTS), attempts)
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
        if endpoint.enabled:
            endpoint.draining_until = utcnow() + LEASE
        session.add(endpoint)
        session.flush()
        return EndpointState(
            disabled_reason=disabled if disabled and not endpoint.enabled else None,
            next_due=None if not endpoint.enabled else _next_due(session, endpoint_id),
        )

    return await database.run(record)


#: One delivery's attempt written to it (executed for each of a batch's).
_AT = _DELIVERIES.c.last_attempt_at.type
_PENDING = _DELIVERIES.c.state == "pending"
_STATE = bindparam("state", type_=_DELIVERIES.c.state.type)
_RECORD_ATTEMPT = (
    update(_DELIVERIES)
    .where(_DELIVERIES.c.key == bindparam("the_key"))
    .values(
        attempts=bindparam("attempts"),
        first_attempt_at=func.coalesce(_DELIVERIES.c.first_attempt_at, bindparam("at", type_=_AT)),
        last_attempt_at=bindparam("at", type_=_AT),
        last_status=bindparam("status"),
        last_latency_ms=bindparam("latency_ms"),
        last_error=bindparam("error"),
        # A delivery failed meanwhile (its endpoint deleted or disabled) is not made pending
        # again by a retry; one that was delivered says so.
        state=case(
            (or_(_PENDING, _STATE == "delivered"), _STATE),
            else_=_DELIVERIES.c.state,
        ),
        next_attempt_at=case(
            (_PENDING, bindparam("next_at", type_=_AT)), else_=_DELIVERIES.c.next_attempt_at
        ),
        delivered_at=func.coalesce(
            bindparam("delivered_at", type_=_AT), _DELIVERIES.c.delivered_at
        ),
    )
)


def _attempts_of(connection: Connection, keys: list[str]) -> dict[str, int]:
    """How many attempts each of the deliveries ``keys`` has had."""
    if not keys:
        return {}
    rows = connection.execute(
        select(_DELIVERIES.c.key, _DELIVERIES.c.attempts).where(_DELIVERIES.c.key.in_(keys))
    )
    return {key: attempts for key, attempts in rows}


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
class EndpointHealth:
    """An endpoint's log at a glance: its deliveries pending and failed, and its newest."""

    pending: int = 0
    failed: int = 0
    newest: WebhookDelivery | None = None


async def endpoint_health(database: Database, endpoint_ids: list[str]) -> dict[str, EndpointHealth]:
    """Each endpoint's ``EndpointHealth`` (every id given has one)."""

    def read(session: Session) -> dict[str, EndpointHealth]:
        counts: dict[tuple[str, str], int] = {}
        if endpoint_ids:
            deliveries = _DELIVERIES.c
            rows = session.connection().execute(
                select_columns(deliveries.endpoint_id, deliveries.state, func.count())
                .where(
                    deliveries.endpoint_id.in_(endpoint_ids),
                    deliveries.state.in_(("pending", "failed")),
                )
                .group_by(deliveries.endpoint_id, deliveries.state)
            )
            counts = {(endpoint_id, state): count for endpoint_id, state, count in rows}
        return {
            endpoint_id: EndpointHealth(
                pending=counts.get((endpoint_id, "pending"), 0),
                failed=counts.get((endpoint_id, "failed"), 0),
                newest=session.exec(
                    select(WebhookDelivery)
                    .where(WebhookDelivery.endpoint_id == endpoint_id)
                    .order_by(col(WebhookDelivery.id).desc())
                    .limit(1)
                ).first(),
            )
            for endpoint_id in endpoint_ids
        }

    return await database.run(read, write=False)


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
