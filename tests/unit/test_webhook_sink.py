"""The webhook sink as a real HTTP server: what is delivered is what a reader finds.

Deliveries are signed as the worker signs them (``activities.outbound``) and
posted with aiohttp; the tests assert on the answer the sender gets, the
record in ``deliveries.jsonl`` and the ``crmflow webhooks`` table.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from activities.outbound import signed_headers, signing_key
from crm.platform.codec import new_codec_key
from crm.platform.settings import Settings
from crm.store.db import Database
from crm.store.models import WebhookEndpoint
from crm.store.webhooks import create_endpoint, delete_endpoint, new_secret, rotate_secret
from devstack.cli import main as crmflow
from devstack.stack import DevStackConfig, plan_services
from devstack.webhook_sink import (
    create_sink_app,
    database_secrets,
    deliveries_file,
    read_deliveries,
    secret_fingerprint,
)
from tests.support.servers import run_asgi_server

SECRET = new_secret()


class KnownSecrets:
    """The secrets the sink is given, changeable by the test; counts how often it is asked."""

    def __init__(self, *secrets: str) -> None:
        self.secrets = list(secrets)
        self.reads = 0

    async def __call__(self) -> list[str]:
        self.reads += 1
        return list(self.secrets)


def event_body(event_type: str = "ticket.breached", **data: Any) -> bytes:
    return json.dumps(
        {"type": event_type, "timestamp": "2026-12-04T09:30:00Z", "data": data}
    ).encode()


def signed(body: bytes, *secrets: str, msg_id: str = "msg_1_1") -> dict[str, str]:
    return signed_headers([signing_key(secret) for secret in secrets], msg_id, body)


@pytest.fixture
def known() -> KnownSecrets:
    return KnownSecrets(SECRET)


@pytest.fixture
def sink_url(tmp_path: Path, known: KnownSecrets) -> Iterator[str]:
    with run_asgi_server(create_sink_app(tmp_path, known)) as base_url:
        yield base_url


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def deliver(
    http: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, Any], str | None]:
    async with http.post(url, data=body, headers=headers) as answer:
        return answer.status, await answer.json(), answer.headers.get("Retry-After")


async def plan(http: aiohttp.ClientSession, sink_url: str, **behaviour: Any) -> dict[str, Any]:
    async with http.post(f"{sink_url}/_sink/behaviour", json=behaviour) as answer:
        assert answer.status == 200, await answer.text()
        planned: dict[str, Any] = await answer.json()
        return planned


async def test_a_delivery_signed_with_a_known_secret_is_verified_and_answered_200(
    sink_url: str, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    body = event_body("renewal.lapsed", process_id="renewal-c-7")
    status, answer, _ = await deliver(http, f"{sink_url}/hooks/crm", body, signed(body, SECRET))

    assert (status, answer["verified"]) == (200, True)
    [delivery] = read_deliveries(tmp_path)
    assert delivery.path == "/hooks/crm"
    assert delivery.webhook_id == "msg_1_1"
    assert delivery.event_type == "renewal.lapsed"
    assert delivery.verified == secret_fingerprint(SECRET)
    assert SECRET not in deliveries_file(tmp_path).read_text()
    assert json.loads(delivery.body)["data"] == {"process_id": "renewal-c-7"}


async def test_a_delivery_with_a_bad_signature_is_answered_401_and_still_recorded(
    sink_url: str, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    body = event_body()
    status, answer, _ = await deliver(
        http, f"{sink_url}/hooks/crm", body, signed(body, new_secret())
    )
    unsigned_status, _, _ = await deliver(http, f"{sink_url}/hooks/crm", body, {})

    assert (status, unsigned_status) == (401, 401)
    assert "No matching signature found" in answer["detail"]
    bad, unsigned = read_deliveries(tmp_path)
    assert (bad.verified, bad.status, bad.webhook_id) == (None, 401, "msg_1_1")
    assert bad.unverified_reason == "No matching signature found"
    assert (unsigned.verified, unsigned.webhook_signature) == (None, None)
    assert unsigned.unverified_reason == "Missing required headers"


async def test_a_rotating_endpoint_is_verified_by_the_secret_the_sink_knows(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    previous, current = new_secret(), new_secret()
    body = event_body()
    with run_asgi_server(create_sink_app(tmp_path, KnownSecrets(previous))) as sink_url:
        status, _, _ = await deliver(http, f"{sink_url}/h", body, signed(body, current, previous))

    assert status == 200
    assert read_deliveries(tmp_path)[0].verified == secret_fingerprint(previous)


async def test_a_planned_503_is_answered_with_retry_after_then_200(
    sink_url: str, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    await plan(http, sink_url, path="/hooks/x", statuses=[503, 503], retry_after=5)
    body = event_body()
    answers = [
        await deliver(http, f"{sink_url}/hooks/x", body, signed(body, SECRET)) for _ in range(3)
    ]
    elsewhere, _, _ = await deliver(http, f"{sink_url}/hooks/y", body, signed(body, SECRET))

    assert [(status, retry_after) for status, _, retry_after in answers] == [
        (503, "5"),
        (503, "5"),
        (200, None),
    ]
    assert elsewhere == 200
    assert [d.status for d in read_deliveries(tmp_path, path="/hooks/x")] == [503, 503, 200]


async def test_a_planned_429_carries_retry_after(
    sink_url: str, http: aiohttp.ClientSession
) -> None:
    await plan(http, sink_url, path="/hooks/x", statuses=[429], retry_after=30)
    body = event_body()
    status, _, retry_after = await deliver(http, f"{sink_url}/hooks/x", body, signed(body, SECRET))

    assert (status, retry_after) == (429, "30")


async def test_the_plans_in_force_show_what_is_left_and_can_be_forgotten(
    sink_url: str, http: aiohttp.ClientSession
) -> None:
    await plan(http, sink_url, path="/hooks/x", statuses=[500, 410])
    body = event_body()
    await deliver(http, f"{sink_url}/hooks/x", body, signed(body, SECRET))
    async with http.get(f"{sink_url}/_sink/behaviour") as answer:
        [shown] = await answer.json()
    async with http.delete(f"{sink_url}/_sink/behaviour", params={"path": "/hooks/x"}) as answer:
        assert answer.status == 204
    status, _, _ = await deliver(http, f"{sink_url}/hooks/x", body, signed(body, SECRET))

    assert (shown["path"], shown["statuses"]) == ("/hooks/x", [410])
    assert status == 200


async def test_a_stalled_answer_arrives_after_the_stall(
    sink_url: str, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    await plan(http, sink_url, path="/slow", stall_seconds=0.3)
    body = event_body()
    started = time.monotonic()
    status, _, _ = await deliver(http, f"{sink_url}/slow", body, signed(body, SECRET))

    assert status == 200
    assert time.monotonic() - started >= 0.3
    assert read_deliveries(tmp_path)[0].stall_seconds == 0.3


async def test_a_path_told_to_accept_unverified_deliveries_answers_as_planned(
    sink_url: str, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    await plan(http, sink_url, path="/open", reject_unverified=False)
    status, answer, _ = await deliver(http, f"{sink_url}/open", b"{}", {})

    assert (status, answer["verified"]) == (200, False)
    assert read_deliveries(tmp_path)[0].verified is None


async def test_a_behaviour_that_makes_no_sense_is_refused_naming_the_field(
    sink_url: str, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        f"{sink_url}/_sink/behaviour", json={"path": "/x", "statuses": [99]}
    ) as answer:
        assert answer.status == 422
        [problem] = (await answer.json())["detail"]
    assert problem["field"] == "statuses"


async def test_the_control_api_lists_deliveries_by_path_and_forgets_them(
    sink_url: str, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    for path in ("/a", "/b", "/a"):
        body = event_body()
        await deliver(http, f"{sink_url}{path}", body, signed(body, SECRET))
    async with http.get(f"{sink_url}/_sink/deliveries", params={"path": "/a"}) as answer:
        to_a = await answer.json()
    async with http.delete(f"{sink_url}/_sink/deliveries") as answer:
        assert answer.status == 204
    async with http.get(f"{sink_url}/_sink/deliveries") as answer:
        after = await answer.json()

    assert [(d["path"], d["status"]) for d in to_a] == [("/a", 200), ("/a", 200)]
    assert after == []
    assert read_deliveries(tmp_path) == []


async def test_the_deliveries_file_holds_one_json_line_each_and_survives_a_restart(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    body = event_body()
    for msg_id in ("msg_1_1", "msg_2_1"):
        with run_asgi_server(create_sink_app(tmp_path, KnownSecrets(SECRET))) as sink_url:
            await deliver(http, f"{sink_url}/h", body, signed(body, SECRET, msg_id=msg_id))

    lines = deliveries_file(tmp_path).read_text().splitlines()
    assert [json.loads(line)["webhook_id"] for line in lines] == ["msg_1_1", "msg_2_1"]
    assert {json.loads(line)["status"] for line in lines} == {200}


async def test_secrets_are_read_again_soon_after_a_delivery_none_verified(
    sink_url: str, http: aiohttp.ClientSession, known: KnownSecrets
) -> None:
    body = event_body()
    await deliver(http, f"{sink_url}/h", body, signed(body, SECRET))
    await deliver(http, f"{sink_url}/h", body, signed(body, SECRET))
    reads_while_cached = known.reads
    created = new_secret()
    known.secrets.append(created)
    await asyncio.sleep(0.6)
    status, _, _ = await deliver(http, f"{sink_url}/h", body, signed(body, created))

    assert reads_while_cached == 1
    assert status == 200


async def test_crmflow_webhooks_lists_the_newest_deliveries_last(
    sink_url: str, http: aiohttp.ClientSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for number, event_type in enumerate(("ticket.breached", "renewal.lapsed", "lead.routed")):
        body = event_body(event_type)
        secret = new_secret() if number == 1 else SECRET
        await deliver(
            http, f"{sink_url}/hooks/crm", body, signed(body, secret, msg_id=f"m{number}")
        )
    await deliver(http, f"{sink_url}/other", event_body(), {})

    exit_code = crmflow(
        ["webhooks", "--state", str(tmp_path), "--path", "/hooks/crm", "--limit", "2"]
    )
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]

    assert exit_code == 0
    assert rows[0] == ["time", "path", "webhook-id", "type", "verified", "status"]
    assert [row[2:] for row in rows[1:]] == [
        ["/hooks/crm", "m1", "renewal.lapsed", "no", "401"],
        ["/hooks/crm", "m2", "lead.routed", "yes", "200"],
    ]


async def test_crmflow_webhooks_shows_each_arrival_of_one_webhook_id(
    sink_url: str, http: aiohttp.ClientSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = event_body("ticket.met")
    for _ in range(2):  # a retried event arrives again under its webhook-id
        await deliver(http, f"{sink_url}/hooks/crm", body, signed(body, SECRET, msg_id="m-9"))

    assert crmflow(["webhooks", "--state", str(tmp_path), "m-9"]) == 0
    shown = capsys.readouterr().out
    assert "arrival 2 of 2 under this webhook-id" in shown
    assert "verified           yes, by the secret sha256:" in shown
    assert '  "type": "ticket.met",' in shown  # the body, indented
    assert crmflow(["webhooks", "--state", str(tmp_path), "m-404"]) == 1
    assert "no delivery with webhook-id m-404" in capsys.readouterr().out


async def new_endpoint(
    database: Database, tenant: str | None, codec_keys: str
) -> tuple[WebhookEndpoint, str]:
    return await create_endpoint(
        database,
        tenant,
        url="http://127.0.0.1:8025/hooks/crm",
        event_types=["*"],
        personal_data=False,
        enabled=True,
        codec_keys=codec_keys,
    )


async def test_the_dev_stack_knows_every_live_endpoints_signing_secrets(tmp_path: Path) -> None:
    codec_keys = new_codec_key("test-1")
    database = Database.from_url(f"sqlite:///{tmp_path / 'crm.db'}")
    try:
        await database.create_tables()
        rotated, first = await new_endpoint(database, "acme", codec_keys)
        deleted, _ = await new_endpoint(database, None, codec_keys)
        rotation = await rotate_secret(
            database, "acme", rotated.endpoint_id, timedelta(hours=1), codec_keys
        )
        assert rotation is not None
        await delete_endpoint(database, None, deleted.endpoint_id)

        secrets = await database_secrets(database, codec_keys, ["whsec_http-steps"])()
    finally:
        await database.dispose()

    assert sorted(secrets) == sorted([rotation[1], first, "whsec_http-steps"])


def test_the_dev_stack_runs_the_sink_and_lets_the_worker_and_api_reach_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = DevStackConfig.model_validate({"webhook_sink": {"host": "127.0.0.1", "port": 8125}})
    services = {service.name: service for service in plan_services(config, tmp_path)}

    sink = services["webhook-sink"]
    assert sink.ready_at == ("127.0.0.1", 8125)
    assert sink.argv[-2:] == ["--state", str(tmp_path / ".crmflow")]
    assert set(sink.env) == {
        "CRMFLOW_DATABASE_URL",
        "CRMFLOW_SEALING_KEYS",
        "CRMFLOW_AUTOMATION_HTTP_SECRET",
    }
    assert (
        sink.env["CRMFLOW_AUTOMATION_HTTP_SECRET"]
        == services["worker"].env["CRMFLOW_AUTOMATION_HTTP_SECRET"]
    )
    assert list(services).index("webhook-sink") < list(services).index("worker")
    for name in ("worker", "api"):
        for variable, value in services[name].env.items():
            monkeypatch.setenv(variable, value)
        settings = Settings()
        assert settings.outbound_allowed_hosts == ["127.0.0.1:8125"]
        assert settings.operator_email == "ops@example.com"
