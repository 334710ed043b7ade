"""``GET /v1/processes/{id}/audit``: a process's steps, oldest first, a page at a time."""

from __future__ import annotations

from typing import Any

import httpx

from tests.api.conftest import KeyedClient
from tests.api.test_onboardings import new_customer
from tests.conftest import eventually


async def audit(client: httpx.AsyncClient, process_id: str, **params: Any) -> dict[str, Any]:
    answer = await client.get(f"/v1/processes/{process_id}/audit", params=params)
    assert answer.status_code == 200, answer.text
    page: dict[str, Any] = answer.json()
    return page


async def test_the_audit_trail_lists_the_steps_in_order_a_page_at_a_time(
    as_key: KeyedClient,
) -> None:
    caller = as_key("tenant-a")
    started = await caller.post("/v1/onboardings", json=new_customer())
    process_id = started.json()["process_id"]

    whole = await eventually(
        lambda: audit(caller, process_id),
        lambda page: any(s["step"].startswith("task:") for s in page["steps"]),
    )
    steps = [step["step"] for step in whole["steps"]]
    assert whole["next_page_token"] is None

    paged: list[str] = []
    token: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 1}
        if token is not None:
            params["page_token"] = token
        page = await audit(caller, process_id, **params)
        paged += [step["step"] for step in page["steps"]]
        token = page["next_page_token"]
        if token is None:
            break
    assert paged[: len(steps)] == steps


async def test_another_tenants_trail_is_a_404_and_a_forged_token_a_422(
    as_key: KeyedClient,
) -> None:
    started = await as_key("tenant-a").post("/v1/onboardings", json=new_customer())
    process_id = started.json()["process_id"]

    other = await as_key("tenant-b").get(f"/v1/processes/{process_id}/audit")
    forged = await as_key("tenant-a").get(
        f"/v1/processes/{process_id}/audit", params={"page_token": "bm90LW91cnM="}
    )

    assert other.status_code == 404
    assert forged.status_code == 422
    assert forged.json()["errors"][0]["loc"] == ["query", "page_token"]
