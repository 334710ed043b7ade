"""A worker killed in the middle of onboardings: nothing is lost, nothing is doubled.

The worker runs as its own process (``crmflow worker``) against the real dev
server, a real SMTP sink and a SQLite file. Five onboardings are started; the
sink holds every welcome email open, so the worker is SIGKILLed while all five
are inside their SMTP transaction, after the CSM and the kickoff task are in
the database. A second worker takes over. Temporal notices the lost attempts
only when their ``start_to_close_timeout`` (30 s for email) runs out, then
retries them on the new worker; that timeout is what this test's duration is
made of.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlmodel import select
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from crm.store.db import Database
from crm.store.models import OutboundEmail
from devstack.mailsink import MaildirHandler
from tests.support.onboarding import (
    OnboardingHandle,
    inbox,
    onboarding_input,
    outbox_of,
    send_event,
    start_onboarding,
    step_of,
    tasks_of,
)
from tests.support.servers import free_port
from workflows.contracts import SEND_EMAIL
from workflows.onboarding_types import OnboardingInput

REPO = Path(__file__).resolve().parents[2]
RUNS = 5


class HeldMaildirHandler(MaildirHandler):
    """Stores messages like the sink, but first holds each SMTP DATA for ``hold`` seconds.

    A client that disconnects while held (its worker was killed) has
    delivered nothing, as with a relay that never answered 250.
    """

    def __init__(self, maildir: Path, hold: float) -> None:
        super().__init__(maildir)
        self.hold = hold

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(self.hold)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def held_sink(tmp_path: Path) -> Iterator[tuple[Controller, HeldMaildirHandler]]:
    handler = HeldMaildirHandler(tmp_path / "mail", hold=20.0)
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller, handler
    finally:
        controller.stop()


@asynccontextmanager
async def worker_process(
    env: dict[str, str], log_file: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``crmflow worker`` in a process of its own; killed on exit if still running."""
    with log_file.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "devstack.cli",
            "worker",
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=log,
        )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                process.kill()
                await process.wait()


async def wait_until_all_emails_are_in_flight(
    database: Database, handles: list[OnboardingHandle], within: float = 20.0
) -> None:
    process_ids = {handle.id for handle in handles}
    query = select(OutboundEmail.process_id).where(OutboundEmail.status == "sending")
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        sending = set(await database.run(lambda session: session.exec(query).all()))
        if process_ids <= sending:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"welcome emails in flight only for {sorted(sending)}")


async def completed_attempts(handle: OnboardingHandle, activity_name: str) -> list[int]:
    """The attempt that completed each execution of ``activity_name`` in the run's history."""
    scheduled: dict[int, str] = {}
    attempts: list[int] = []
    async for event in handle.fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            attributes = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = attributes.activity_type.name
        elif event.HasField("activity_task_started_event_attributes"):
            started = event.activity_task_started_event_attributes
            if scheduled[started.scheduled_event_id] == activity_name:
                attempts.append(started.attempt)
    return attempts


async def test_killed_worker_mid_onboarding_loses_and_duplicates_nothing(
    dev_env: WorkflowEnvironment,
    dev_client: Client,
    held_sink: tuple[Controller, HeldMaildirHandler],
    enrichment_url: str,
    task_queue: str,
    database_url: str,
    database: Database,
    tmp_path: Path,
) -> None:
    controller, handler = held_sink
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("CRMFLOW_")},
        "CRMFLOW_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "CRMFLOW_TASK_QUEUE": task_queue,
        "CRMFLOW_DATABASE_URL": database_url,
        "CRMFLOW_SMTP_HOST": "127.0.0.1",
        "CRMFLOW_SMTP_PORT": str(controller.port),
        "CRMFLOW_ENRICHMENT_URL": enrichment_url,
        "CRMFLOW_WORKER_GRACEFUL_SHUTDOWN_SECONDS": "0",
        "CRMFLOW_WORKER_METRICS_ADDRESS": "",  # no fixed metrics port to fight over
    }
    log_file = tmp_path / "workers.log"
    customers: list[OnboardingInput] = [onboarding_input() for _ in range(RUNS)]

    try:
        async with worker_process(env, log_file) as doomed:
            handles = [await start_onboarding(dev_client, task_queue, c) for c in customers]
            await wait_until_all_emails_are_in_flight(database, handles)
            doomed.send_signal(signal.SIGKILL)
            await doomed.wait()

        for customer in customers:  # killed inside SMTP, after the kickoff task
            assert inbox(handler.maildir, customer) == []
            assert [t.kind for t in await tasks_of(database, customer.customer_id)] == ["kickoff"]
        handler.hold = 0.0

        async with worker_process(env, log_file):
            for handle in handles:
                await send_event(handle, "account_configured")
                await send_event(handle, "first_value")
            results = await asyncio.wait_for(
                asyncio.gather(*(handle.result() for handle in handles)), timeout=60
            )
    except BaseException:
        sys.stderr.write(log_file.read_text(errors="replace")[-5000:])
        raise

    assert [r.outcome for r in results] == ["activated"] * RUNS
    for customer, handle in zip(customers, handles, strict=True):
        assert [step_of(m) for m in inbox(handler.maildir, customer)] == ["email_welcome"]
        [outbox] = await outbox_of(database, handle.id)
        assert outbox.status == "sent"
        tasks = await tasks_of(database, customer.customer_id)
        assert [t.kind for t in tasks] == ["kickoff"]
        assert await completed_attempts(handle, SEND_EMAIL) == [2]
    assert Counter(r.csm_id for r in results) == {"csm-ana": 2, "csm-ben": 2, "csm-cleo": 1}
