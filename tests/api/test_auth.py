"""Who may call what: every route x role (allowed, 401, 403), tenants, JWTs, limits."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest

from api.main import create_app
from crm.platform.settings import Settings
from crm.reports import REPORTS
from tests.api.conftest import bearer
from tests.conftest import eventually
from tests.support.servers import run_asgi_server

ROLES = ("service", "support", "approver", "admin")


def onboarding_body() -> dict[str, Any]:
    customer_id = f"c-{uuid.uuid4().hex[:10]}"
    return {
        "customer_id": customer_id,
        "company_name": "Acme",
        "contact_name": "Ann Lee",
        "contact_email": f"ann.{customer_id}@acme-corp.io",
        "plan": "starter",
    }


#: (method, path, body, roles allowed). A route missing here is a route nobody checked.
#: An endpoint id of the right shape that no endpoint has.
NO_ENDPOINT = "ep_" + "0" * 20

ROUTES: list[tuple[str, str, Any, set[str]]] = [
    ("POST", "/v1/onboardings", onboarding_body, {"service"}),
    ("GET", "/v1/processes/onboarding-nobody", None, {"service", "support"}),
    ("GET", "/v1/processes/onboarding-nobody/audit", None, {"service", "support"}),
    ("GET", "/v1/processes", None, {"service", "support"}),
    ("GET", "/v1/customers/c-auth/timeline", None, {"service", "support"}),
    ("GET", "/v1/attention", None, {"admin", "support"}),
    ("POST", "/v1/processes/onboarding-nobody/events", {"type": "first_value"}, {"service"}),
    ("POST", "/v1/processes/onboarding-nobody/cancel", {}, {"support"}),
    ("GET", "/v1/tasks", None, {"support"}),
    ("POST", "/v1/tasks/1/complete", {}, {"service", "support", "approver"}),
    ("POST", "/v1/tasks/1/reassign", {"to": "csm-ben"}, {"support", "approver"}),
    ("POST", "/v1/tasks/1/claim", None, {"approver"}),
    ("GET", "/v1/inbox", None, {"approver"}),
    ("POST", "/v1/notifications/1/read", None, {"approver"}),
    ("POST", "/v1/approvals/approval-nobody/recall", {}, {"approver"}),
    ("GET", "/metrics", None, {"support"}),
    ("POST", "/codec/decode", {"payloads": []}, {"support"}),
    ("POST", "/codec/encode", {"payloads": []}, {"support"}),
    ("POST", "/v1/tickets", {"ticket_id": "t-auth", "priority": "low"}, {"service"}),
    ("POST", "/v1/renewals", {"subscription_id": "s-auth"}, {"service"}),
    ("POST", "/v1/leads", {"lead_id": "l-auth"}, {"service"}),
    ("GET", "/v1/approvals", None, {"approver", "support"}),
    ("POST", "/v1/approvals/approval-nobody/decision", {"decision": "approve"}, {"approver"}),
    ("POST", "/v1/subscriptions/s-auth/usage", {"metric": "seats"}, {"service"}),
    ("GET", "/v1/subscriptions/s-auth/usage", None, {"service", "support"}),
    ("GET", "/v1/automations", None, {"admin", "support"}),
    ("POST", "/v1/automations", {"id": "auth"}, {"admin"}),
    ("POST", "/v1/automations/validate", {"id": "auth"}, {"admin"}),
    ("GET", "/v1/automations/schema", None, {"admin", "support"}),
    ("GET", "/v1/automations/auth", None, {"admin", "support"}),
    ("GET", "/v1/automations/auth/versions", None, {"admin", "support"}),
    ("POST", "/v1/automations/auth/activate", {}, {"admin"}),
    ("POST", "/v1/automations/auth/pause", None, {"admin"}),
    ("POST", "/v1/automations/auth/archive", None, {"admin"}),
    ("POST", "/v1/automations/auth/enroll", {"records": [{"record_id": "r-1"}]}, {"admin"}),
    ("POST", "/v1/automations/preview", {"definition": {}, "record": {}}, {"admin"}),
    ("POST", "/v1/automations/auth/preview", {"record": {}}, {"admin", "support"}),
    ("POST", "/v1/records/events", {"event_id": "auth"}, {"service"}),
    ("GET", "/v1/webhooks", None, {"admin"}),
    ("POST", "/v1/webhooks", {"url": "https://hooks.example.com", "event_types": ["*"]}, {"admin"}),
    ("GET", "/v1/webhooks/event-types", None, {"admin"}),
    ("GET", f"/v1/webhooks/{NO_ENDPOINT}", None, {"admin"}),
    ("PATCH", f"/v1/webhooks/{NO_ENDPOINT}", {"enabled": False}, {"admin"}),
    ("DELETE", f"/v1/webhooks/{NO_ENDPOINT}", None, {"admin"}),
    ("POST", f"/v1/webhooks/{NO_ENDPOINT}/rotate-secret", {}, {"admin"}),
    ("GET", f"/v1/webhooks/{NO_ENDPOINT}/deliveries", None, {"admin"}),
    ("POST", f"/v1/webhooks/{NO_ENDPOINT}/redeliver", {}, {"admin"}),
    ("GET", "/v1/reports", None, {"admin", "support"}),
    ("POST", "/v1/email/events", {"type": "delivered", "message_id": "<no@x.io>"}, {"service"}),
    *(("GET", f"/v1/reports/{name}", None, {"admin", "support"}) for name in REPORTS),
]


def test_the_role_table_covers_every_route_of_the_api() -> None:
    spec = create_app(Settings()).openapi()
    documented = {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method in operations
        if path not in ("/healthz", "/readyz")
    }
    covered = {(method, _template(path)) for method, path, _, _ in ROUTES}
    assert documented - covered == set()


def _template(path: str) -> str:
    parts = path.split("/")
    names = {"processes": "{process_id}", "approvals": "{approval_id}"}
    names["subscriptions"] = "{subscription_id}"
    names["tasks"] = "{task_id}"
    names["notifications"] = "{notification_id}"
    names["customers"] = "{customer_id}"
    names["automations"] = "{automation_id}"
    names["webhooks"] = "{endpoint_id}"
    fixed = {
        "schema",
        "validate",
        "preview",
        "event-types",
    }  # /v1/automations/schema is no automation's id
    return "/".join(
        names[parts[i - 1]]
        if i > 0 and parts[i - 1] in names and part not in fixed | {""}
        else part
        for i, part in enumerate(parts)
    )


CASES = [
    pytest.param(method, path, body, role, role in allowed, id=f"{method} {path} as {role}")
    for method, path, body, allowed in ROUTES
    for role in ROLES
]


async def call(
    client: httpx.AsyncClient, method: str, path: str, body: Any, headers: dict[str, str]
) -> httpx.Response:
    payload = body() if callable(body) else body
    return await client.request(method, path, json=payload, headers=headers)


@pytest.fixture
async def anonymous(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as client:
        yield client


@pytest.mark.parametrize(("method", "path", "body", "role", "allowed"), CASES)
async def test_each_role_gets_exactly_the_routes_it_needs(
    anonymous: httpx.AsyncClient,
    api_keys: dict[str, str],
    method: str,
    path: str,
    body: Any,
    role: str,
    allowed: bool,
) -> None:
    response = await call(anonymous, method, path, body, bearer(api_keys[role]))
    if allowed:
        assert response.status_code not in (401, 403), response.text
    else:
        assert response.status_code == 403, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == "urn:crmflow:problem:forbidden"


@pytest.mark.parametrize(("method", "path", "body"), [r[:3] for r in ROUTES])
async def test_every_route_but_the_probes_needs_credentials(
    anonymous: httpx.AsyncClient, method: str, path: str, body: Any
) -> None:
    for headers in ({}, bearer("crm_0123456789ab_" + "x" * 43), {"X-Api-Key": "nonsense"}):
        response = await call(anonymous, method, path, body, headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert (await anonymous.get("/healthz")).status_code == 200


async def test_api_key_works_in_the_x_api_key_header(
    anonymous: httpx.AsyncClient, api_keys: dict[str, str]
) -> None:
    response = await anonymous.get("/v1/tasks", headers={"X-Api-Key": api_keys["support"]})
    assert response.status_code == 200


async def test_a_tenant_cannot_see_another_tenants_run(
    anonymous: httpx.AsyncClient, api_keys: dict[str, str]
) -> None:
    body = onboarding_body()
    started = await anonymous.post(
        "/v1/onboardings", json=body, headers=bearer(api_keys["tenant-a"])
    )
    assert started.status_code == 201, started.text
    process_id = started.json()["process_id"]

    own = await anonymous.get(f"/v1/processes/{process_id}", headers=bearer(api_keys["tenant-a"]))
    assert own.status_code == 200
    for method, path, payload in (
        ("GET", f"/v1/processes/{process_id}", None),
        ("POST", f"/v1/processes/{process_id}/events", {"type": "first_value"}),
        ("POST", f"/v1/processes/{process_id}/cancel", {}),
    ):
        other = await call(anonymous, method, path, payload, bearer(api_keys["tenant-b"]))
        assert other.status_code == 404, other.text
    untenanted = await anonymous.get(
        f"/v1/processes/{process_id}", headers=bearer(api_keys["support"])
    )
    assert untenanted.status_code == 200  # staff without a tenant see every tenant


async def test_a_tenant_sees_only_the_tasks_of_its_own_processes(
    anonymous: httpx.AsyncClient, api_keys: dict[str, str]
) -> None:
    started = await anonymous.post(
        "/v1/onboardings", json=onboarding_body(), headers=bearer(api_keys["tenant-a"])
    )
    assert started.status_code == 201, started.text
    process_id = started.json()["process_id"]

    async def tasks_seen_by(key: str) -> list[dict[str, Any]]:
        response = await anonymous.get(
            "/v1/tasks", params={"process_id": process_id}, headers=bearer(api_keys[key])
        )
        assert response.status_code == 200, response.text
        tasks: list[dict[str, Any]] = response.json()
        return tasks

    own = await eventually(lambda: tasks_seen_by("tenant-a"), until=lambda tasks: len(tasks) == 1)
    assert own[0]["kind"] == "kickoff"
    assert await tasks_seen_by("tenant-b") == []
    assert len(await tasks_seen_by("support")) == 1  # staff without a tenant see every tenant


async def test_a_tenant_reads_and_counts_only_its_own_usage_reports(
    anonymous: httpx.AsyncClient, api_keys: dict[str, str]
) -> None:
    url = f"/v1/subscriptions/s-{uuid.uuid4().hex[:8]}/usage"
    report = {"metric": "seats", "used": 45, "included": 50}
    created = await anonymous.post(url, json=report, headers=bearer(api_keys["tenant-a"]))
    assert created.status_code == 201, created.text

    async def reports_seen_by(key: str) -> int:
        response = await anonymous.get(url, headers=bearer(api_keys[key]))
        assert response.status_code == 200, response.text
        return len(response.json())

    assert await reports_seen_by("tenant-a") == 1
    assert await reports_seen_by("tenant-b") == 0
    assert await reports_seen_by("support") == 1  # staff without a tenant see every tenant


async def test_oversized_body_is_a_413_problem(
    anonymous: httpx.AsyncClient, api_keys: dict[str, str]
) -> None:
    body = onboarding_body() | {"company_name": "x" * 70_000}
    response = await anonymous.post(
        "/v1/onboardings", json=body, headers=bearer(api_keys["service"])
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


async def test_errors_never_echo_the_presented_key(anonymous: httpx.AsyncClient) -> None:
    secret = "crm_0123456789ab_" + "s3cret" * 8
    response = await anonymous.get("/v1/tasks", headers=bearer(secret))
    assert response.status_code == 401
    assert "s3cret" not in response.text


JWT_SECRET = "a-test-signing-secret-of-enough-length-for-hs256"


@pytest.fixture
def jwt_api(api_settings: Settings) -> Any:
    settings = api_settings.model_copy(
        update={
            "jwt_key": JWT_SECRET,
            "jwt_algorithm": "HS256",
            "jwt_issuer": "https://idp.example.com/",
            "jwt_audience": "crmflow",
            "start_rate_per_second": 1.0,
            "start_burst": 2,
        }
    )
    with run_asgi_server(create_app(settings)) as base_url:
        yield base_url


def token(**claims: Any) -> str:
    now = int(time.time())
    body = {
        "iss": "https://idp.example.com/",
        "aud": "crmflow",
        "sub": "svc-billing",
        "iat": now,
        "exp": now + 300,
        "roles": ["support"],
    } | claims
    return jwt.encode(body, JWT_SECRET, algorithm="HS256")


async def test_jwt_from_the_identity_provider_maps_to_a_principal(jwt_api: str) -> None:
    async with httpx.AsyncClient(base_url=jwt_api, timeout=10) as client:
        assert (await client.get("/v1/tasks", headers=bearer(token()))).status_code == 200
        service_only = bearer(token(roles=["service"]))
        assert (await client.get("/v1/tasks", headers=service_only)).status_code == 403
        for bad in (
            token(exp=int(time.time()) - 10),
            token(aud="someone-else"),
            token(iss="https://evil.example.com/"),
            jwt.encode({"sub": "x", "roles": ["support"]}, "wrong-secret-" * 4, algorithm="HS256"),
        ):
            assert (await client.get("/v1/tasks", headers=bearer(bad))).status_code == 401


async def test_starts_are_rate_limited_per_principal(jwt_api: str) -> None:
    async with httpx.AsyncClient(base_url=jwt_api, timeout=10) as client:
        first = bearer(token(sub="svc-a", roles=["service"]))
        second = bearer(token(sub="svc-b", roles=["service"]))
        answers = [
            (
                await client.post("/v1/onboardings", json=onboarding_body(), headers=first)
            ).status_code
            for _ in range(3)
        ]
        assert answers[:2] != [429, 429] and answers[2] == 429
        limited = await client.post("/v1/onboardings", json=onboarding_body(), headers=first)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        other = await client.post("/v1/onboardings", json=onboarding_body(), headers=second)
        assert other.status_code != 429


async def test_probes_answer_without_a_key_and_name_no_address(api_settings: Settings) -> None:
    unreachable = api_settings.model_copy(update={"temporal_address": "127.0.0.1:9"})
    with run_asgi_server(create_app(unreachable)) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"temporal": "unavailable", "database": "ok"}
    assert ready.json()["detail"] == "temporal: unavailable"
    assert "127.0.0.1" not in ready.text and "9" not in ready.json()["detail"]


async def test_replicas_share_a_principals_start_rate(
    api_settings: Settings, api_keys: dict[str, str]
) -> None:
    shared = api_settings.model_copy(
        update={"start_rate_per_second": 0.01, "start_burst": 4, "api_replicas": 2}
    )
    key = bearer(api_keys["service"])
    answers: list[int] = []
    with run_asgi_server(create_app(shared)) as one, run_asgi_server(create_app(shared)) as two:
        for base_url in (one, two):
            async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
                for _ in range(3):
                    started = await client.post(
                        "/v1/onboardings", json=onboarding_body(), headers=key
                    )
                    answers.append(started.status_code)
    # A burst of 4 in all: two starts on each replica, the third refused on each.
    assert [answer == 429 for answer in answers] == [False, False, True, False, False, True]
