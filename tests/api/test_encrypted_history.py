"""With payload encryption on, the dev server's history holds no customer data in
plaintext, and the API's codec server decodes it for the Web UI."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from temporalio.client import Client

from api.main import create_app
from crm.platform.codec import new_codec_key
from crm.platform.settings import Settings
from crm.platform.temporal import connect
from crm.policy import Policy
from crm.store.db import Database
from tests.api.conftest import bearer
from tests.conftest import eventually
from tests.support.servers import run_asgi_server
from worker.main import running_worker

CONTACT = "grace.hopper@navy-systems.io"


@pytest.fixture
async def encrypted_api(
    api_settings: Settings, policy: Policy, database: Database, api_keys: dict[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    settings = api_settings.model_copy(update={"codec_keys": new_codec_key("test-1")})
    client = await connect(settings)
    async with running_worker(client, settings, policy, database):
        with run_asgi_server(create_app(settings)) as base_url:
            async with httpx.AsyncClient(
                base_url=base_url, timeout=10, headers=bearer(api_keys["caller"])
            ) as http:
                yield http


async def test_history_has_no_plaintext_contact_and_the_codec_server_decodes_it(
    encrypted_api: httpx.AsyncClient, dev_client: Client
) -> None:
    started = await encrypted_api.post(
        "/v1/onboardings",
        json={
            "customer_id": "c-cobol",
            "company_name": "Navy Systems",
            "contact_name": "Grace Hopper",
            "contact_email": CONTACT,
            "plan": "enterprise",
        },
    )
    assert started.status_code in (200, 201), started.text
    process_id = started.json()["process_id"]

    async def stage() -> str | None:
        view = (await encrypted_api.get(f"/v1/processes/{process_id}")).json()
        return (view.get("state") or {}).get("stage")

    await eventually(stage, lambda s: s == "awaiting_milestones")

    # dev_client has no codec: it sees what the server stores.
    history = await dev_client.get_workflow_handle(process_id).fetch_history()
    stored = history.to_json()
    assert CONTACT not in stored
    assert "Grace Hopper" not in stored
    assert base64.b64encode(CONTACT.encode()).decode()[:20] not in stored

    start = history.events[0].workflow_execution_started_event_attributes
    request = json_format.MessageToJson(Payloads(payloads=list(start.input.payloads)))
    decoded = await encrypted_api.post(
        "/codec/decode",
        content=request,
        headers={"content-type": "application/json", "x-namespace": "default"},
    )
    assert decoded.status_code == 200, decoded.text
    [payload] = json_format.Parse(decoded.text, Payloads()).payloads
    assert CONTACT in payload.data.decode()


async def test_codec_server_refuses_malformed_payloads(encrypted_api: httpx.AsyncClient) -> None:
    response = await encrypted_api.post(
        "/codec/decode", content=b'{"payloads": 3}', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
