"""The webhook tables on SQLite and PostgreSQL: emission once, rounds, the run of failures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from crm.platform.codec import new_codec_key
from crm.store.db import Database
from crm.store.models import WebhookEndpoint
from crm.store.webhook_deliveries import (
    Attempted,
    deliveries_of,
    due_deliveries,
    endpoints_with_pending,
    record_round,
    redeliver,
)
from crm.store.webhooks import Emitted, create_endpoint, emit, endpoint_of, update_endpoint
from tests.db.test_database import db  # noqa: F401  (the fixture: each test on both databases)

KEYS = new_codec_key("store-1")


async def endpoint(
    db: Database,  # noqa: F811
    url: str,
    event_types: list[str],
    *,
    tenant: str | None = None,
) -> tuple[WebhookEndpoint, str]:
    return await create_endpoint(
        db,
        tenant,
        url=url,
        event_types=event_types,
        personal_data=False,
        enabled=True,
        codec_keys=KEYS,
    )


def event(number: int) -> Emitted:
    at = datetime.now(UTC)
    return Emitted(None, f"e-{number}", "renewal.lapsed", f"renewal-{number}", at, {"n": number})


async def test_an_event_is_stored_once_with_one_delivery_per_subscribed_endpoint(
    db: Database,  # noqa: F811
) -> None:
    renewals, _ = await endpoint(db, "https://a.example.com", ["renewal.*"])
    await endpoint(db, "https://b.example.com", ["ticket.*"])
    await endpoint(db, "https://c.example.com", ["*"], tenant="other")

    first = await db.run(lambda s: emit(s, event(1)))
    again = await db.run(lambda s: emit(s, event(1)))

    assert first == again == [renewals.endpoint_id]
    [log] = await deliveries_of(db, renewals.endpoint_id)
    assert (log.event.event_id, log.delivery.state) == ("e-1", "pending")
    assert await endpoints_with_pending(db) == [renewals.endpoint_id]


async def test_a_delivery_given_up_ends_the_run_of_failures_so_one_later_failure_disables_nothing(
    db: Database,  # noqa: F811
) -> None:
    created, _ = await endpoint(db, "https://a.example.com", ["*"])
    ep = created.endpoint_id
    await db.run(lambda s: emit(s, event(1)))
    T0 = datetime.now(UTC) + timedelta(minutes=1)  # the test's first instant
    _, [due] = await due_deliveries(db, ep, T0 + timedelta(seconds=1), 10)
    key = due.delivery.key

    await record_round(
        db, ep, [Attempted(key, T0, 400, 1.0, "answered 400", "retry", T0 + timedelta(days=3))], T0
    )
    at = T0 + timedelta(days=3)
    await record_round(db, ep, [Attempted(key, at, 400, 1.0, "answered 400", "failed")], at)
    stored = await endpoint_of(db, None, ep)
    assert stored is not None and stored.enabled is False, "three days of failures disable it"

    # Enabled again and failing once, days later, it stays enabled.
    await update_endpoint(db, None, ep, {"enabled": True})
    assert await redeliver(db, ep, since=T0 - timedelta(days=1)) == 1
    later = T0 + timedelta(days=5)
    _, [again] = await due_deliveries(db, ep, later, 10)
    assert again.delivery.attempts_before == 2
    await record_round(db, ep, [Attempted(key, later, 500, 1.0, "answered 500", "failed")], later)
    stored = await endpoint_of(db, None, ep)
    assert stored is not None and stored.enabled and stored.failing_since is None
    [log] = await deliveries_of(db, ep)
    assert [a.status for a in log.attempts] == [400, 400, 500]
