"""The webhook tables on SQLite and PostgreSQL: emission once, rounds, the run of failures."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import Session, select

from crm.platform.codec import new_codec_key
from crm.store.db import Database
from crm.store.emissions import Stored, store_event
from crm.store.models import WebhookDelivery, WebhookEndpoint
from crm.store.webhook_deliveries import (
    Attempted,
    deliveries_of,
    due_deliveries,
    endpoints_with_pending,
    record_round,
    redeliver,
    release,
)
from crm.store.webhooks import (
    Emitted,
    create_endpoint,
    delete_endpoint,
    emit,
    endpoint_of,
    update_endpoint,
)
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
    key = due.key

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
    assert again.attempts_before == 2
    await record_round(db, ep, [Attempted(key, later, 500, 1.0, "answered 500", "failed")], later)
    stored = await endpoint_of(db, None, ep)
    assert stored is not None and stored.enabled and stored.failing_since is None
    [log] = await deliveries_of(db, ep)
    assert [a.status for a in log.attempts] == [400, 400, 500]


async def test_a_redelivery_sends_again_the_one_failed_delivery_named_or_those_since_a_time(
    db: Database,  # noqa: F811
) -> None:
    created, _ = await endpoint(db, "https://a.example.com", ["*"])
    ep = created.endpoint_id
    for number in (1, 2, 3, 4):
        await db.run(functools.partial(emit, event=event(number)))
    now = datetime.now(UTC) + timedelta(minutes=1)
    _, due = await due_deliveries(db, ep, now, 10)
    gone = [Attempted(d.key, now, 500, 1.0, "answered 500", "failed") for d in due[:3]]
    await record_round(db, ep, gone, now)  # the fourth stays pending
    ids = {log.event.event_id: log.delivery.id for log in await deliveries_of(db, ep)}
    week_ago = now - timedelta(days=7)

    def age_first(session: Session) -> None:  # e-1 was emitted a week ago
        first = session.get(WebhookDelivery, ids["e-1"])
        assert first is not None
        first.created_at = week_ago
        session.add(first)

    await db.run(age_first)

    def states() -> Any:
        return db.run(
            lambda s: {
                d.id: d.state
                for d in s.exec(select(WebhookDelivery).where(WebhookDelivery.endpoint_id == ep))
            },
            write=False,
        )

    assert await redeliver(db, ep, delivery_id=ids["e-2"]) == 1
    assert await states() == {
        ids["e-1"]: "failed",
        ids["e-2"]: "pending",
        ids["e-3"]: "failed",
        ids["e-4"]: "pending",
    }
    assert await redeliver(db, ep, delivery_id=ids["e-4"]) == 0  # pending, not failed
    assert await redeliver(db, ep, since=week_ago + timedelta(days=1)) == 1  # e-3, not e-1
    assert (await states())[ids["e-1"]] == "failed"
    assert await redeliver(db, ep) == 1  # all: e-1
    assert set((await states()).values()) == {"pending"}


async def test_what_is_stored_while_a_drain_holds_the_lease_wakes_no_one_and_its_release_sees_it(
    db: Database,  # noqa: F811
) -> None:
    hooks, _ = await endpoint(db, "https://a.example.com", ["renewal.*"])
    assert (await store_event(db, event(1))).to_wake == [hooks.endpoint_id]  # none drains

    _, due = await due_deliveries(db, hooks.endpoint_id, datetime.now(UTC), 10, claim=True)
    stored = await store_event(db, event(2))

    assert stored == Stored(endpoints=[hooks.endpoint_id], to_wake=[])  # the drain takes it
    next_due = await release(db, hooks.endpoint_id)
    assert len(due) == 1 and next_due is not None and next_due <= datetime.now(UTC)
    assert (await store_event(db, event(3))).to_wake == [hooks.endpoint_id]  # let go


async def test_a_lease_its_drain_stopped_renewing_ends_and_emissions_wake_again(
    db: Database,  # noqa: F811
) -> None:
    hooks, _ = await endpoint(db, "https://a.example.com", ["renewal.*"])
    await due_deliveries(db, hooks.endpoint_id, datetime.now(UTC), 10, claim=True)

    def lapse(session: Session) -> None:  # as if the drain's worker died a lease ago
        row = session.exec(
            select(WebhookEndpoint).where(WebhookEndpoint.endpoint_id == hooks.endpoint_id)
        ).one()
        row.draining_until = datetime.now(UTC) - timedelta(seconds=1)
        session.add(row)

    await db.run(lapse)
    assert (await store_event(db, event(1))).to_wake == [hooks.endpoint_id]


async def test_events_emitted_together_share_a_transaction_and_a_bad_one_fails_alone(
    db: Database,  # noqa: F811
) -> None:
    hooks, _ = await endpoint(db, "https://a.example.com", ["renewal.*"])
    bad = replace(event(5), data={"n": object()})  # not JSON: its insert fails
    transactions = 0
    run = db.run

    async def counted(work: Any, *, write: bool = True) -> Any:
        nonlocal transactions
        transactions += 1
        return await run(work, write=write)

    db.run = counted  # type: ignore[method-assign]
    try:
        results = await asyncio.gather(
            *(store_event(db, event(n) if n != 5 else bad) for n in range(10)),
            return_exceptions=True,
        )
    finally:
        db.run = run  # type: ignore[method-assign]

    failed = [n for n, result in enumerate(results) if isinstance(result, BaseException)]
    assert failed == [5]
    logs = await deliveries_of(db, hooks.endpoint_id)
    assert sorted(log.event.event_id for log in logs) == [f"e-{n}" for n in range(10) if n != 5]
    # the first alone, the nine queued behind it together, then each of those nine alone
    assert transactions == 1 + 1 + 9


async def test_a_retry_recorded_after_its_endpoint_was_deleted_leaves_the_delivery_failed(
    db: Database,  # noqa: F811
) -> None:
    hooks, _ = await endpoint(db, "https://a.example.com", ["renewal.*"])
    await store_event(db, event(1))
    await store_event(db, event(2))
    now = datetime.now(UTC)
    _, [first, second] = await due_deliveries(db, hooks.endpoint_id, now, 10)

    assert await delete_endpoint(db, None, hooks.endpoint_id)  # while the round POSTs
    later = now + timedelta(seconds=1)
    await record_round(
        db,
        hooks.endpoint_id,
        [
            Attempted(first.key, later, 500, 1.0, "answered 500", "retry", later),
            Attempted(second.key, later, 200, 1.0, None, "delivered"),
        ],
        later,
    )

    logs = {log.delivery.key: log for log in await deliveries_of(db, hooks.endpoint_id)}
    assert (logs[first.key].delivery.state, logs[first.key].delivery.next_attempt_at) == (
        "failed",
        None,
    )
    assert logs[second.key].delivery.state == "delivered"  # it was: the log says so
    assert [len(log.attempts) for log in logs.values()] == [1, 1]


async def test_an_event_repeated_under_another_type_goes_where_its_stored_type_goes(
    db: Database,  # noqa: F811
) -> None:
    renewals, _ = await endpoint(db, "https://a.example.com", ["renewal.*"])
    await endpoint(db, "https://b.example.com", ["ticket.*"])
    await store_event(db, event(1))  # renewal.lapsed

    again = await store_event(db, replace(event(1), type="ticket.breached"))

    assert again.endpoints == [renewals.endpoint_id]  # its payload says renewal.lapsed


async def test_a_read_leaves_out_the_deliveries_a_drain_holds_and_fills_its_limit_past_them(
    db: Database,  # noqa: F811
) -> None:
    hooks, _ = await endpoint(db, "https://a.example.com", ["renewal.*"])
    for number in range(6):
        await store_event(db, event(number))
    now = datetime.now(UTC)
    _, everything = await due_deliveries(db, hooks.endpoint_id, now, 10)
    keys = [due.key for due in everything]

    _, due = await due_deliveries(db, hooks.endpoint_id, now, 3, held={keys[0], keys[2]})

    assert [item.key for item in due] == [keys[1], keys[3], keys[4]]  # oldest first, whole
    assert [item.event_id for item in due] == ["e-1", "e-3", "e-4"]
    assert due[0].data == {"n": 1}
    _, none = await due_deliveries(db, hooks.endpoint_id, now, 3, held=set(keys))
    assert none == []
