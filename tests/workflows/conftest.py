"""Fixtures of the time-skipping workflow tests: the running stack, or its client and a worker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from crm.platform.settings import Settings
from crm.policy import Policy
from crm.store.db import Database
from tests.support.stack import Stack
from worker.main import running_worker


@pytest.fixture
async def stack(idle_stack: Stack) -> AsyncIterator[Stack]:
    """The time-skipping stack with the production worker (real activities) polling its queue."""
    async with idle_stack.worker():
        yield idle_stack


@pytest.fixture
def client(time_skipping_env: WorkflowEnvironment) -> Client:
    return time_skipping_env.client


@pytest.fixture
async def worker(
    client: Client, settings: Settings, policy: Policy, database: Database
) -> AsyncIterator[None]:
    """The production worker (real activities) polling this test's task queue."""
    async with running_worker(client, settings, policy, database):
        yield
