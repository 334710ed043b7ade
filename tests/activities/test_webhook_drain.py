"""The ``deliver_due`` activity as a drain: one activity takes what is emitted while it runs.

Real SQLite and PostgreSQL (each test on both) and a real HTTP receiver on
127.0.0.1; the activity runs in Temporal's ``ActivityEnvironment``, as the
worker would run it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from temporalio.testing import ActivityEnvironment

from activities.outbound import Outbound
from activities.webhook_delivery import WebhookActivities
from activities.webhook_drain import LINGER
from crm.platform.codec import new_codec_key
from crm.store.db import Database
from crm.store.emissions import store_event
from crm.store.models import WebhookEndpoint
from crm.store.webhook_deliveries import deliveries_of
from crm.store.webhooks import Emitted, create_endpoint
from tests.conftest import eventually
from tests.db.test_database import db  # noqa: F401  (the fixture: each test on both databases)
from tests.support.receivers import Planned, Receiver, running_receiver
from workflows.webhook_types import DeliveryRound, RoundResult

KEYS = new_codec_key("drain-1")


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    with running_receiver() as running:
        yield running


async def hooks_at(database: Database, url: str) -> WebhookEndpoint:
    """An endpoint at the receiver's ``/hooks``, subscribed to everything."""
    hooks, _ = await create_endpoint(
        database,
        None,
        url=f"{url}/hooks",
        event_types=["*"],
        personal_data=False,
        enabled=True,
        codec_keys=KEYS,
    )
    return hooks


async def drain(database: Database, hooks: WebhookEndpoint) -> RoundResult:
    """One ``deliver_due`` of ``hooks``, as the worker runs it."""
    activities = WebhookActivities(database, KEYS, Outbound(allowed_hosts=["127.0.0.1"]))
    return await ActivityEnvironment().run(
        activities.deliver_due, DeliveryRound(hooks.endpoint_id, datetime.now(UTC))
    )


def lapse(number: int) -> Emitted:
    return Emitted(
        None, f"e-{number}", "renewal.lapsed", f"renewal-{number}", datetime.now(UTC), {}
    )


async def test_a_drain_delivers_what_is_emitted_while_it_runs_and_lets_go_when_none_comes(
    db: Database,  # noqa: F811
    receiver: tuple[Receiver, str],
) -> None:
    app, url = receiver
    app.planned["/hooks"] = [Planned(200, stall_seconds=0.5)]  # the first round takes a while
    hooks = await hooks_at(db, url)
    await store_event(db, lapse(1))
    draining = asyncio.create_task(drain(db, hooks))
    await eventually(lambda: asyncio.sleep(0, app.received), bool)

    meanwhile = await store_event(db, lapse(2))  # during the first round's POST
    started = asyncio.get_running_loop().time()
    done = await draining

    assert meanwhile.to_wake == []  # the running drain holds the endpoint: no wake
    assert (done.delivered, done.more, done.next_due) == (2, False, None)
    assert [request.path for request in app.received] == ["/hooks", "/hooks"]
    assert asyncio.get_running_loop().time() - started >= LINGER  # it looked for more
    logs = await deliveries_of(db, hooks.endpoint_id)
    assert {log.delivery.state for log in logs} == {"delivered"}
    assert (await store_event(db, lapse(3))).to_wake == [hooks.endpoint_id]  # let go


async def test_a_slow_answer_holds_its_own_slot_not_the_deliveries_behind_it(
    db: Database,  # noqa: F811
    receiver: tuple[Receiver, str],
) -> None:
    """The drain keeps its window full: a delivery emitted while another waits on a slow
    receiver goes at once, and the slow one is written when it is answered."""
    app, url = receiver
    app.planned["/hooks"] = [Planned(200, stall_seconds=1.5)]  # only the first answer stalls
    hooks = await hooks_at(db, url)
    await store_event(db, lapse(1))
    draining = asyncio.create_task(drain(db, hooks))
    await eventually(lambda: asyncio.sleep(0, app.received), bool)
    loop = asyncio.get_running_loop()
    emitted = loop.time()
    await store_event(db, lapse(2))
    await store_event(db, lapse(3))
    await eventually(lambda: asyncio.sleep(0, len(app.received)), lambda n: n == 3)
    assert loop.time() - emitted < 0.5  # not after the 1.5 s the first one stalls
    delivered = {log.delivery.state for log in await deliveries_of(db, hooks.endpoint_id)}
    assert "pending" in delivered  # the first is still waiting on its answer

    done = await draining
    assert (done.delivered, done.retrying, done.failed) == (3, 0, 0)
    logs = await deliveries_of(db, hooks.endpoint_id)
    assert [log.delivery.state for log in logs] == ["delivered"] * 3
    assert len(app.received) == 3  # none sent twice


async def test_a_410_stops_the_drain_taking_more_before_its_answer_is_written(
    db: Database,  # noqa: F811
    receiver: tuple[Receiver, str],
) -> None:
    """An endpoint that says Gone gets no more than the deliveries already in flight: the
    rest of a 300-delivery backlog fails with the endpoint, unsent."""
    app, url = receiver
    app.planned["/hooks"] = [Planned(410) for _ in range(400)]
    hooks = await hooks_at(db, url)
    await asyncio.gather(*(store_event(db, lapse(number)) for number in range(300)))
    done = await drain(db, hooks)

    assert done.stopped and done.disabled_reason is not None
    assert done.disabled_reason.startswith("the endpoint answered 410 Gone")
    assert len(app.received) <= 20  # the posters' first deliveries, no more
    logs = await deliveries_of(db, hooks.endpoint_id, limit=400)
    assert len(logs) == 300 and {log.delivery.state for log in logs} == {"failed"}
