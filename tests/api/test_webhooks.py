"""``/v1/webhooks`` on the real API and dev server: endpoints, secrets, tenants, the log.

Deliveries go to a real receiver on 127.0.0.1 (allowlisted in these settings)
through the production worker; events are emitted as a process's outcome
activity emits them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook
from temporalio.client import Client

from activities.webhook_delivery import emit_event
from crm.platform.codec import new_codec_key
from crm.platform.settings import Settings
from crm.store.db import Database
from crm.store.webhooks import Emitted
from tests.api.conftest import KeyedClient
from tests.api.test_onboardings import new_customer
from tests.conftest import eventually
from tests.support.receivers import Receiver, running_receiver

pytestmark = pytest.mark.usefixtures("api_url")


@pytest.fixture
def api_settings(api_settings: Settings) -> Settings:
    return api_settings.model_copy(
        update={"sealing_keys": new_codec_key("api-1"), "outbound_allowed_hosts": ["127.0.0.1"]}
    )


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    with running_receiver() as running:
        yield running


async def create(client: httpx.AsyncClient, url: str, **fields: object) -> dict[str, object]:
    answer = await client.post("/v1/webhooks", json={"url": url, "event_types": ["*"], **fields})
    assert answer.status_code == 201, answer.text
    created: dict[str, object] = answer.json()
    return created


def lapse(event_id: str, tenant: str | None) -> Emitted:
    return Emitted(
        tenant=tenant,
        event_id=event_id,
        type="renewal.lapsed",
        process_id=f"renewal-{event_id}",
        occurred_at=datetime.now(UTC),
        data={"subscription_id": event_id, "plan": "pro", "contact_email": "bo@example.com"},
    )


async def test_an_endpoint_is_created_with_its_secret_shown_once_and_listed_without_it(
    as_key: KeyedClient,
) -> None:
    admin = as_key("admin")
    created = await create(admin, "https://hooks.example.com/crm", event_types=["ticket.*"])

    assert str(created["secret"]).startswith("whsec_")
    assert created["event_types"] == ["ticket.*"]
    shown = (await admin.get(f"/v1/webhooks/{created['id']}")).json()
    assert "secret" not in shown
    listed = (await admin.get("/v1/webhooks")).json()
    assert created["id"] in [endpoint["id"] for endpoint in listed]
    assert all("secret" not in endpoint for endpoint in listed)


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"url": "ftp://hooks.example.com", "event_types": ["*"]}, "url", "http"),
        ({"url": "https://u:p@hooks.example.com", "event_types": ["*"]}, "url", "credentials"),
        (
            {"url": "https://hooks.example.com", "event_types": ["ticket.exploded"]},
            "event_types",
            "not an event type",
        ),
        (
            {"url": "https://hooks.example.com", "event_types": ["billing.*"]},
            "event_types",
            "no process",
        ),
        ({"url": "https://hooks.example.com", "event_types": []}, "event_types", "at least 1"),
    ],
)
async def test_a_bad_endpoint_is_a_422_pointing_at_the_field(
    as_key: KeyedClient, body: dict[str, object], field: str, message: str
) -> None:
    answer = await as_key("admin").post("/v1/webhooks", json=body)

    assert answer.status_code == 422
    assert answer.headers["content-type"].startswith("application/problem+json")
    [error] = answer.json()["errors"]
    assert error["loc"] == ["body", field]
    assert message in error["msg"]


async def test_tenants_see_and_change_only_their_own_endpoints(as_key: KeyedClient) -> None:
    mine = await create(as_key("admin-a"), "https://a.example.com/hooks")
    other = as_key("admin-b")

    assert (await other.get(f"/v1/webhooks/{mine['id']}")).status_code == 404
    assert (
        await other.patch(f"/v1/webhooks/{mine['id']}", json={"enabled": False})
    ).status_code == 404
    assert (await other.get(f"/v1/webhooks/{mine['id']}/deliveries")).status_code == 404
    before_utc = await as_key("admin-a").get(
        f"/v1/webhooks/{mine['id']}/deliveries", params={"since": "0001-01-01T00:00:00+05:00"}
    )
    assert before_utc.status_code == 422
    assert before_utc.json()["errors"][0]["loc"] == ["query", "since"]
    rotated = await other.post(f"/v1/webhooks/{mine['id']}/rotate-secret", json={})
    assert rotated.status_code == 404
    assert (await other.post(f"/v1/webhooks/{mine['id']}/redeliver", json={})).status_code == 404
    assert (await other.delete(f"/v1/webhooks/{mine['id']}")).status_code == 404
    assert mine["id"] not in [e["id"] for e in (await other.get("/v1/webhooks")).json()]
    assert (await as_key("tenant-a").get("/v1/webhooks")).status_code == 403


async def test_deliveries_are_logged_signed_and_a_failed_one_is_redelivered_with_its_id(
    as_key: KeyedClient,
    receiver: tuple[Receiver, str],
    dev_client: Client,
    database: Database,
    api_settings: Settings,
) -> None:
    app, base_url = receiver
    admin = as_key("admin-a")
    created = await create(admin, f"{base_url}/hooks", event_types=["renewal.lapsed"])
    endpoint_id = str(created["id"])
    app.planned["/hooks"] = [410]

    await emit_event(dev_client, database, api_settings.task_queue, lapse("sub-1", "a"))

    async def shown() -> dict[str, Any]:
        answer: dict[str, Any] = (await admin.get(f"/v1/webhooks/{endpoint_id}")).json()
        return answer

    async def deliveries() -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = (
            await admin.get(f"/v1/webhooks/{endpoint_id}/deliveries")
        ).json()
        return answer

    endpoint = await eventually(shown, lambda e: e["enabled"] is False)
    assert "410" in str(endpoint["disabled_reason"])
    [failed] = await deliveries()
    assert failed["state"] == "failed"
    assert [a["status"] for a in failed["attempts"]] == [410]
    assert (await admin.post(f"/v1/webhooks/{endpoint_id}/redeliver", json={})).status_code == 409

    enabled = await admin.patch(f"/v1/webhooks/{endpoint_id}", json={"enabled": True})
    assert enabled.json()["disabled_reason"] is None
    again = await admin.post(f"/v1/webhooks/{endpoint_id}/redeliver", json={})
    assert again.json() == {"redelivered": 1}

    [log] = await eventually(deliveries, lambda logs: logs[0]["state"] == "delivered")
    assert [a["status"] for a in log["attempts"]] == [410, 200]
    first, second = app.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == log["webhook_id"]
    body = Webhook(str(created["secret"])).verify(second.body, second.headers)
    assert body["data"]["subscription_id"] == "sub-1"
    assert "contact_email" not in body["data"]


async def test_a_rotated_secret_is_new_and_the_endpoint_shows_until_when_the_old_one_signs(
    as_key: KeyedClient,
) -> None:
    admin = as_key("admin")
    created = await create(admin, "https://hooks.example.com/rotate")

    rotated = await admin.post(
        f"/v1/webhooks/{created['id']}/rotate-secret", json={"overlap_hours": 2}
    )

    assert rotated.status_code == 200
    assert rotated.json()["secret"] != created["secret"]
    assert rotated.json()["rotating_until"] is not None


async def test_the_event_catalogue_has_a_payload_schema_per_type(as_key: KeyedClient) -> None:
    catalogue = (await as_key("admin").get("/v1/webhooks/event-types")).json()

    assert {"ticket.breached", "renewal.lapsed", "approval.approved"} <= set(catalogue)
    data = catalogue["onboarding.stalled"]["properties"]["data"]
    assert {"event_id", "process_id", "customer_id"} <= set(data["properties"])


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254/latest/meta-data", "http://10.0.0.7/hooks", "http://0.0.0.0:80/"],
)
async def test_an_address_inside_the_network_is_refused_on_submit(
    as_key: KeyedClient, url: str
) -> None:
    answer = await as_key("admin").post("/v1/webhooks", json={"url": url, "event_types": ["*"]})

    assert answer.status_code == 422
    [error] = answer.json()["errors"]
    assert error["loc"] == ["body", "url"]
    assert "inside the network" in error["msg"]


async def test_a_task_created_by_a_process_and_completed_by_a_person_are_both_delivered(
    as_key: KeyedClient, api: httpx.AsyncClient, receiver: tuple[Receiver, str]
) -> None:
    app, base_url = receiver
    created = await create(as_key("admin"), f"{base_url}/tasks", event_types=["task.*"])
    customer = new_customer()
    process_id = (await api.post("/v1/onboardings", json=customer)).json()["process_id"]

    async def kickoff_tasks() -> list[dict[str, Any]]:
        listed = await api.get("/v1/tasks", params={"process_id": process_id})
        tasks: list[dict[str, Any]] = listed.json()
        return tasks

    [kickoff] = await eventually(kickoff_tasks, lambda tasks: len(tasks) == 1)
    done = await api.post(f"/v1/tasks/{kickoff['id']}/complete", json={"completed_by": "csm-x"})
    assert done.status_code == 200

    async def bodies() -> list[dict[str, Any]]:
        webhook = Webhook(str(created["secret"]))
        return [webhook.verify(r.body, r.headers) for r in app.received if r.path == "/tasks"]

    received = await eventually(bodies, lambda found: len(found) == 2)
    by_type = {body["type"]: body["data"] for body in received}
    assert set(by_type) == {"task.created", "task.completed"}
    assert by_type["task.completed"]["task_id"] == kickoff["id"]
    assert by_type["task.completed"]["completed_by"] == "csm-x"
    assert by_type["task.created"]["process_id"] == process_id
    assert "title" not in by_type["task.created"], "a title may name a person"
