"""Ticket SLA through the HTTP API on the real dev server, with mail at a real SMTP sink.

The policy file gives an ``express`` tier second-long targets, so the warning,
the breach and the manager escalation happen in real time within seconds.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from crm.platform.settings import Settings
from crm.policy import Policy, load_policy
from crm.store.db import Database
from devstack.mailsink import MailSink, StoredMessage, read_messages
from tests.conftest import eventually
from tests.support.sla import outcome_of

PROBLEM_JSON = "application/problem+json"
EXPRESS_POLICY = """\
sla:
  tiers:
    express:
      targets:
        urgent: {first_response: 2s, resolution: 60s, around_the_clock: true}
  calendars:
    manila: {timezone: Asia/Manila}
  policies:
    - name: chat
      when: {tags: [chat]}
      clocks:
        next_reply: {targets: {urgent: 1h, high: 2h}}
        resolution: {targets: {urgent: 8h, high: 8h}}
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yml"
    path.write_text(EXPRESS_POLICY, encoding="utf-8")
    return path


@pytest.fixture
def policy(policy_file: Path) -> Policy:
    return load_policy(policy_file)


@pytest.fixture
def api_settings(
    settings: Settings, dev_client: Client, policy_file: Path, api_keys: dict[str, str]
) -> Settings:
    return settings.model_copy(
        update={
            "temporal_address": dev_client.service_client.config.target_host,
            "policy_file": policy_file,
            "api_keys_file": Path(api_keys["file"]),
        }
    )


def new_ticket(**overrides: Any) -> dict[str, Any]:
    body = {
        "ticket_id": f"t-{uuid.uuid4().hex[:10]}",
        "customer_id": "c-42",
        "subject": "Checkout fails with a 500 error",
        "priority": "urgent",
        "timezone": "Europe/Stockholm",
        "tier": "express",
        "skills": ["technical"],
    }
    return body | overrides


async def view(api: httpx.AsyncClient, process_id: str) -> dict[str, Any]:
    response = await api.get(f"/v1/processes/{process_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def mail_of(maildir: Path, process_id: str) -> list[StoredMessage]:
    return [m for m in read_messages(maildir) if m.header("X-Crmflow-Process") == process_id]


async def test_ticket_through_the_api_warns_breaches_and_escalates_by_email(
    api: httpx.AsyncClient, mail_sink: MailSink, database: Database
) -> None:
    ticket = new_ticket()
    created = await api.post("/v1/tickets", json=ticket)
    assert created.status_code == 201, created.text
    started = created.json()
    process_id = started["process_id"]
    assert process_id == f"sla-{ticket['ticket_id']}"
    again = await api.post("/v1/tickets", json=ticket)
    assert again.status_code == 200
    assert again.json() == started

    # 75 % of 2 s, 100 % and 150 %: the assignee, the team lead, the manager.
    mail = await eventually(
        lambda: _async(mail_of(mail_sink.maildir, process_id)), lambda m: len(m) >= 3, within=15
    )
    assert [(m.header("X-Crmflow-Step"), m.recipients) for m in mail] == [
        ("email_first_response_warning", ["joe.mensah@example.com"]),
        ("email_first_response_breach", ["sam.lindqvist@example.com"]),
        ("email_first_response_manager", ["hana.berg@example.com"]),
    ]
    subjects = [m.subject for m in mail]
    assert subjects[0].startswith(f"SLA warning: ticket {ticket['ticket_id']} first response")
    assert subjects[1] == f"SLA breached: ticket {ticket['ticket_id']} first response (urgent)"

    escalated = await eventually(
        lambda: view(api, process_id),
        lambda v: len(v["state"]["details"]["escalations"]) == 3,
    )
    state = escalated["state"]
    assert state["details"]["sla_state"] == "breached"
    assert state["details"]["assignee_id"] == "agent-joe"  # the technical agent
    assert [e["level"] for e in state["details"]["escalations"]] == ["warning", "breach", "manager"]
    assert "resolution_breach" in state["due"]
    opened = datetime.fromisoformat(state["details"]["opened_at"])
    warned = datetime.fromisoformat(state["details"]["escalations"][0]["at"])
    assert (warned - opened).total_seconds() >= 1.5  # never early; late only by load

    # An onboarding's event: a valid body, but not one a ticket's SLA takes.
    unknown = await api.post(f"/v1/processes/{process_id}/events", json={"type": "first_value"})
    assert unknown.status_code == 409
    assert unknown.headers["content-type"] == PROBLEM_JSON
    assert unknown.json()["type"].endswith("event-not-accepted")
    for event in (
        {"type": "agent_replied"},
        {"type": "status_changed", "data": {"status": "pending_customer"}},
        {"type": "resolved"},
    ):
        accepted = await api.post(f"/v1/processes/{process_id}/events", json=event)
        assert accepted.status_code == 202, accepted.text

    ended = await eventually(lambda: view(api, process_id), lambda v: v["status"] == "completed")
    assert ended["state"]["outcome"] == "resolved"
    assert ended["state"]["details"]["sla_state"] == "breached"
    outcome = await outcome_of(database, process_id)
    assert outcome is not None
    assert (outcome.first_response, outcome.resolution) == ("breached", "met")
    closed = await api.post(f"/v1/processes/{process_id}/events", json={"type": "resolved"})
    assert closed.status_code == 409


async def test_a_ticket_under_an_sla_policy_takes_replies_statuses_and_field_changes(
    api: httpx.AsyncClient,
) -> None:
    ticket = new_ticket(tier=None, tags=["chat"], group="manila", organization="acme")
    created = await api.post("/v1/tickets", json=ticket)
    assert created.status_code == 201, created.text
    process_id = created.json()["process_id"]
    for event in (
        {"type": "agent_replied", "data": {"public": True}},
        {"type": "customer_replied"},
        {"type": "agent_replied", "data": {"public": False}},
        {"type": "status_changed", "data": {"status": "on_hold"}},
        {"type": "fields_changed", "data": {"priority": "high", "tags": ["chat", "vip"]}},
    ):
        accepted = await api.post(f"/v1/processes/{process_id}/events", json=event)
        assert accepted.status_code == 202, accepted.text
    for refused in (
        {"type": "fields_changed", "data": {"priority": "critical"}},
        {"type": "fields_changed", "data": {"priority": "high", "tags": "vip"}},
        {"type": "status_changed", "data": {"status": "closed"}},
    ):
        response = await api.post(f"/v1/processes/{process_id}/events", json=refused)
        assert response.status_code == 422, (refused, response.text)
        assert response.headers["content-type"] == PROBLEM_JSON

    state = (
        await eventually(
            lambda: view(api, process_id),
            lambda v: any(s["step"] == "event:fields_changed" for s in v["state"]["steps"]),
        )
    )["state"]
    details = state["details"]
    assert (details["policy"], details["group"], details["timezone"]) == (
        "chat",
        "manila",
        "Asia/Manila",
    )
    assert (details["priority"], details["status"], details["sla_state"]) == (
        "high",
        "on_hold",
        "paused",
    )
    assert details["clocks"]["next_reply"]["state"] == "paused"
    assert details["clocks"]["next_reply"]["target"] == "2h"
    await api.post(f"/v1/processes/{process_id}/events", json={"type": "resolved"})


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"priority": "critical"}, "priority"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"created_at": "2999-01-01T00:00:00Z"}, "created_at"),
        ({"created_at": "0001-01-01T00:00:00+01:00"}, "created_at"),  # before any UTC instant
        ({"ticket_id": "has spaces"}, "ticket_id"),
    ],
)
async def test_invalid_tickets_are_rejected_as_problems(
    api: httpx.AsyncClient, overrides: dict[str, Any], field: str
) -> None:
    response = await api.post("/v1/tickets", json=new_ticket(**overrides))
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    assert field in response.json()["detail"]


async def _async(value: Any) -> Any:
    return value
