"""The API served by uvicorn over real HTTP, with a worker, against the real dev server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from api.main import create_app
from crm.platform.principals import new_api_key, write_api_keys_file
from crm.platform.settings import Settings
from crm.policy import Policy
from crm.store.db import Database
from tests.support.servers import run_asgi_server
from worker.main import running_worker


@pytest.fixture(scope="session")
def api_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One key per role (the approver decides as mgr-hana), plus ``caller`` with
    service and support, ``tenant-a``/``tenant-b`` service+support keys,
    ``admin-a``/``admin-b`` admin keys of those tenants and
    ``approver:<staff id>`` keys for fin-olga, fin-ravi and the CSMs."""
    made = {
        "service": new_api_key("svc-test", ("service",)),
        "support": new_api_key("support-test", ("support",)),
        "approver": new_api_key("approver-test", ("approver",), staff_id="mgr-hana"),
        "admin": new_api_key("admin-test", ("admin",)),
        "caller": new_api_key("caller-test", ("service", "support")),
        "tenant-a": new_api_key("svc-a", ("service", "support"), tenant="a"),
        "tenant-b": new_api_key("svc-b", ("service", "support"), tenant="b"),
        "admin-a": new_api_key("admin-a", ("admin",), tenant="a"),
        "admin-b": new_api_key("admin-b", ("admin",), tenant="b"),
        "all": new_api_key(
            "fuzzer", ("service", "support", "approver", "admin"), staff_id="mgr-hana"
        ),
        **{
            f"approver:{staff}": new_api_key(f"approver-{staff}", ("approver",), staff_id=staff)
            for staff in ("fin-olga", "fin-ravi", "csm-ana", "csm-ben", "csm-cleo", "csm-dev")
        },
    }
    path = tmp_path_factory.mktemp("keys") / "api-keys.yml"
    write_api_keys_file(path, [record for _, record in made.values()])
    keys = {name: key for name, (key, _) in made.items()}
    keys["file"] = str(path)
    return keys


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def api_settings(settings: Settings, dev_client: Client, api_keys: dict[str, str]) -> Settings:
    return settings.model_copy(
        update={
            "temporal_address": dev_client.service_client.config.target_host,
            "api_keys_file": Path(api_keys["file"]),
        }
    )


@pytest.fixture
async def api_url(
    api_settings: Settings, dev_client: Client, policy: Policy, database: Database
) -> AsyncIterator[str]:
    """The API's base URL, with a worker polling the same task queue."""
    async with running_worker(dev_client, api_settings, policy, database):
        with run_asgi_server(create_app(api_settings)) as base_url:
            yield base_url


@pytest.fixture
async def api(api_url: str, api_keys: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the API, authenticated with a service + support key."""
    async with httpx.AsyncClient(
        base_url=api_url, timeout=10, headers=bearer(api_keys["caller"])
    ) as client:
        yield client


KeyedClient = Callable[[str], httpx.AsyncClient]


@pytest.fixture
async def as_key(api_url: str, api_keys: dict[str, str]) -> AsyncIterator[KeyedClient]:
    """``as_key(name)``: an HTTP client authenticated with the test key ``name``."""
    clients: dict[str, httpx.AsyncClient] = {}

    def make(name: str) -> httpx.AsyncClient:
        if name not in clients:
            clients[name] = httpx.AsyncClient(
                base_url=api_url, timeout=30, headers=bearer(api_keys[name])
            )
        return clients[name]

    try:
        yield make
    finally:
        for client in clients.values():
            await client.aclose()
