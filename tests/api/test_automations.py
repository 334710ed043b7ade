"""Automations through the HTTP API: definitions, versions, states, tenants, record events.

Against the real dev server with the worker running, as a CRM would use
them: an admin defines and activates an automation, the system of record
posts record events, and each enrolled record gets a run whose id is the
business key ``automation-{id}-{object}-{record}[@tenant]``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import yaml
from sqlmodel import select
from temporalio.client import Client, WorkflowExecutionStatus

from crm.store.db import Database
from crm.store.models import AuditEntry
from tests.api.conftest import KeyedClient
from tests.conftest import eventually
from workflows.automation_types import automation_run_id
from workflows.common import AUTOMATION_ID, AUTOMATION_VERSION, PROCESS, RECORD_ID, STAGE

PROBLEM_JSON = "application/problem+json"


def definition(automation_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    """A won-deal automation whose run waits up to 30 days for the deal's next update."""
    document: dict[str, Any] = {
        "id": automation_id or f"won-{uuid.uuid4().hex[:10]}",
        "name": "Follow up won deals",
        "object": "deal",
        "fields": {"name": "string", "stage": "string", "amount": "double", "owner_id": "string"},
        "trigger": {
            "types": ["updated"],
            "changed": ["stage"],
            "condition": 'record.stage == "won"',
        },
        "steps": [
            {
                "id": "wait_for_update",
                "wait": {
                    "event": {"types": ["updated"]},
                    "timeout": {"amount": 30, "unit": "days"},
                },
            },
            {"id": "done", "end": {"outcome": "followed_up"}},
        ],
    }
    return document | overrides


def won_event(record_id: str, **overrides: Any) -> dict[str, Any]:
    """A deal ``record_id`` moving to won."""
    event = {
        "event_id": f"ev-{uuid.uuid4().hex}",
        "object": "deal",
        "record_id": record_id,
        "type": "updated",
        "occurred_at": datetime.now(UTC).isoformat(),
        "record": {"name": "Globex renewal", "stage": "won", "amount": 12000.0},
        "previous": {"stage": "negotiation"},
    }
    return event | overrides


def new_record_id() -> str:
    return f"d-{uuid.uuid4().hex[:10]}"


async def active_automation(admin: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    """An automation created and activated by ``admin``; its definition."""
    document = definition(**overrides)
    created = await admin.post("/v1/automations", json=document)
    assert created.status_code == 201, created.text
    activated = await admin.post(f"/v1/automations/{document['id']}/activate")
    assert activated.status_code == 200, activated.text
    assert activated.json()["state"] == "active"
    return document


async def test_admin_creates_an_automation_from_yaml_and_each_change_is_a_new_version(
    as_key: KeyedClient,
) -> None:
    admin = as_key("admin")
    document = definition()
    created = await admin.post(
        "/v1/automations",
        content=yaml.safe_dump(document),
        headers={"Content-Type": "application/yaml"},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["id"], body["version"], body["state"]) == (document["id"], 1, "draft")
    assert body["active_version"] is None
    assert body["definition"] == document
    assert body["version_created_by"] == "admin-test"

    same = await admin.post("/v1/automations", json=document)
    assert same.status_code == 200
    assert same.json()["version"] == 1

    renamed = await admin.post("/v1/automations", json=document | {"name": "Won deals v2"})
    assert renamed.status_code == 201
    assert (renamed.json()["version"], renamed.json()["latest_version"]) == (2, 2)

    versions = (await admin.get(f"/v1/automations/{document['id']}/versions")).json()
    assert [v["version"] for v in versions] == [1, 2]
    first = (await admin.get(f"/v1/automations/{document['id']}", params={"version": 1})).json()
    assert first["definition"]["name"] == "Follow up won deals"
    latest = (await admin.get(f"/v1/automations/{document['id']}")).json()
    assert (latest["version"], latest["name"]) == (2, "Won deals v2")
    listed = (await admin.get("/v1/automations")).json()
    assert document["id"] in [a["id"] for a in listed]
    missing = await admin.get(f"/v1/automations/{document['id']}", params={"version": 3})
    assert missing.status_code == 404


async def test_an_http_step_aimed_inside_the_network_is_a_422_on_submit(
    as_key: KeyedClient,
) -> None:
    """As a webhook endpoint's URL is: the address is refused before anything is stored."""
    admin = as_key("admin")
    aimed = definition()
    aimed["steps"].insert(
        1, {"id": "notify", "http": {"url": "http://169.254.169.254/latest/meta-data"}}
    )
    for path, body, pointer in (
        ("/v1/automations/validate", aimed, "/steps/1/http/url"),
        ("/v1/automations", aimed, "/steps/1/http/url"),
        (
            "/v1/automations/preview",
            {"definition": aimed, "record_id": "d-1", "record": {"stage": "won"}},
            "/definition/steps/1/http/url",
        ),
    ):
        response = await admin.post(path, json=body)
        assert response.status_code == 422, response.text
        [error] = response.json()["errors"]
        assert error["pointer"] == pointer
        assert "169.254.169.254 is an address inside the network" in error["msg"]
    assert (await admin.get(f"/v1/automations/{aimed['id']}")).status_code == 404


async def test_a_bad_definition_is_a_422_pointing_at_each_mistake_and_nothing_is_stored(
    as_key: KeyedClient,
) -> None:
    admin = as_key("admin")
    bad = definition()
    bad["steps"][0]["wait"]["on_timeout"] = "nowhere"
    bad["trigger"]["condition"] = "record.colour == 1"
    for path in ("/v1/automations/validate", "/v1/automations"):
        response = await admin.post(path, json=bad)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == PROBLEM_JSON
        problem = response.json()
        assert problem["type"] == "urn:crmflow:problem:validation-error"
        pointers = {error["pointer"] for error in problem["errors"]}
        assert {"/steps/0/wait/on_timeout", "/trigger/condition"} <= pointers, problem
        located = next(e for e in problem["errors"] if e["pointer"] == "/steps/0/wait/on_timeout")
        assert located["loc"] == ["body", "steps", 0, "wait", "on_timeout"]
    assert (await admin.get(f"/v1/automations/{bad['id']}")).status_code == 404

    good = await admin.post("/v1/automations/validate", json=definition())
    assert (good.status_code, good.json()) == (200, {"valid": True})
    broken = await admin.post(
        "/v1/automations", content="id: [", headers={"Content-Type": "application/yaml"}
    )
    assert broken.status_code == 422
    assert broken.json()["errors"][0]["pointer"] == ""
    wrong_type = await admin.post(
        "/v1/automations", content="id: x", headers={"Content-Type": "text/plain"}
    )
    assert wrong_type.status_code == 415
    assert wrong_type.json()["type"] == "urn:crmflow:problem:unsupported-media-type"


async def test_the_definition_schema_is_published_to_admins_and_support(
    as_key: KeyedClient,
) -> None:
    for key in ("admin", "support"):
        response = await as_key(key).get("/v1/automations/schema")
        assert response.status_code == 200
        assert {"id", "object", "trigger", "steps"} <= set(response.json()["properties"])
    assert (await as_key("service").get("/v1/automations/schema")).status_code == 403


async def test_an_automation_activates_pauses_and_once_archived_stays_archived(
    as_key: KeyedClient,
) -> None:
    admin = as_key("admin")
    document = definition()
    base = f"/v1/automations/{document['id']}"
    assert (await admin.post("/v1/automations", json=document)).status_code == 201
    never_active = await admin.post(f"{base}/pause")
    assert never_active.status_code == 409
    assert never_active.json()["type"] == "urn:crmflow:problem:automation-draft"

    await admin.post("/v1/automations", json=document | {"name": "second"})
    first = await admin.post(f"{base}/activate", json={"version": 1})
    assert (first.json()["state"], first.json()["active_version"]) == ("active", 1)
    versions = (await admin.get(f"{base}/versions")).json()
    assert [v["active"] for v in versions] == [True, False]
    unknown = await admin.post(f"{base}/activate", json={"version": 9})
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["pointer"] == "/version"

    paused = await admin.post(f"{base}/pause")
    assert (paused.json()["state"], paused.json()["active_version"]) == ("paused", 1)
    latest = await admin.post(f"{base}/activate")
    assert (latest.json()["state"], latest.json()["active_version"]) == ("active", 2)

    archived = await admin.post(f"{base}/archive")
    assert archived.json()["state"] == "archived"
    for action in ("activate", "pause"):
        refused = await admin.post(f"{base}/{action}")
        assert refused.status_code == 409
        assert refused.json()["type"] == "urn:crmflow:problem:automation-archived"
    new_version = await admin.post("/v1/automations", json=document | {"name": "third"})
    assert new_version.status_code == 409
    assert (await admin.post("/v1/automations/nobody-here/archive")).status_code == 404


async def test_a_tenant_sees_and_manages_only_its_own_automations(as_key: KeyedClient) -> None:
    document = definition()
    automation_id = document["id"]
    assert (await as_key("admin-a").post("/v1/automations", json=document)).status_code == 201

    for key in ("admin-b", "admin", "support"):
        client = as_key(key)
        assert (await client.get(f"/v1/automations/{automation_id}")).status_code == 404
        assert automation_id not in [a["id"] for a in (await client.get("/v1/automations")).json()]
    refused = await as_key("admin-b").post(f"/v1/automations/{automation_id}/activate")
    assert refused.status_code == 404
    read = await as_key("tenant-a").get(f"/v1/automations/{automation_id}")
    assert read.status_code == 200

    # The same id in another tenant is another automation, with versions of its own.
    other = await as_key("admin-b").post("/v1/automations", json=document | {"name": "B's"})
    assert (other.status_code, other.json()["version"]) == (201, 1)
    mine = (await as_key("admin-a").get(f"/v1/automations/{automation_id}")).json()
    assert mine["name"] == "Follow up won deals"


async def test_support_reads_but_does_not_manage_and_service_does_not_read(
    as_key: KeyedClient,
) -> None:
    document = definition()
    assert (await as_key("admin").post("/v1/automations", json=document)).status_code == 201
    support = as_key("support")
    assert (await support.get(f"/v1/automations/{document['id']}")).status_code == 200
    for path in ("", "/validate"):
        assert (await support.post(f"/v1/automations{path}", json=document)).status_code == 403
    refused = await support.post(f"/v1/automations/{document['id']}/activate")
    assert refused.status_code == 403
    assert (await as_key("service").get("/v1/automations")).status_code == 403
    assert (
        await as_key("admin").post("/v1/records/events", json=won_event("d-1"))
    ).status_code == 403


async def test_a_record_event_enrols_the_record_in_a_run_with_its_search_attributes(
    as_key: KeyedClient, dev_client: Client
) -> None:
    document = await active_automation(as_key("admin-a"))
    record_id = new_record_id()
    event = won_event(record_id)
    response = await as_key("tenant-a").post("/v1/records/events", json=event)
    assert response.status_code == 202, response.text
    run_id = automation_run_id(document["id"], "deal", record_id, "a")
    assert run_id == f"automation-{document['id']}-deal-{record_id}@a"
    assert response.json() == {
        "event_id": event["event_id"],
        "enrolled": [run_id],
        "delivered": [],
        "ended": [],
        "skipped": [],
        "errors": [],
    }

    description = await dev_client.get_workflow_handle(run_id).describe()
    assert description.workflow_type == "AutomationWorkflow"
    assert description.status == WorkflowExecutionStatus.RUNNING
    attributes = description.typed_search_attributes
    assert attributes.get(PROCESS) == "automation"
    assert attributes.get(AUTOMATION_ID) == document["id"]
    assert attributes.get(AUTOMATION_VERSION) == "1"
    assert attributes.get(RECORD_ID) == record_id
    assert attributes.get(STAGE) is not None
    assert await description.memo_value("tenant", None) == "a"

    # An event the trigger does not take still reaches the run, which listens.
    renamed = won_event(
        record_id, record={"name": "Globex", "stage": "won"}, previous={"name": "Globex renewal"}
    )
    delivered = (await as_key("tenant-a").post("/v1/records/events", json=renamed)).json()
    assert (delivered["enrolled"], delivered["delivered"]) == ([], [run_id])
    # Another tenant's event for the same record id touches nothing of tenant a.
    elsewhere = (
        await as_key("tenant-b").post("/v1/records/events", json=won_event(record_id))
    ).json()
    assert (elsewhere["enrolled"], elsewhere["delivered"]) == ([], [])


async def test_the_same_event_twice_gets_the_same_answer_and_starts_one_run(
    as_key: KeyedClient, dev_client: Client
) -> None:
    document = await active_automation(as_key("admin"))
    record_id = new_record_id()
    event = won_event(record_id)
    service = as_key("service")
    first = await service.post("/v1/records/events", json=event)
    run_id = automation_run_id(document["id"], "deal", record_id)
    assert first.json()["enrolled"] == [run_id]
    again = await service.post("/v1/records/events", json=event)
    assert (again.status_code, again.json()) == (202, first.json())
    assert await runs_of(dev_client, run_id) == 1

    reused = await service.post("/v1/records/events", json=event | {"record": {"stage": "lost"}})
    assert reused.status_code == 409
    assert reused.json()["type"] == "urn:crmflow:problem:event-id-reused"

    # A new event that triggers again finds the run going and is sent to it.
    later = (await service.post("/v1/records/events", json=won_event(record_id))).json()
    assert (later["enrolled"], later["delivered"]) == ([], [run_id])


async def test_concurrent_duplicates_of_an_event_start_one_run_and_get_one_answer(
    as_key: KeyedClient, dev_client: Client
) -> None:
    document = await active_automation(as_key("admin"))
    record_id = new_record_id()
    event = won_event(record_id)
    service = as_key("service")
    responses = await asyncio.gather(
        *(service.post("/v1/records/events", json=event) for _ in range(5))
    )
    assert [r.status_code for r in responses] == [202] * 5
    answers = [r.json() for r in responses]
    run_id = automation_run_id(document["id"], "deal", record_id)
    assert answers == [answers[0]] * 5
    assert answers[0]["enrolled"] == [run_id]
    assert await runs_of(dev_client, run_id) == 1


async def test_a_trigger_condition_failing_on_the_data_is_reported_not_a_server_error(
    as_key: KeyedClient,
) -> None:
    document = await active_automation(
        as_key("admin"),
        trigger={"types": ["updated"], "condition": "record.amount > 1000.0"},
    )
    event = won_event(new_record_id(), record={"stage": "won", "amount": "a lot"})
    response = await as_key("service").post("/v1/records/events", json=event)
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["enrolled"] == []
    [error] = answer["errors"]
    assert error["automation_id"] == document["id"]
    assert error["message"]


async def test_a_paused_automation_enrols_nobody_but_its_runs_still_hear_their_events(
    as_key: KeyedClient,
) -> None:
    admin = as_key("admin")
    document = await active_automation(admin)
    enrolled_id, later_id = new_record_id(), new_record_id()
    service = as_key("service")
    started = (await service.post("/v1/records/events", json=won_event(enrolled_id))).json()
    assert len(started["enrolled"]) == 1
    assert (await admin.post(f"/v1/automations/{document['id']}/pause")).status_code == 200

    nobody = (await service.post("/v1/records/events", json=won_event(later_id))).json()
    assert (nobody["enrolled"], nobody["delivered"]) == ([], [])
    heard = (await service.post("/v1/records/events", json=won_event(enrolled_id))).json()
    assert heard["delivered"] == started["enrolled"]


async def test_a_deleted_record_ends_its_run_unless_the_automation_waits_for_deletions(
    as_key: KeyedClient, dev_client: Client, database: Database
) -> None:
    admin, service = as_key("admin"), as_key("service")
    ends = await active_automation(admin)  # waits for the deal's next update
    waits = await active_automation(
        admin,
        steps=[
            {
                "id": "wait_for_deletion",
                "wait": {
                    "event": {"types": ["deleted"]},
                    "timeout": {"amount": 30, "unit": "days"},
                },
            },
            {"id": "archived", "end": {"outcome": "deleted"}},
        ],
    )
    record_id = new_record_id()
    started = (await service.post("/v1/records/events", json=won_event(record_id))).json()
    ended_run = automation_run_id(ends["id"], "deal", record_id)
    heard_run = automation_run_id(waits["id"], "deal", record_id)
    assert sorted(started["enrolled"]) == sorted([ended_run, heard_run])

    async def stage(run_id: str) -> str | None:
        return (
            await dev_client.get_workflow_handle(run_id).describe()
        ).typed_search_attributes.get(STAGE)

    await eventually(lambda: stage(ended_run), lambda now: now == "wait_for_update")
    await eventually(lambda: stage(heard_run), lambda now: now == "wait_for_deletion")
    deleted = won_event(record_id, type="deleted", previous={})
    answer = (await service.post("/v1/records/events", json=deleted)).json()
    twice = won_event(record_id, type="deleted", previous={})  # at once, as the run ends
    assert (await service.post("/v1/records/events", json=twice)).json()["ended"] == []

    assert (answer["ended"], answer["delivered"], answer["enrolled"]) == (
        [ended_run],
        [heard_run],
        [],
    )
    cancelled = dev_client.get_workflow_handle(ended_run)

    async def status() -> WorkflowExecutionStatus | None:
        return (await cancelled.describe()).status

    await eventually(status, lambda now: now == WorkflowExecutionStatus.CANCELED)
    state = await cancelled.query("state")
    assert state["outcome"] == "cancelled", state
    [ending] = await database.all(
        select(AuditEntry).where(AuditEntry.process_id == ended_run, AuditEntry.step == "outcome")
    )
    assert ending.detail["reason"] == f"the record was deleted (event {deleted['event_id']})"
    result = await dev_client.get_workflow_handle(heard_run).result()
    assert result["outcome"] == "deleted"
    again = (await service.post("/v1/records/events", json=deleted)).json()
    assert again == answer  # a repeat answers as the first time and ends nothing more
    # Deleted again (another event): both runs are over, and nothing is ended or heard.
    later = won_event(record_id, type="deleted", previous={})
    over = (await service.post("/v1/records/events", json=later)).json()
    assert (over["ended"], over["delivered"], over["enrolled"]) == ([], [], [])
    # A trigger on deletions enrols a deleted record that has no run going.
    on_deletion = await active_automation(admin, trigger={"types": ["deleted"]})
    gone_id = new_record_id()
    gone = won_event(gone_id, type="deleted", previous={})
    enrolled = (await service.post("/v1/records/events", json=gone)).json()
    assert enrolled["enrolled"] == [automation_run_id(on_deletion["id"], "deal", gone_id)]
    assert enrolled["ended"] == []


async def test_a_record_whose_run_ended_does_not_enrol_again_unless_the_definition_lets_it(
    as_key: KeyedClient, dev_client: Client
) -> None:
    service = as_key("service")
    once = await active_automation(as_key("admin"))
    again_later = await active_automation(
        as_key("admin"), enrollment={"reenroll": True, "after": {"amount": 1, "unit": "days"}}
    )
    always = await active_automation(as_key("admin"), enrollment={"reenroll": True})
    record_id = new_record_id()
    first = (await service.post("/v1/records/events", json=won_event(record_id))).json()
    assert len(first["enrolled"]) == 3
    for run_id in first["enrolled"]:
        await dev_client.get_workflow_handle(run_id).terminate(reason="test: the run ends")

    second = (await service.post("/v1/records/events", json=won_event(record_id))).json()
    reasons = {skip["automation_id"]: skip["reason"] for skip in second["skipped"]}
    assert reasons == {once["id"]: "ended", again_later["id"]: "too-soon"}
    assert second["enrolled"] == [automation_run_id(always["id"], "deal", record_id)]


async def test_an_admin_enrols_records_by_hand_in_an_active_automation(
    as_key: KeyedClient, dev_client: Client
) -> None:
    admin = as_key("admin-a")
    document = await active_automation(admin)
    first, second = new_record_id(), new_record_id()
    records = [
        {"record_id": first, "record": {"stage": "open"}},
        {"record_id": second},
    ]
    url = f"/v1/automations/{document['id']}/enroll"
    response = await admin.post(url, json={"records": records})
    assert response.status_code == 200, response.text
    runs = [automation_run_id(document["id"], "deal", r, "a") for r in (first, second)]
    assert response.json() == {"enrolled": runs, "skipped": []}
    description = await dev_client.get_workflow_handle(runs[0]).describe()
    assert description.typed_search_attributes.get(RECORD_ID) == first

    again = (await admin.post(url, json={"records": records[:1]})).json()
    assert again == {"enrolled": [], "skipped": [{"record_id": first, "reason": "running"}]}
    too_many = await admin.post(url, json={"records": [{"record_id": "x"}] * 501})
    assert too_many.status_code == 422
    await admin.post(f"/v1/automations/{document['id']}/pause")
    paused = await admin.post(url, json={"records": records})
    assert paused.status_code == 409
    assert paused.json()["type"] == "urn:crmflow:problem:automation-not-active"


async def test_a_record_event_that_does_not_fit_is_a_422_naming_the_field(
    as_key: KeyedClient,
) -> None:
    service = as_key("service")
    for field, value in (
        ("type", "moved"),
        ("occurred_at", "2026-01-01T10:00:00"),
        ("record_id", "d@1"),
    ):
        response = await service.post("/v1/records/events", json=won_event("d-1") | {field: value})
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["loc"] == ["body", field]


async def test_a_record_event_with_a_number_that_is_not_finite_is_a_422_naming_the_field(
    as_key: KeyedClient,
) -> None:
    service = as_key("service")
    answers = []
    for record, previous in (
        ('{"seats": NaN}', "{}"),
        ('{"seats": 1e400}', "{}"),
        ('{"lines": [{"price": -Infinity}]}', "{}"),
        ('{"seats": 3}', '{"seats": Infinity}'),
    ):
        event = won_event(new_record_id(), record={}, previous={})
        sent = (
            json.dumps(event)
            .replace('"record": {}', f'"record": {record}')
            .replace('"previous": {}', f'"previous": {previous}')
        )
        answer = await service.post(
            "/v1/records/events", content=sent, headers={"Content-Type": "application/json"}
        )
        answers.append(answer)

    for answer in answers:
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"] == PROBLEM_JSON
    assert [answer.json()["errors"][0]["loc"] for answer in answers] == [
        ["body", "record", "seats"],
        ["body", "record", "seats"],
        ["body", "record", "lines"],
        ["body", "previous", "seats"],
    ]
    admin = as_key("admin")
    document = await active_automation(admin)
    for path, body, loc in (
        (
            f"/v1/automations/{document['id']}/enroll",
            '{"records": [{"record_id": "d-1", "record": {"amount": NaN}}]}',
            ["body", "records", 0, "record", "amount"],
        ),
        (
            f"/v1/automations/{document['id']}/preview",
            '{"record_id": "d-1", "record": {"amount": Infinity}}',
            ["body", "record", "amount"],
        ),
    ):
        answer = await admin.post(path, content=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == 422, answer.text
        assert answer.json()["errors"][0]["loc"] == loc
    assert "-inf at [0].price" in answers[2].json()["errors"][0]["msg"]


async def test_a_record_event_from_the_future_is_a_422_on_occurred_at(
    as_key: KeyedClient,
) -> None:
    service = as_key("service")
    now = datetime.now(UTC)

    future = await service.post(
        "/v1/records/events",
        json=won_event(new_record_id(), occurred_at="2099-01-01T00:00:00+00:00"),
    )
    an_hour = await service.post(
        "/v1/records/events",
        json=won_event(new_record_id(), occurred_at=(now + timedelta(hours=1)).isoformat()),
    )
    a_fast_clock = await service.post(
        "/v1/records/events",
        json=won_event(new_record_id(), occurred_at=(now + timedelta(seconds=30)).isoformat()),
    )

    before_utc = await service.post(  # east of UTC on 0001-01-01: before any UTC instant
        "/v1/records/events",
        json=won_event(new_record_id(), occurred_at="0001-01-01T00:00:00+01:00"),
    )

    for answer in (future, an_hour, before_utc):
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"] == PROBLEM_JSON
        assert answer.json()["errors"][0]["loc"] == ["body", "occurred_at"]
    assert "is in the future" in future.json()["detail"]
    assert "within the years 1 to 9999 in UTC" in before_utc.text
    assert a_fast_clock.status_code == 202, a_fast_clock.text


async def runs_of(client: Client, workflow_id: str) -> int:
    """How many runs the workflow id has had (visibility may lag a moment)."""
    query = f"WorkflowId = {json.dumps(workflow_id)}"
    for _ in range(50):
        count = (await client.count_workflows(query)).count
        if count:
            return count
        await asyncio.sleep(0.1)
    return 0
