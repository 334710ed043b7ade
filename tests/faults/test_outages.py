"""Outages of what the activities depend on: nothing is lost and nothing is doubled.

- The SMTP server is down when the welcome email is due: the email activity
  retries with back-off and the message arrives exactly once when it is back.
- The database goes away in the middle of the first phase: the activities
  retry and every record, task and email exists exactly once afterwards.
- The enrichment provider answers 500, 429 or nothing at all: the lookup is
  retried with back-off, then the onboarding goes on with partial data.

The SMTP and database outages run on the real dev server in real time (a few
seconds each; ``-m slow`` runs the 30-second SMTP outage of the issue). The
enrichment failures run on the time-skipping server, which skips the
retry back-off.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from crm.platform.settings import Settings
from crm.policy import Policy
from crm.store.db import Database
from devstack.mailsink import MailSink
from tests.support.onboarding import (
    customer_row,
    inbox,
    onboarding_input,
    outbox_of,
    start_onboarding,
    tasks_of,
    wait_for_stage,
)
from tests.support.servers import TcpProxy, free_port, run_asgi_server
from tests.support.stack import Stack
from worker.main import running_worker

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:{port}/test?options=-csearch_path%3D{schema}"


async def last_attempt(handle: WorkflowHandle[Any, Any], activity_type: str) -> int:
    """The attempt number of the last start of ``activity_type`` in the run's history."""
    history = await handle.fetch_history()
    names = {
        e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    attempts = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and names[e.activity_task_started_event_attributes.scheduled_event_id] == activity_type
    ]
    return attempts[-1]


async def smtp_outage(dev_stack: Stack, tmp_path: Path, outage_seconds: float) -> None:
    port = free_port()
    customer = onboarding_input()
    async with dev_stack.worker(smtp_port=port):
        handle = await start_onboarding(dev_stack.client, dev_stack.task_queue, customer)
        await asyncio.sleep(outage_seconds)  # nothing listens on the SMTP port meanwhile
        with MailSink(tmp_path / "mail", port=port) as sink:
            await wait_for_stage(handle, "awaiting_milestones", within=outage_seconds + 40)
            welcome = inbox(sink.maildir, customer)
    assert [m.subject for m in welcome] == ["Welcome to crmflow, Acme Corp"]
    [email] = await outbox_of(dev_stack.database, handle.id)
    assert email.status == "sent"
    assert await last_attempt(handle, "send_email") > 1


async def test_smtp_down_for_seconds_delivers_the_welcome_email_once_when_back(
    dev_stack: Stack, tmp_path: Path
) -> None:
    await smtp_outage(dev_stack, tmp_path, outage_seconds=4)


@pytest.mark.slow
async def test_smtp_down_for_thirty_seconds_delivers_the_welcome_email_once_when_back(
    dev_stack: Stack, tmp_path: Path
) -> None:
    await smtp_outage(dev_stack, tmp_path, outage_seconds=30)


@pytest.fixture
def postgres_schema() -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield schema
        finally:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
async def flaky_postgres(postgres_schema: str) -> AsyncIterator[tuple[TcpProxy, Database]]:
    """PostgreSQL behind a proxy the test can cut, with crmflow's tables in a fresh schema."""
    proxy = TcpProxy("127.0.0.1", 5432)
    await proxy.restore()
    database = Database.from_url(POSTGRES.format(port=proxy.port, schema=postgres_schema))
    await database.create_tables()
    try:
        yield proxy, database
    finally:
        await proxy.cut()
        await database.dispose()


async def test_database_outage_mid_run_loses_and_doubles_nothing(
    dev_client: Client,
    settings: Settings,
    policy: Policy,
    flaky_postgres: tuple[TcpProxy, Database],
    mail_sink: MailSink,
) -> None:
    proxy, database = flaky_postgres
    customers = [onboarding_input() for _ in range(3)]
    async with running_worker(dev_client, settings, policy, database):
        await proxy.cut()
        handles = [await start_onboarding(dev_client, settings.task_queue, c) for c in customers]
        await asyncio.sleep(3)
        await proxy.restore()
        for handle in handles:
            await wait_for_stage(handle, "awaiting_milestones", within=60)

    for customer, handle in zip(customers, handles, strict=True):
        assert len(inbox(mail_sink.maildir, customer)) == 1
        assert [t.kind for t in await tasks_of(database, customer.customer_id)] == ["kickoff"]
        row = await customer_row(database, customer.customer_id)
        assert row is not None and row.stage == "onboarding"
        assert await last_attempt(handle, "assign_owner") > 1


def failing_provider(status: int | None) -> Starlette:
    """A provider that always answers ``status`` (None: never answers in time)."""

    async def lookup(_request: Request) -> Response:
        if status is None:
            await asyncio.sleep(30)
        headers = {"Retry-After": "2"} if status == 429 else None
        return JSONResponse({"title": "unavailable"}, status_code=status or 200, headers=headers)

    return Starlette(routes=[Route("/v1/companies/{domain}", lookup)])


@pytest.mark.parametrize(
    "status",
    [500, pytest.param(429, marks=pytest.mark.slow), pytest.param(None, marks=pytest.mark.slow)],
    ids=["500", "429", "timeout"],
)
async def test_failing_enrichment_is_retried_then_onboarding_goes_on_with_partial_data(
    idle_stack: Stack, status: int | None
) -> None:
    customer = onboarding_input()
    with run_asgi_server(failing_provider(status)) as url:
        async with idle_stack.worker(enrichment_url=url, enrichment_timeout_seconds=0.5):
            handle = await start_onboarding(idle_stack.client, idle_stack.task_queue, customer)
            state = await wait_for_stage(handle, "awaiting_milestones", within=60)

    assert state.details["enrichment_complete"] is False
    enrich = next(step for step in state.steps if step.step == "enrich")
    assert enrich.detail.startswith("partial data")
    assert len(inbox(idle_stack.maildir, customer)) == 1
    assert await last_attempt(handle, "enrich_company") == 5  # ENRICH_RETRY.maximum_attempts
