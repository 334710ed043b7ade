"""An event whose data the process could not use is refused with a 422, never dropped."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.api.test_renewals_and_approvals import renewal_body


def ticket_body() -> dict[str, Any]:
    return {
        "ticket_id": f"t-{uuid.uuid4().hex[:10]}",
        "customer_id": "c-42",
        "subject": "Export fails",
        "priority": "normal",
    }


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"type": "status_changed", "data": {"status": "archived"}}, "data.status"),
        ({"type": "status_changed", "data": {}}, "data.status"),
        ({"type": "priority_changed", "data": {"priority": "critical"}}, "data.priority"),
    ],
    ids=["unknown-status", "missing-status", "unknown-priority"],
)
async def test_ticket_event_with_unusable_data_is_a_422(
    api: httpx.AsyncClient, event: dict[str, Any], field: str
) -> None:
    started = await api.post("/v1/tickets", json=ticket_body())
    assert started.status_code == 201, started.text
    process_id = started.json()["process_id"]
    response = await api.post(f"/v1/processes/{process_id}/events", json=event)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in response.json()["detail"]
    good = {"type": "priority_changed", "data": {"priority": "high"}}
    assert (await api.post(f"/v1/processes/{process_id}/events", json=good)).status_code == 202


async def test_renewal_date_that_is_not_a_date_is_a_422(api: httpx.AsyncClient) -> None:
    started = await api.post("/v1/renewals", json=renewal_body())
    assert started.status_code == 201, started.text
    process_id = started.json()["process_id"]
    # A number is no date to the workflow either, though str(20270101) would parse.
    for data in ({"renewal_date": "next spring"}, {}, {"renewal_date": 20270101}):
        response = await api.post(
            f"/v1/processes/{process_id}/events",
            json={"type": "renewal_date_changed", "data": data},
        )
        assert response.status_code == 422, response.text
        assert "data.renewal_date" in response.json()["detail"]


async def test_renewed_with_unusable_terms_is_a_422(api: httpx.AsyncClient) -> None:
    started = await api.post("/v1/renewals", json=renewal_body())
    assert started.status_code == 201, started.text
    process_id = started.json()["process_id"]
    for data, field in (
        ({"plan": "platinum"}, "data.plan"),
        ({"plan": ""}, "data.plan"),
        ({"annual_value": "a lot"}, "data.annual_value"),
        ({"annual_value": -5}, "data.annual_value"),
        ({"annual_value": True}, "data.annual_value"),
    ):
        response = await api.post(
            f"/v1/processes/{process_id}/events", json={"type": "renewed", "data": data}
        )
        assert response.status_code == 422, (data, response.text)
        assert field in response.json()["detail"]
    signed = {"type": "renewed", "data": {"plan": "enterprise", "annual_value": 30000}}
    assert (await api.post(f"/v1/processes/{process_id}/events", json=signed)).status_code == 202


async def test_an_event_happened_when_it_says_or_when_received_but_never_in_the_future(
    api: httpx.AsyncClient,
) -> None:
    started = await api.post("/v1/tickets", json=ticket_body())
    assert started.status_code == 201, started.text
    events = f"/v1/processes/{started.json()['process_id']}/events"
    ahead = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    for occurred_at in (ahead, "2026-12-06T10:00:00"):  # the future; no offset
        response = await api.post(
            events, json={"type": "customer_replied", "occurred_at": occurred_at}
        )
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert "occurred_at" in json.dumps(response.json())

    before = datetime.now(UTC)
    earlier = before - timedelta(minutes=3)
    sent = {"type": "agent_replied", "data": {"public": True}, "occurred_at": earlier.isoformat()}
    assert (await api.post(events, json=sent)).status_code == 202
    assert (await api.post(events, json={"type": "customer_replied"})).status_code == 202
    after = datetime.now(UTC)

    audit = f"/v1/processes/{started.json()['process_id']}/audit"
    for _ in range(50):
        steps = {s["step"]: s["detail"] for s in (await api.get(audit)).json()["steps"]}
        if "event_2:customer_replied" in steps:
            break
        await asyncio.sleep(0.1)
    assert datetime.fromisoformat(steps["event_1:agent_replied"]["occurred_at"]) == earlier
    received = datetime.fromisoformat(steps["event_2:customer_replied"]["occurred_at"])
    assert before <= received <= after
