"""Three worker processes, 300 onboardings: one worker SIGKILLed, one SIGTERMed mid-run.

Slow (the killed worker's activities are retried only when their start-to-close timeout,
30 s for email, runs out); run it with ``./scripts/test -m slow``.

Every run must end ``activated`` with one kickoff task and one welcome Message-ID per
customer (see tests/faults/test_worker_kills.py on why copies are counted by Message-ID),
the SIGTERMed worker must finish its running activities and exit 0, and the survivor takes
the load. The kill comes once a quarter of the welcome emails are sent, the stop once
half are. Which worker did what is read from the runs' histories (each completed activity
and workflow task names the identity, ``pid@host``, of the worker that ran it; a task lost
with the killed worker is recorded under the worker that ran it again) and printed per
worker.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import select
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from crm.store.db import Database
from crm.store.models import OutboundEmail
from devstack.mailsink import MailSink, read_messages
from tests.integration.test_worker_crash import worker_process
from tests.support.onboarding import (
    OnboardingHandle,
    onboarding_input,
    send_event,
    start_onboarding,
    tasks_of,
)

RUNS = 300


async def welcomes_sent(database: Database, at_least: int, within: float = 120) -> None:
    """Wait until ``at_least`` welcome emails are recorded as sent: the runs are mid-way."""
    query = select(func.count()).where(
        OutboundEmail.template == "welcome", OutboundEmail.status == "sent"
    )
    deadline = asyncio.get_running_loop().time() + within
    while await database.run(lambda session: session.exec(query).one(), write=False) < at_least:
        assert asyncio.get_running_loop().time() < deadline, f"{at_least} welcomes not sent"
        await asyncio.sleep(0.05)


async def task_counts_by_worker(handles: list[OnboardingHandle]) -> Counter[str]:
    """Workflow and activity tasks each worker identity started, over every run's history."""
    counts: Counter[str] = Counter()
    for handle in handles:
        async for event in handle.fetch_history_events():
            if event.HasField("activity_task_started_event_attributes"):
                counts[event.activity_task_started_event_attributes.identity] += 1
            elif event.HasField("workflow_task_started_event_attributes"):
                counts[event.workflow_task_started_event_attributes.identity] += 1
    return counts


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_three_workers_one_killed_one_stopped_mid_run_lose_and_double_nothing(
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
        "CRMFLOW_WORKER_GRACEFUL_SHUTDOWN_SECONDS": "10",
        "CRMFLOW_WORKER_METRICS_ADDRESS": "",
        "CRMFLOW_LOG_LEVEL": "WARNING",
    }
    customers = [onboarding_input() for _ in range(RUNS)]
    async with (
        worker_process(env, tmp_path / "killed.log") as killed,
        worker_process(env, tmp_path / "stopped.log") as stopped,
        worker_process(env, tmp_path / "survivor.log") as survivor,
    ):
        roles = {killed.pid: "killed", stopped.pid: "stopped", survivor.pid: "survivor"}
        handles = [await start_onboarding(dev_client, task_queue, c) for c in customers]
        await welcomes_sent(database, RUNS // 4)
        killed.send_signal(signal.SIGKILL)
        await welcomes_sent(database, RUNS // 2)
        stopped.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(stopped.wait(), timeout=30) == 0
        for handle in handles:
            await send_event(handle, "account_configured")
            await send_event(handle, "first_value")
        results = await asyncio.wait_for(
            asyncio.gather(*(handle.result() for handle in handles)), timeout=600
        )
        assert survivor.returncode is None

    assert [r.outcome for r in results] == ["activated"] * RUNS
    messages = read_messages(mail_sink.maildir)
    for customer in customers:
        welcome = {m.message_id for m in messages if customer.contact_email in m.recipients}
        assert len(welcome) == 1, customer.customer_id
        assert [t.kind for t in await tasks_of(database, customer.customer_id)] == ["kickoff"]
    counts = await task_counts_by_worker(handles)
    by_role = {roles.get(int(who.split("@")[0]), who): n for who, n in counts.items()}
    print(f"tasks per worker over {RUNS} onboardings: {by_role}")
    assert set(by_role) <= {"killed", "stopped", "survivor"}
    assert by_role["survivor"] > max(by_role.get("killed", 0), by_role.get("stopped", 0))
