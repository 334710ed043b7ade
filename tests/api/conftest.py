"""The API served by uvicorn over real HTTP, with a worker, against the real dev server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from api.main import create_app
from crm.db import Database
from crm.policy import Policy
from crm.settings import Settings
from tests.servers import run_asgi_server
from worker.main import running_worker


@pytest.fixture
def api_settings(settings: Settings, dev_client: Client) -> Settings:
    return settings.model_copy(
        update={"temporal_address": dev_client.service_client.config.target_host}
    )


@pytest.fixture
async def api(
    api_settings: Settings, dev_client: Client, policy: Policy, database: Database
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the API, with a worker polling the same task queue."""
    async with running_worker(dev_client, api_settings, policy, database):
        with run_asgi_server(create_app(api_settings)) as base_url:
            async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
                yield client


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
