"""``GET /v1/customers/{id}/timeline``: every step of a customer's processes, in order."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.api.conftest import KeyedClient
from tests.api.test_onboardings import new_customer
from tests.api.test_tickets import new_ticket
from tests.conftest import eventually


async def timeline(client: httpx.AsyncClient, customer_id: str, **params: Any) -> dict[str, Any]:
    answer = await client.get(f"/v1/customers/{customer_id}/timeline", params=params)
    assert answer.status_code == 200, answer.text
    page: dict[str, Any] = answer.json()
    return page


def processes_in(page: dict[str, Any]) -> set[str]:
    return {entry["process_id"] for entry in page["entries"]}


async def test_the_timeline_holds_both_processes_of_a_customer_in_order_a_page_at_a_time(
    as_key: KeyedClient,
) -> None:
    caller = as_key("tenant-a")
    customer_id = f"c-{uuid.uuid4().hex[:10]}"
    onboarding = await caller.post("/v1/onboardings", json=new_customer(customer_id=customer_id))
    onboarding_id = onboarding.json()["process_id"]
    await eventually(
        lambda: timeline(caller, customer_id), lambda page: onboarding_id in processes_in(page)
    )
    ticket_body = {**new_ticket(customer_id=customer_id, priority="low", skills=[]), "tier": None}
    ticket = await caller.post("/v1/tickets", json=ticket_body)
    ticket_id = ticket.json()["process_id"]

    whole = await eventually(
        lambda: timeline(caller, customer_id),
        lambda page: processes_in(page) == {onboarding_id, ticket_id},
    )
    entries = whole["entries"]
    assert whole["customer_id"] == customer_id and whole["next_page_token"] is None
    assert entries[0]["process_id"] == onboarding_id
    assert entries[0]["process"] == "onboarding"
    assert [e["recorded_at"] for e in entries] == sorted(e["recorded_at"] for e in entries)
    first_ticket_step = next(i for i, e in enumerate(entries) if e["process_id"] == ticket_id)
    assert entries[first_ticket_step]["process"] == "sla"

    paged: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 1}
        if token is not None:
            params["page_token"] = token
        page = await timeline(caller, customer_id, **params)
        paged += page["entries"]
        token = page["next_page_token"]
        if token is None:
            break
    assert paged[: len(entries)] == entries


async def test_another_tenants_customer_and_an_unknown_one_have_empty_timelines(
    as_key: KeyedClient,
) -> None:
    customer_id = f"c-{uuid.uuid4().hex[:10]}"
    await as_key("tenant-a").post("/v1/onboardings", json=new_customer(customer_id=customer_id))
    await eventually(
        lambda: timeline(as_key("tenant-a"), customer_id), lambda page: len(page["entries"]) > 0
    )

    other_tenant = await timeline(as_key("tenant-b"), customer_id)
    unknown = await timeline(as_key("tenant-a"), f"c-{uuid.uuid4().hex[:10]}")

    assert other_tenant["entries"] == [] and other_tenant["next_page_token"] is None
    assert unknown["entries"] == []


async def test_a_forged_token_and_a_customer_id_no_key_can_be_are_422(
    as_key: KeyedClient,
) -> None:
    caller = as_key("tenant-a")

    forged = await caller.get("/v1/customers/c-1/timeline", params={"page_token": "bm90LW91cnM="})
    bad_id = await caller.get("/v1/customers/c%27%20OR%201=1/timeline")

    assert forged.status_code == 422
    assert forged.json()["errors"][0]["loc"] == ["query", "page_token"]
    assert bad_id.status_code == 422
    assert bad_id.json()["errors"][0]["loc"] == ["path", "customer_id"]
