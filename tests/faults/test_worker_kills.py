"""200 onboardings while the worker is killed with SIGKILL at random moments.

Slow (several minutes: each kill leaves activities that Temporal retries only
after their start-to-close timeout); run it with ``./scripts/test -m slow``.

The worker runs as a subprocess against the real dev server; it is killed
three times at random points of the first phase and started again each time;
then the milestones are sent and every run must end ``activated``. Each
customer gets one kickoff task, one welcome email in the outbox, and one
welcome message (by Message-ID) at the SMTP server: a worker killed in the
instant between the server's 250 and the outbox update may make the retry
send the same message (same Message-ID) again, which a receiving MTA
deduplicates; the sink keeps both, so copies are counted by Message-ID.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections import Counter
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from crm.store.db import Database
from devstack.mailsink import MailSink, read_messages
from tests.integration.test_worker_crash import worker_process
from tests.support.onboarding import onboarding_input, send_event, start_onboarding, tasks_of

RUNS = 200
KILLS = 3


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_random_worker_kills_during_200_onboardings_lose_and_duplicate_nothing(
    dev_env: WorkflowEnvironment,
    dev_client: Client,
    mail_sink: MailSink,
    enrichment_url: str,
    task_queue: str,
    database_url: str,
    database: Database,
    tmp_path: Path,
) -> None:
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("CRMFLOW_")},
        "CRMFLOW_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "CRMFLOW_TASK_QUEUE": task_queue,
        "CRMFLOW_DATABASE_URL": database_url,
        "CRMFLOW_SMTP_PORT": str(mail_sink.port),
        "CRMFLOW_ENRICHMENT_URL": enrichment_url,
        "CRMFLOW_WORKER_GRACEFUL_SHUTDOWN_SECONDS": "0",
        "CRMFLOW_WORKER_METRICS_ADDRESS": "",
    }
    log_file = tmp_path / "workers.log"
    chance = random.Random(20261123)
    customers = [onboarding_input() for _ in range(RUNS)]
    handles = [await start_onboarding(dev_client, task_queue, c) for c in customers]

    for _ in range(KILLS):
        async with worker_process(env, log_file) as doomed:
            await asyncio.sleep(chance.uniform(1.0, 6.0))
            doomed.send_signal(signal.SIGKILL)
            await doomed.wait()

    async with worker_process(env, log_file):
        for handle in handles:
            await send_event(handle, "account_configured")
            await send_event(handle, "first_value")
        results = await asyncio.wait_for(
            asyncio.gather(*(handle.result() for handle in handles)), timeout=600
        )

    assert [r.outcome for r in results] == ["activated"] * RUNS
    messages = read_messages(mail_sink.maildir)
    for customer in customers:
        welcome = {m.message_id for m in messages if customer.contact_email in m.recipients}
        assert len(welcome) == 1, customer.customer_id
        assert [t.kind for t in await tasks_of(database, customer.customer_id)] == ["kickoff"]
    copies = Counter(m.message_id for m in messages if m.subject.startswith("Welcome"))
    print(f"welcome messages: {len(copies)} distinct, {sum(copies.values())} received")
