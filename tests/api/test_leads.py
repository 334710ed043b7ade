"""Lead qualification through the HTTP API on the real dev server, mail at a real SMTP sink.

The policy's default scoring rules apply. The leads write from a free-mail
address, so the enrichment provider knows no company and the score depends
only on the form: a director from a webinar is a medium lead (25 + 10).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from devstack.mailsink import MailSink, StoredMessage, read_messages
from processes.registry import NOT_BLANK
from tests.api.test_onboardings import PROBLEM_JSON, process, stage
from tests.conftest import eventually
from tests.support.lead import zone_at_local_hour


def new_lead(**overrides: Any) -> dict[str, Any]:
    lead_id = f"l-{uuid.uuid4().hex[:10]}"
    body = {
        "lead_id": lead_id,
        "email": f"lena.{lead_id}@gmail.com",
        "name": "Lena Vogel",
        "company": "Vogel Logistik",
        "title": "Director of Operations",
        "country": "de",
        "source": "webinar",
        # A zone where it is mid-morning now, so quiet hours do not hold the first email.
        "timezone": zone_at_local_hour(datetime.now(UTC), 10),
    }
    return body | overrides


async def test_lead_through_the_api_is_emailed_then_routed_to_a_rep_on_reply(
    api: httpx.AsyncClient, mail_sink: MailSink
) -> None:
    lead = new_lead()
    created = await api.post("/v1/leads", json=lead)
    assert created.status_code == 201, created.text
    started = created.json()
    assert started["process_id"] == f"lead-{lead['lead_id']}"
    again = await api.post("/v1/leads", json=lead)
    assert again.status_code == 200
    assert again.json() == started

    process_id = started["process_id"]
    view = await eventually(
        lambda: process(api, process_id),
        lambda v: stage(v) == "following_up" and "follow_up_1" in v["state"]["due"],
    )
    assert view["process"] == "lead"
    details = view["state"]["details"]
    assert (details["score"], details["grade"]) == (35, "medium")
    assert view["state"]["waiting_for"] == ["replied", "meeting_booked", "unsubscribed", "bounced"]

    async def lead_inbox() -> list[StoredMessage]:
        return read_messages(mail_sink.maildir, to=lead["email"])

    [first_touch] = await eventually(lead_inbox, lambda messages: len(messages) == 1)
    assert first_touch.subject == "Lena Vogel, thanks for your interest in crmflow"

    sent = await api.post(
        f"/v1/processes/{process_id}/events", json={"type": "replied", "data": {"via": "email"}}
    )
    assert sent.status_code == 202, sent.text
    done = await eventually(lambda: process(api, process_id), lambda v: v["status"] != "running")
    assert done["status"] == "completed"
    state = done["state"]
    assert state["outcome"] == "qualified"
    assert (state["details"]["score"], state["details"]["grade"]) == (65, "high")
    rep_id = state["details"]["owner_id"]
    assert rep_id in ("rep-eva", "rep-finn")  # Germany is in the emea territory

    tasks = (await api.get("/v1/tasks", params={"assignee": rep_id})).json()
    [task] = [t for t in tasks if t["process_id"] == process_id]
    assert (task["kind"], task["title"]) == ("call_lead", "Call Lena Vogel at Vogel Logistik")
    rep_mail = [
        m
        for m in read_messages(mail_sink.maildir)
        if m.header("X-Crmflow-Process") == process_id
        and m.header("X-Crmflow-Step") == "email_rep_assigned"
    ]
    assert [m.subject for m in rep_mail] == [
        "New high lead for you: Lena Vogel at Vogel Logistik (score 65)"
    ]
    assert len(read_messages(mail_sink.maildir, to=lead["email"])) == 1

    closed = await api.post(f"/v1/processes/{process_id}/events", json={"type": "replied"})
    assert closed.status_code == 409


async def test_unknown_lead_event_is_refused_and_the_run_goes_on(api: httpx.AsyncClient) -> None:
    process_id = (await api.post("/v1/leads", json=new_lead())).json()["process_id"]
    response = await api.post(f"/v1/processes/{process_id}/events", json={"type": "paid"})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    assert "unsubscribed" in response.json()["detail"]

    stopped = await api.post(f"/v1/processes/{process_id}/events", json={"type": "unsubscribed"})
    assert stopped.status_code == 202
    done = await eventually(lambda: process(api, process_id), lambda v: v["status"] != "running")
    assert done["state"]["outcome"] == "unsubscribed"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"email": "lena-at-vogel"}, "email"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"country": "Germany"}, "country"),
        ({"lead_id": "has spaces"}, "lead_id"),
        ({"source": ""}, "source"),
        ({"score": 99}, "score"),
        ({"name": "\u0085\u3000"}, "name"),  # only whitespace, as Unicode counts it
    ],
    ids=[
        "bad-email",
        "unknown-timezone",
        "bad-country",
        "bad-lead-id",
        "no-source",
        "extra",
        "blank-name",
    ],
)
async def test_invalid_lead_is_a_422_problem_naming_the_field(
    api: httpx.AsyncClient, change: dict[str, Any], field: str
) -> None:
    response = await api.post("/v1/leads", json=new_lead(**change))
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    assert field in response.json()["detail"]


async def test_the_published_schema_says_a_name_or_subject_needs_something_not_blank(
    api: httpx.AsyncClient,
) -> None:
    document = (await api.get("/openapi.json")).json()

    def field(path: str, name: str) -> dict[str, Any]:
        body = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        schema_name = body["schema"]["$ref"].rsplit("/", 1)[1]
        found: dict[str, Any] = document["components"]["schemas"][schema_name]["properties"][name]
        return found

    assert field("/v1/leads", "name")["pattern"] == NOT_BLANK
    assert field("/v1/tickets", "subject")["pattern"] == NOT_BLANK
