"""``/v1/renewals``, ``/v1/approvals`` and usage reports over real HTTP against the dev server."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from temporalio.client import Client

from crm.platform.settings import Settings
from tests.api.conftest import bearer
from tests.conftest import eventually
from tests.support.renewal import approval_input, approver, new_id
from workflows.approval import ApprovalWorkflow
from workflows.approval_types import approval_id


def renewal_body(**overrides: Any) -> dict[str, Any]:
    subscription_id = new_id("sub")
    return {
        "subscription_id": subscription_id,
        "customer_id": new_id("c"),
        "renewal_date": (datetime.now(UTC) + timedelta(days=200)).date().isoformat(),
        "plan": "growth",
        "annual_value": 24000,
        "owner": "csm-ana",
        "auto_renew": True,
        "company_name": "Acme Corp",
        "contact_name": "Ann Lee",
        "contact_email": f"ann.{subscription_id}@acme-corp.io",
        **overrides,
    }


async def test_renewal_starts_once_per_subscription_and_takes_renewal_events(
    api: httpx.AsyncClient,
) -> None:
    body = renewal_body()

    created = await api.post("/v1/renewals", json=body)
    again = await api.post("/v1/renewals", json=body)
    process_id = created.json()["process_id"]
    view = await eventually(
        lambda: api.get(f"/v1/processes/{process_id}"),
        lambda r: (r.json().get("state") or {}).get("stage") == "active",
    )
    moved = (datetime.now(UTC) + timedelta(days=230)).date().isoformat()
    event = await api.post(
        f"/v1/processes/{process_id}/events",
        json={"type": "renewal_date_changed", "data": {"renewal_date": moved}},
    )
    unknown = await api.post(f"/v1/processes/{process_id}/events", json={"type": "activated"})
    replanned = await eventually(
        lambda: api.get(f"/v1/processes/{process_id}"),
        lambda r: r.json()["state"]["details"]["renewal_date"].startswith(moved),
    )

    assert (created.status_code, again.status_code) == (201, 200)
    assert process_id == f"renewal-{body['subscription_id']}" == again.json()["process_id"]
    assert view.json()["process"] == "renewal"
    assert view.json()["state"]["waiting_for"] == [
        "renewed",
        "cancelled",
        "renewal_date_changed",
    ]
    assert event.status_code == 202
    assert unknown.status_code == 422
    assert set(replanned.json()["state"]["due"]) == {
        "reminder_90d",
        "reminder_60d",
        "usage_analysis",
        "reminder_30d",
        "reminder_7d",
        "renewal_date",
    }
    await api.post(f"/v1/processes/{process_id}/cancel")


async def test_renewal_without_a_known_contact_or_with_unknown_owner_is_refused(
    api: httpx.AsyncClient,
) -> None:
    no_contact = renewal_body(contact_email=None)
    unknown_owner = await api.post("/v1/renewals", json=renewal_body(owner="nobody"))
    past = await api.post("/v1/renewals", json=renewal_body(renewal_date="2020-01-01"))
    missing = await api.post("/v1/renewals", json=no_contact)

    assert unknown_owner.status_code == missing.status_code == past.status_code == 422
    assert unknown_owner.headers["content-type"] == "application/problem+json"
    assert "body.owner: Input should be 'mgr-hana'" in unknown_owner.json()["detail"]
    assert missing.json()["errors"][0]["loc"] == ["body", "contact_email"]


async def test_a_renewal_value_that_is_not_a_finite_number_is_a_422_and_starts_nothing(
    api: httpx.AsyncClient,
) -> None:
    answers = []
    for literal in ("1e400", "Infinity", "NaN"):
        body = renewal_body(annual_value=0)
        sent = json.dumps(body).replace('"annual_value": 0', f'"annual_value": {literal}')
        answer = await api.post(
            "/v1/renewals", content=sent, headers={"Content-Type": "application/json"}
        )
        run = await api.get(f"/v1/processes/renewal-{body['subscription_id']}")
        answers.append((answer, run.status_code))

    for answer, run_status in answers:
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["errors"][0]["loc"] == ["body", "annual_value"]
        assert run_status == 404


async def test_approver_lists_and_decides_approvals_others_cannot(
    api: httpx.AsyncClient, dev_client: Client, api_settings: Settings, api_keys: dict[str, str]
) -> None:
    def as_staff(staff: str) -> dict[str, str]:
        return bearer(api_keys["approver" if staff == "mgr-hana" else f"approver:{staff}"])

    request = approval_input(approver("mgr-hana", delegate_id="fin-ravi"))
    handle = await dev_client.start_workflow(
        ApprovalWorkflow.run,
        request,
        id=approval_id(request.subject_id),
        task_queue=api_settings.task_queue,
    )
    decision = f"/v1/approvals/{handle.id}/decision"

    pending = await eventually(
        lambda: api.get("/v1/approvals", headers=as_staff("mgr-hana")),
        lambda r: handle.id in [a["approval_id"] for a in r.json()],
    )
    not_hers = await api.get("/v1/approvals", headers=as_staff("fin-olga"))
    anonymous = await api.post(
        decision, json={"decision": "approve"}, headers={"Authorization": ""}
    )
    olga_decides = await api.post(
        decision, json={"decision": "approve"}, headers=as_staff("fin-olga")
    )
    service_decides = await api.post(decision, json={"decision": "approve"})
    wrong = await api.post(decision, json={"decision": "approve"}, headers=as_staff("csm-ben"))
    invalid = await api.post(decision, json={"decision": "maybe"}, headers=as_staff("mgr-hana"))
    approved = await api.post(
        decision, json={"decision": "approve", "comment": "ok"}, headers=as_staff("mgr-hana")
    )
    twice = await api.post(decision, json={"decision": "reject"}, headers=as_staff("fin-ravi"))
    unknown = await api.post(
        "/v1/approvals/approval-nope/decision",
        json={"decision": "approve"},
        headers=as_staff("mgr-hana"),
    )

    [mine] = [a for a in pending.json() if a["approval_id"] == handle.id]
    assert mine["subject"] == request.subject
    assert (mine["current_approver"], mine["delegate"]) == ("mgr-hana", "fin-ravi")
    assert handle.id not in [a["approval_id"] for a in not_hers.json()]
    assert anonymous.status_code == 401
    assert olga_decides.status_code == 403  # another approver's approval: refused
    assert service_decides.status_code == 403  # not an approver at all
    everyone = await api.get("/v1/approvals")  # support sees every pending approval
    assert everyone.status_code == 200
    assert wrong.status_code == 403
    assert wrong.json()["type"] == "urn:crmflow:problem:not-current-approver"
    assert not wrong.json()["detail"].startswith("NotCurrentApprover")  # said, not typed
    assert invalid.status_code == 422
    assert approved.status_code == 200
    assert approved.json() | {"decided_at": None} == {
        "approval_id": handle.id,
        "outcome": "approved",
        "decided_by": "mgr-hana",
        "on_behalf_of": None,
        "decided_at": None,
        "comment": "ok",
    }
    assert twice.status_code == 409
    assert twice.json()["type"] == "urn:crmflow:problem:approval-decided"
    assert unknown.status_code == 404
    assert (await handle.result()).outcome == "approved"


async def test_usage_reports_are_stored_per_subscription(api: httpx.AsyncClient) -> None:
    subscription_id = new_id("sub")
    url = f"/v1/subscriptions/{subscription_id}/usage"

    created = await api.post(url, json={"metric": "seats", "used": 45, "included": 50})
    invalid = await api.post(url, json={"metric": "seats", "used": 45, "included": 0})
    endless = await api.post(
        url,
        content='{"metric": "seats", "used": Infinity, "included": 50}',
        headers={"Content-Type": "application/json"},
    )
    listed = await api.get(url)

    assert created.status_code == 201
    assert invalid.status_code == 422
    assert endless.status_code == 422 and endless.json()["errors"][0]["loc"] == ["body", "used"]
    truth = await api.post(url, json={"metric": "seats", "used": True, "included": 50})
    assert truth.status_code == 422  # a number, not true
    assert [(u["metric"], u["used"], u["included"]) for u in listed.json()] == [
        ("seats", 45.0, 50.0)
    ]
