"""A worker killed in the middle of a webhook delivery: the event arrives again, same id.

The worker runs as its own process (``crmflow worker``) against the real dev
server, a real receiver (holding the first request open) and a SQLite file.
It is SIGKILLed while the receiver holds the delivery; a second worker takes
over once Temporal notices the round's heartbeats stopped (its 30 s heartbeat
timeout is what this test's duration is made of) and sends the round again
under the same ``webhook-id``, which is how a receiver that dedupes on it
takes the event once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.webhook_delivery import emit_event
from crm.platform.codec import new_codec_key
from crm.store.db import Database
from crm.store.webhook_deliveries import deliveries_of
from crm.store.webhooks import Emitted, create_endpoint
from tests.integration.test_worker_crash import worker_process
from tests.support.receivers import Planned, Receiver, running_receiver


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    with running_receiver() as running:
        yield running


async def wait_for_requests(receiver: Receiver, count: int, within: float) -> None:
    deadline = time.monotonic() + within
    while len(receiver.received) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(receiver.received)} requests after {within} s")
        await asyncio.sleep(0.05)


async def test_a_delivery_cut_by_a_killed_worker_is_sent_again_with_the_same_webhook_id(
    dev_env: WorkflowEnvironment,
    dev_client: Client,
    receiver: tuple[Receiver, str],
    task_queue: str,
    database_url: str,
    database: Database,
    tmp_path: Path,
) -> None:
    app, base_url = receiver
    app.planned["/hooks"] = [Planned(200, stall_seconds=30)]
    sealing_keys = new_codec_key("crash-1")
    endpoint, _ = await create_endpoint(
        database,
        None,
        url=f"{base_url}/hooks",
        event_types=["renewal.*"],
        personal_data=False,
        enabled=True,
        codec_keys=sealing_keys,
    )
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("CRMFLOW_")},
        "CRMFLOW_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "CRMFLOW_TASK_QUEUE": task_queue,
        "CRMFLOW_DATABASE_URL": database_url,
        "CRMFLOW_SEALING_KEYS": sealing_keys,
        "CRMFLOW_OUTBOUND_ALLOWED_HOSTS": '["127.0.0.1"]',
        "CRMFLOW_WORKER_GRACEFUL_SHUTDOWN_SECONDS": "0",
        "CRMFLOW_WORKER_METRICS_ADDRESS": "",
    }
    log_file = tmp_path / "workers.log"
    event = Emitted(
        tenant=None,
        event_id="renewal-s-9/lapsed",
        type="renewal.lapsed",
        process_id="renewal-s-9",
        occurred_at=datetime.now(UTC),
        data={"subscription_id": "s-9", "plan": "pro"},
    )

    try:
        async with worker_process(env, log_file) as doomed:
            await emit_event(dev_client, database, task_queue, event)
            await wait_for_requests(app, 1, within=20)
            doomed.send_signal(signal.SIGKILL)
            await doomed.wait()

        async with worker_process(env, log_file):
            await wait_for_requests(app, 2, within=60)
            [log] = await deliveries_of(database, endpoint.endpoint_id)
            while log.delivery.state != "delivered":
                await asyncio.sleep(0.1)
                [log] = await deliveries_of(database, endpoint.endpoint_id)
    except BaseException:
        sys.stderr.write(log_file.read_text(errors="replace")[-5000:])
        raise

    cut, again = app.received
    assert cut.headers["webhook-id"] == again.headers["webhook-id"] == log.delivery.message_id
    assert cut.body == again.body
    assert [attempt.status for attempt in log.attempts] == [200], "the killed round wrote nothing"
