"""Onboarding through the HTTP API on the real dev server, with mail at a real SMTP sink."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from devstack.mailsink import MailSink, read_messages
from tests.conftest import eventually

PROBLEM_JSON = "application/problem+json"


def new_customer(**overrides: Any) -> dict[str, Any]:
    customer_id = f"c-{uuid.uuid4().hex[:10]}"
    body = {
        "customer_id": customer_id,
        "company_name": "Acme Robotics",
        "contact_name": "Ann Lee",
        "contact_email": f"ann.{customer_id}@acme-robotics.io",
        "plan": "growth",
    }
    return body | overrides


async def process(api: httpx.AsyncClient, process_id: str) -> dict[str, Any]:
    response = await api.get(f"/v1/processes/{process_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def stage(view: dict[str, Any]) -> str | None:
    return (view.get("state") or {}).get("stage")


async def test_onboarding_through_the_api_welcomes_assigns_and_activates(
    api: httpx.AsyncClient, mail_sink: MailSink
) -> None:
    customer = new_customer()
    created = await api.post("/v1/onboardings", json=customer)
    assert created.status_code == 201, created.text
    started = created.json()
    assert started["process_id"] == f"onboarding-{customer['customer_id']}"
    assert started["status"] == "running"

    again = await api.post("/v1/onboardings", json=customer)
    assert again.status_code == 200
    assert again.json() == started

    process_id = started["process_id"]
    view = await eventually(
        lambda: process(api, process_id), lambda v: stage(v) == "awaiting_milestones"
    )
    assert view["process"] == "onboarding"
    assert view["state"]["waiting_for"] == ["account_configured", "first_value"]
    csm = view["state"]["details"]["csm_id"]

    welcome = read_messages(mail_sink.maildir, to=customer["contact_email"])
    assert [m.subject for m in welcome] == ["Welcome to crmflow, Acme Robotics"]
    assert "Ann Lee" in welcome[0].body

    tasks = (await api.get("/v1/tasks", params={"assignee": csm})).json()
    kickoff = [t for t in tasks if t["process_id"] == process_id]
    assert [t["kind"] for t in kickoff] == ["kickoff"]
    assert kickoff[0]["title"] == "Kickoff call with Acme Robotics"

    for milestone in ("account_configured", "first_value"):
        sent = await api.post(
            f"/v1/processes/{process_id}/events", json={"type": milestone, "data": {"by": "app"}}
        )
        assert sent.status_code == 202, sent.text
    done = await eventually(lambda: process(api, process_id), lambda v: v["status"] != "running")
    assert done["status"] == "completed"
    assert done["state"]["outcome"] == "activated"

    closed = await api.post(f"/v1/processes/{process_id}/events", json={"type": "first_value"})
    assert closed.status_code == 409
    assert closed.headers["content-type"] == PROBLEM_JSON


async def test_a_task_is_marked_done_once_by_whoever_did_it(
    api: httpx.AsyncClient, api_keys: dict[str, str]
) -> None:
    customer = new_customer()
    process_id = (await api.post("/v1/onboardings", json=customer)).json()["process_id"]

    async def kickoff_tasks() -> list[dict[str, Any]]:
        listed = await api.get("/v1/tasks", params={"process_id": process_id})
        tasks: list[dict[str, Any]] = listed.json()
        return tasks

    [kickoff] = await eventually(kickoff_tasks, lambda tasks: len(tasks) == 1)
    assert (kickoff["status"], kickoff["completed_at"], kickoff["completed_by"]) == (
        "open",
        None,
        None,
    )
    path = f"/v1/tasks/{kickoff['id']}/complete"

    done = await api.post(path, json={"completed_by": kickoff["assignee_id"], "note": "held"})
    assert done.status_code == 200, done.text
    assert (done.json()["status"], done.json()["completed_by"]) == ("done", kickoff["assignee_id"])
    assert done.json()["completed_at"] is not None
    again = await api.post(path)  # no body: the caller did it; but it is done already
    assert again.status_code == 200
    assert again.json() == done.json()
    [listed] = await kickoff_tasks()
    assert listed == done.json()
    assert [t["id"] for t in (await api.get("/v1/tasks", params={"status": "open"})).json()] == []

    other_tenant = await api.post(path, headers={"Authorization": f"Bearer {api_keys['tenant-b']}"})
    assert other_tenant.status_code == 404
    unknown = await api.post("/v1/tasks/999999/complete")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == PROBLEM_JSON
    assert unknown.json()["type"] == "urn:crmflow:problem:task-not-found"
    for bad in ({"completed_by": ""}, {"note": "x" * 2001}, {"done": True}):
        refused = await api.post(path, json=bad)
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.headers["content-type"] == PROBLEM_JSON


async def test_cancelled_onboarding_ends_as_cancelled_with_the_reason(
    api: httpx.AsyncClient,
) -> None:
    customer = new_customer()
    process_id = (await api.post("/v1/onboardings", json=customer)).json()["process_id"]
    await eventually(lambda: process(api, process_id), lambda v: stage(v) == "awaiting_milestones")

    cancelled = await api.post(
        f"/v1/processes/{process_id}/cancel", json={"reason": "customer churned"}
    )
    assert cancelled.status_code == 202, cancelled.text
    view = await eventually(lambda: process(api, process_id), lambda v: v["status"] != "running")
    assert view["status"] == "cancelled"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"contact_email": "ann-at-acme"}, "contact_email"),
        ({"plan": "platinum"}, "plan"),
        ({"customer_id": "has spaces"}, "customer_id"),
        ({"unexpected": 1}, "unexpected"),
    ],
    ids=["bad-email", "unknown-plan", "bad-customer-id", "extra-field"],
)
async def test_invalid_onboarding_is_a_422_problem_naming_the_field(
    api: httpx.AsyncClient, change: dict[str, Any], field: str
) -> None:
    response = await api.post("/v1/onboardings", json=new_customer(**change))
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    problem = response.json()
    assert problem["status"] == 422
    assert problem["type"].startswith("urn:crmflow:problem:")
    assert field in problem["detail"]


async def test_missing_fields_are_each_named_in_the_422_problem(api: httpx.AsyncClient) -> None:
    response = await api.post("/v1/onboardings", json={"customer_id": "c-1"})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    missing = {tuple(e["loc"])[-1] for e in response.json()["errors"]}
    assert missing == {"company_name", "contact_name", "contact_email", "plan"}


async def test_malformed_json_is_a_problem_not_a_500(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/v1/onboardings", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON


async def test_unknown_process_is_a_404_problem(api: httpx.AsyncClient) -> None:
    for response in (
        await api.get("/v1/processes/onboarding-nobody"),
        await api.post("/v1/processes/onboarding-nobody/events", json={"type": "first_value"}),
        await api.post("/v1/processes/onboarding-nobody/cancel"),
    ):
        assert response.status_code == 404
        assert response.headers["content-type"] == PROBLEM_JSON
        assert "onboarding-nobody" in response.json()["detail"]


async def test_unknown_event_type_is_refused_and_the_run_goes_on(api: httpx.AsyncClient) -> None:
    process_id = (await api.post("/v1/onboardings", json=new_customer())).json()["process_id"]
    response = await api.post(f"/v1/processes/{process_id}/events", json={"type": "paid"})
    assert response.status_code == 422
    assert "account_configured" in response.json()["detail"]
    assert (await process(api, process_id))["status"] == "running"


async def test_health_and_readiness(api: httpx.AsyncClient) -> None:
    assert (await api.get("/healthz")).status_code == 200
    ready = await api.get("/readyz")
    assert ready.status_code == 200, ready.text


async def test_concurrent_starts_for_one_customer_make_one_run_and_all_get_its_id(
    api: httpx.AsyncClient,
) -> None:
    customer = new_customer()
    responses = await asyncio.gather(
        *(api.post("/v1/onboardings", json=customer) for _ in range(50))
    )
    assert sorted(r.status_code for r in responses) == [200] * 49 + [201]
    assert {(r.json()["process_id"], r.json()["run_id"]) for r in responses} == {
        (f"onboarding-{customer['customer_id']}", responses[0].json()["run_id"])
    }
