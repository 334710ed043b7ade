"""Delivery events from the relay through the HTTP API: a bounce suppresses and is audited."""

from __future__ import annotations

import httpx

from devstack.mailsink import MailSink, StoredMessage, read_messages
from tests.api.conftest import KeyedClient
from tests.api.test_leads import new_lead
from tests.conftest import eventually


async def first_email(mail_sink: MailSink, address: str) -> StoredMessage:
    async def received() -> list[StoredMessage]:
        return read_messages(mail_sink.maildir, to=address)

    found: list[StoredMessage] = await eventually(received, bool)
    return found[0]


async def test_a_hard_bounce_suppresses_the_address_and_lands_in_the_senders_audit_trail(
    api: httpx.AsyncClient, as_key: KeyedClient, mail_sink: MailSink
) -> None:
    lead = new_lead()
    started = await api.post("/v1/leads", json=lead)
    assert started.status_code == 201, started.text
    process_id = started.json()["process_id"]
    message = await first_email(mail_sink, lead["email"])
    assert message.message_id is not None

    service = as_key("service")
    bounce = {"type": "hard_bounce", "message_id": message.message_id, "detail": "550 5.1.1"}
    answer = await service.post("/v1/email/events", json=bounce)
    assert answer.status_code == 202, answer.text
    assert answer.json() == {
        "message_id": message.message_id,
        "type": "hard_bounce",
        "process_id": process_id,
        "suppressed": True,
        "recorded": True,
    }
    again = await service.post(
        "/v1/email/events", json=bounce | {"message_id": "<" + message.message_id.strip("<>") + ">"}
    )
    assert again.json()["recorded"] is False and again.json()["suppressed"] is False
    delivered = {"type": "delivered", "message_id": message.message_id.strip("<>")}
    assert (await service.post("/v1/email/events", json=delivered)).json()["suppressed"] is False

    audit = await api.get(f"/v1/processes/{process_id}/audit")
    entries = {entry["step"]: entry for entry in audit.json()["steps"]}
    assert entries["email_hard_bounce:lead_first_touch"]["detail"]["detail"] == "550 5.1.1"
    assert "email_delivered:lead_first_touch" in entries

    unknown = await service.post(
        "/v1/email/events", json={"type": "complaint", "message_id": "<nobody@crmflow.localhost>"}
    )
    assert unknown.status_code == 404
    assert unknown.json()["type"] == "urn:crmflow:problem:message-not-found"
    other_tenant = await as_key("tenant-b").post("/v1/email/events", json=bounce)
    assert other_tenant.status_code == 404
    wrong = await service.post("/v1/email/events", json={"type": "opened", "message_id": "x@y"})
    assert wrong.status_code == 422
