"""Previewing automations through the API: the timeline of a sample record's run.

The preview runs the production interpreter on a time-skipping server of its
own, so two business days pass in a moment and nothing is sent: no email
reaches the SMTP sink, no task the database, no process starts and nobody is
asked for an approval (a preview's approval is approved at once unless told
otherwise).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import yaml

from crm.automations.preview import preview as run_preview
from crm.automations.validation import parse_definition
from crm.domain.calendar import BusinessCalendar, CalendarSpec
from crm.policy import Policy
from devstack.mailsink import MailSink, read_messages
from tests.api.conftest import KeyedClient
from tests.support.automations import EXAMPLES

DEAL = {"name": "Initech", "stage": "won", "amount": 48000, "owner_id": "csm-ana"}


def handoff() -> dict[str, object]:
    document: dict[str, object] = yaml.safe_load((EXAMPLES / "deal-won-handoff.yaml").read_text())
    return document


async def test_a_preview_shows_each_email_task_and_wait_at_its_instant(
    as_key: KeyedClient, mail_sink: MailSink
) -> None:
    answer = await as_key("admin").post(
        "/v1/automations/preview",
        json={"definition": handoff(), "record_id": "d-preview", "record": DEAL},
    )

    assert answer.status_code == 200, answer.text
    preview = answer.json()
    assert preview["outcome"] == "escalated"
    actions = [(e["step"], e["action"]) for e in preview["timeline"]]
    assert actions == [
        ("tell_manager", "email"),
        ("handoff", "task"),
        ("wait_for_onboarding", "waiting"),
        ("wait_for_onboarding", "wait"),
        ("escalate", "task"),
        ("escalated", "end"),
    ]
    email = preview["timeline"][0]["detail"]
    assert email["to"] == "hana.berg@example.com"
    assert email["subject"] == "Won: Initech (48000)"
    enrolled = datetime.fromisoformat(preview["enrolled_at"])
    business = BusinessCalendar.from_spec(CalendarSpec())
    timed_out = datetime.fromisoformat(preview["timeline"][3]["at"])
    assert abs(timed_out - business.add_business_days(enrolled, 2)) < timedelta(seconds=1)
    escalation = preview["timeline"][4]["detail"]
    assert escalation["assignee_id"] == "mgr-hana"
    assert not [m for m in read_messages(mail_sink.maildir) if "Initech (48000)" in m.subject]


async def test_a_sample_event_takes_the_other_branch(as_key: KeyedClient) -> None:
    started = {"after": {"amount": 20, "unit": "hours"}, "record": {"onboarding_started": True}}
    answer = await as_key("admin").post(
        "/v1/automations/preview",
        json={"definition": handoff(), "record": DEAL, "events": [started]},
    )

    assert answer.status_code == 200, answer.text
    preview = answer.json()
    assert preview["outcome"] == "handed_off"
    assert [e["step"] for e in preview["timeline"] if e["action"] == "task"] == ["handoff"]


async def test_a_stored_automation_previews_for_support_and_a_long_one_stops_at_the_horizon(
    as_key: KeyedClient,
) -> None:
    document = yaml.safe_load((EXAMPLES / "birthday-greeting.yaml").read_text())
    document["id"] = "birthday-preview"
    stored = await as_key("admin").post("/v1/automations", json=document)
    assert stored.status_code in (200, 201), stored.text
    contact = {"name": "Ann", "email": "ann@example.com", "timezone": "Asia/Tokyo"}
    contact["birthday"] = "1992-02-29"

    answer = await as_key("support").post(
        "/v1/automations/birthday-preview/preview", json={"record": contact, "horizon_days": 800}
    )

    assert answer.status_code == 200, answer.text
    preview = answer.json()
    assert preview["outcome"] == "running"
    greetings = [e for e in preview["timeline"] if e["action"] == "email"]
    assert len(greetings) == 2
    for greeting in greetings:
        local = datetime.fromisoformat(greeting["at"]).astimezone(ZoneInfo("Asia/Tokyo"))
        assert (local.hour, local.minute) == (9, 0)
        assert (local.month, local.day) in {(2, 28), (2, 29)}


async def test_a_definition_in_error_is_a_422_pointing_inside_it(as_key: KeyedClient) -> None:
    broken = handoff() | {"goal": "record.stage =="}
    answer = await as_key("admin").post(
        "/v1/automations/preview", json={"definition": broken, "record": DEAL}
    )

    assert answer.status_code == 422
    assert [e["pointer"] for e in answer.json()["errors"]] == ["/definition/goal"]


async def test_a_sample_event_beyond_the_horizon_is_left_out(as_key: KeyedClient) -> None:
    lost = {"after": {"amount": 100_000, "unit": "business_days"}, "record": {"stage": "lost"}}
    answer = await as_key("admin").post(
        "/v1/automations/preview",
        json={"definition": handoff(), "record": DEAL, "events": [lost], "horizon_days": 30},
    )

    assert answer.status_code == 200, answer.text
    assert answer.json()["outcome"] == "escalated"
    assert "event" not in [e["action"] for e in answer.json()["timeline"]]


async def test_a_sample_deletion_ends_the_previewed_run_as_the_api_would(
    as_key: KeyedClient,
) -> None:
    deleted = {"after": {"amount": 1, "unit": "hours"}, "type": "deleted"}
    answer = await as_key("admin").post(
        "/v1/automations/preview",
        json={"definition": handoff(), "record": DEAL, "events": [deleted]},
    )

    assert answer.status_code == 200, answer.text
    preview = answer.json()
    assert preview["outcome"] == "cancelled"
    deletion, end = preview["timeline"][-2:]
    assert (deletion["step"], deletion["action"]) == ("deleted", "event")
    assert end["action"] == "end"
    assert end["detail"]["reason"] == "the record was deleted (event preview-0)"
    assert "escalate" not in [e["step"] for e in preview["timeline"]]  # nothing after it


DISCOUNTED_DEAL = {
    "name": "Initech",
    "amount": 48000.0,
    "discount": 25.0,
    "owner_id": "csm-ana",
    "customer_id": "c-initech",
    "company_name": "Initech",
    "contact_name": "Peter Gibbons",
    "contact_email": "peter@initech.example.com",
    "plan": "growth",
}


def discount_approval() -> dict[str, object]:
    text = (EXAMPLES / "big-deal-discount-approval.yaml").read_text()
    document: dict[str, object] = yaml.safe_load(text)
    return document


async def test_a_preview_approves_at_once_and_shows_the_process_it_would_start(
    as_key: KeyedClient, mail_sink: MailSink
) -> None:
    answer = await as_key("admin").post(
        "/v1/automations/preview",
        json={"definition": discount_approval(), "record": DISCOUNTED_DEAL},
    )

    assert answer.status_code == 200, answer.text
    preview = answer.json()
    assert preview["outcome"] == "approved"
    actions = [(e["step"], e["action"]) for e in preview["timeline"]]
    assert actions == [
        ("approve_discount", "approval"),
        ("approve_discount", "approved"),
        ("onboard", "start"),
        ("approved", "end"),
    ]
    asked = preview["timeline"][0]["detail"]
    assert (asked["approver_id"], asked["to"]) == ("mgr-hana", "hana.berg@example.com")
    assert asked["subject"] == "Discount of 25% on Initech"
    started = preview["timeline"][2]["detail"]
    assert started["process"] == "onboarding"
    assert started["fields"] == {
        "customer_id": "c-initech",
        "company_name": "Initech",
        "contact_name": "Peter Gibbons",
        "contact_email": "peter@initech.example.com",
        "plan": "growth",
    }
    assert not [m for m in read_messages(mail_sink.maildir) if "on Initech" in m.subject]


async def test_a_preview_refuses_a_start_the_process_would_refuse(as_key: KeyedClient) -> None:
    answer = await as_key("admin").post(
        "/v1/automations/preview",
        json={"definition": discount_approval(), "record": DISCOUNTED_DEAL | {"plan": "gold"}},
    )

    assert answer.status_code == 200, answer.text
    preview = answer.json()
    assert preview["outcome"] == "failed"
    assert preview["failure"].startswith("onboard: onboarding: plan: ")


async def test_a_preview_given_an_expired_approval_waits_out_its_timeout() -> None:
    definition = parse_definition(discount_approval(), Policy())

    preview = await run_preview(
        definition,
        "d-1",
        DISCOUNTED_DEAL,
        [],
        Policy(),
        approvals={"approve_discount": "expired"},
    )

    assert preview.outcome == "expired"
    actions = [(e.step, e.action) for e in preview.timeline]
    assert actions == [
        ("approve_discount", "approval"),
        ("approve_discount", "expired"),
        ("tell_owner_expired", "email"),
        ("expired", "end"),
    ]
    business = BusinessCalendar.from_spec(CalendarSpec())
    expired_at = preview.timeline[1].at
    assert abs(expired_at - business.add_business_days(preview.enrolled_at, 2)) < timedelta(
        seconds=1
    )
    assert preview.timeline[2].detail["to"] == "ana.ruiz@example.com"


async def test_a_preview_given_a_rejected_approval_takes_the_rejected_branch(
    as_key: KeyedClient,
) -> None:
    answer = await as_key("admin").post(
        "/v1/automations/preview",
        json={
            "definition": discount_approval(),
            "record": DISCOUNTED_DEAL,
            "approvals": {"approve_discount": "rejected"},
        },
    )

    assert answer.status_code == 200, answer.text
    preview = answer.json()
    assert preview["outcome"] == "rejected"
    [task] = [e for e in preview["timeline"] if e["action"] == "task"]
    assert (task["step"], task["detail"]["assignee_id"]) == ("renegotiate", "csm-ana")
    assert "start" not in [e["action"] for e in preview["timeline"]]


async def test_a_preview_refuses_an_approval_outcome_there_is_not(as_key: KeyedClient) -> None:
    answer = await as_key("admin").post(
        "/v1/automations/preview",
        json={
            "definition": discount_approval(),
            "record": DISCOUNTED_DEAL,
            "approvals": {"approve_discount": "maybe"},
        },
    )

    assert answer.status_code == 422
    assert answer.json()["errors"][0]["loc"] == ["body", "approvals", "approve_discount"]
