"""``GET /v1/processes``: runs from the visibility store, filtered, paged, tenant-scoped."""

from __future__ import annotations

import typing
import uuid
from typing import Any

import httpx

from api.routes.processes import RunStatus
from api.visibility import STATUSES, quoted
from tests.api.conftest import KeyedClient
from tests.api.test_onboardings import new_customer
from tests.api.test_tickets import new_ticket
from tests.conftest import eventually


async def runs(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    answer = await client.get("/v1/processes", params=params)
    assert answer.status_code == 200, answer.text
    page: dict[str, Any] = answer.json()
    return page


async def start_three_for(client: httpx.AsyncClient, customer_id: str) -> set[str]:
    """An onboarding and two tickets for ``customer_id``: their process ids."""
    started = [await client.post("/v1/onboardings", json=new_customer(customer_id=customer_id))]
    for _ in range(2):
        ticket = {**new_ticket(customer_id=customer_id, priority="low", skills=[]), "tier": None}
        started.append(await client.post("/v1/tickets", json=ticket))
    assert all(answer.status_code == 201 for answer in started), [a.text for a in started]
    return {answer.json()["process_id"] for answer in started}


async def test_a_customers_runs_are_listed_filtered_and_paged_with_tokens(
    as_key: KeyedClient,
) -> None:
    caller = as_key("tenant-a")
    customer_id = f"c-{uuid.uuid4().hex[:10]}"
    process_ids = await start_three_for(caller, customer_id)

    listed = await eventually(
        lambda: runs(caller, customer_id=customer_id),
        lambda page: len(page["runs"]) == 3,
    )
    assert {run["process_id"] for run in listed["runs"]} == process_ids
    onboarding = next(run for run in listed["runs"] if run["process"] == "onboarding")
    assert onboarding["customer_id"] == customer_id
    assert onboarding["status"] == "running"
    assert onboarding["closed_at"] is None
    assert onboarding["web_ui_url"].endswith(
        f"/namespaces/default/workflows/onboarding-{customer_id}%40a/{onboarding['run_id']}"
    )

    paged: list[str] = []
    token: str | None = None
    while True:
        params: dict[str, Any] = {"customer_id": customer_id, "limit": 1}
        if token is not None:
            params["page_token"] = token
        page = await runs(caller, **params)
        paged += [run["process_id"] for run in page["runs"]]
        token = page["next_page_token"]
        if token is None:
            break
    assert sorted(paged) == sorted(process_ids)

    tickets = await runs(caller, customer_id=customer_id, process="sla", status="running")
    assert {run["process"] for run in tickets["runs"]} == {"sla"}
    assert len(tickets["runs"]) == 2
    assert (await runs(caller, customer_id=customer_id, status="completed"))["runs"] == []
    later = await runs(caller, customer_id=customer_id, started_after="2999-01-01T00:00:00Z")
    assert later["runs"] == []
    earlier = await runs(caller, customer_id=customer_id, started_before="2000-01-01T00:00:00")
    assert earlier["runs"] == []


async def test_a_tenant_lists_only_its_own_runs(as_key: KeyedClient) -> None:
    customer_id = f"c-{uuid.uuid4().hex[:10]}"
    for tenant in ("tenant-a", "tenant-b"):
        answer = await as_key(tenant).post(
            "/v1/onboardings", json=new_customer(customer_id=customer_id)
        )
        assert answer.status_code == 201, answer.text

    everyone = await eventually(
        lambda: runs(as_key("caller"), customer_id=customer_id),
        lambda page: len(page["runs"]) == 2,
    )
    seen_by_a = await runs(as_key("tenant-a"), customer_id=customer_id)
    seen_by_b = await runs(as_key("tenant-b"), customer_id=customer_id)

    assert {run["process_id"] for run in everyone["runs"]} == {
        f"onboarding-{customer_id}@a",
        f"onboarding-{customer_id}@b",
    }
    assert [run["process_id"] for run in seen_by_a["runs"]] == [f"onboarding-{customer_id}@a"]
    assert [run["process_id"] for run in seen_by_b["runs"]] == [f"onboarding-{customer_id}@b"]


async def test_bad_filters_forged_tokens_and_another_querys_token_are_422(
    as_key: KeyedClient,
) -> None:
    caller = as_key("tenant-a")
    customer_id = f"c-{uuid.uuid4().hex[:10]}"
    await start_three_for(caller, customer_id)
    first = await eventually(
        lambda: runs(caller, customer_id=customer_id, limit=1),
        lambda page: page["next_page_token"] is not None,
    )

    refused = {
        "customer_id": await caller.get("/v1/processes", params={"customer_id": "x' OR 'a'='a"}),
        "stage": await caller.get("/v1/processes", params={"stage": "at risk"}),
        "process": await caller.get("/v1/processes", params={"process": "Sla\\"}),
        "status": await caller.get("/v1/processes", params={"status": "asleep"}),
        "started_before": await caller.get(
            "/v1/processes", params={"started_before": "1869564121"}
        ),
        "limit": await caller.get("/v1/processes", params={"limit": 201}),
        "page_token": await caller.get("/v1/processes", params={"page_token": "bm90LW91cnM="}),
    }
    other_filters = await caller.get(
        "/v1/processes", params={"page_token": first["next_page_token"]}
    )
    other_tenant = await as_key("tenant-b").get(
        "/v1/processes",
        params={"customer_id": customer_id, "limit": 1, "page_token": first["next_page_token"]},
    )

    for field, answer in refused.items():
        assert answer.status_code == 422, (field, answer.text)
        assert answer.json()["errors"][0]["loc"] == ["query", field]
    for answer in (other_filters, other_tenant):
        assert answer.status_code == 422, answer.text
        assert answer.json()["errors"][0]["loc"] == ["query", "page_token"]
    unknown = await caller.get("/v1/processes", params={"process": "bogus"})
    assert unknown.status_code == 422, unknown.text
    assert unknown.json()["errors"][0]["loc"] == ["query", "process"]
    assert "onboarding|sla|renewal|lead|approval|automation" in unknown.text  # the names there are


def test_a_value_cannot_leave_its_string_literal_and_every_status_is_offered() -> None:
    assert quoted("it's") == "'it\\'s'"
    assert quoted("back\\") == "'back\\\\'"
    assert set(typing.get_args(RunStatus)) == set(STATUSES)
