"""Webhook deliveries end to end on the time-skipping server, to a real HTTP receiver.

Events are emitted as a process's ``offer_outcome`` activity emits them
(``emit_event``); the endpoint's dispatch workflow delivers them with the
production worker. The receiver is on 127.0.0.1, which the settings allowlist
(as the dev stack allowlists its own receiver); the test without that
allowance shows the address check. Waiting out a back-off or a three-day
outage is the time-skipping server's: ``handle.result()`` skips to each timer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook
from temporalio.client import WorkflowHandle

from activities.webhook_delivery import emit_event
from crm.automations.validation import parse_definition
from crm.platform.codec import new_codec_key
from crm.platform.settings import Settings
from crm.policy import Policy
from crm.store.models import WebhookEndpoint
from crm.store.webhook_deliveries import deliveries_of
from crm.store.webhooks import Emitted, create_endpoint, endpoint_of, rotate_secret
from tests.conftest import eventually
from tests.support.automations import mail_about, new_record_id, record_event, start_run
from tests.support.receivers import Planned, Receiver, running_receiver
from tests.support.servers import TcpProxy
from tests.support.stack import Stack
from workflows.webhook_types import DispatchSummary, dispatch_id

OPERATOR = "ops@example.com"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Secrets sealed with a key of their own, calls let into 127.0.0.1, an operator."""
    return settings.model_copy(
        update={
            "sealing_keys": new_codec_key("test-1"),
            "outbound_allowed_hosts": ["127.0.0.1"],
            "operator_email": OPERATOR,
        }
    )


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    with running_receiver() as running:
        yield running


async def endpoint(
    stack: Stack, url: str, event_types: list[str] | None = None, *, personal: bool = False
) -> tuple[WebhookEndpoint, str]:
    return await create_endpoint(
        stack.database,
        None,
        url=url,
        event_types=event_types or ["ticket.*"],
        personal_data=personal,
        enabled=True,
        codec_keys=stack.settings.secret_keys,
    )


def breach(number: int, at: datetime) -> Emitted:
    return Emitted(
        tenant=None,
        event_id=f"sla-T-{number}/breached/first_response",
        type="ticket.breached",
        process_id=f"sla-T-{number}",
        occurred_at=at,
        data={"ticket_id": f"T-{number}", "priority": "high", "contact_email": "ann@example.com"},
    )


async def emit_breaches(stack: Stack, count: int) -> None:
    now = await stack.env.get_current_time()
    for number in range(count):
        await emit_event(stack.client, stack.database, stack.task_queue, breach(number, now))


async def dispatched(stack: Stack, endpoint_id: str) -> DispatchSummary:
    """The summary of the endpoint's dispatch run, once it ends (idle, or disabled)."""
    handle: WorkflowHandle[object, DispatchSummary] = stack.client.get_workflow_handle(
        dispatch_id(endpoint_id), result_type=DispatchSummary
    )
    async with stack.env.time_skipping_unlocked():  # type: ignore[attr-defined]
        return await handle.result()


async def test_an_event_is_delivered_signed_and_verifies_with_the_standardwebhooks_library(
    stack: Stack, receiver: tuple[Receiver, str]
) -> None:
    app, base_url = receiver
    row, secret = await endpoint(stack, f"{base_url}/hooks")

    await emit_breaches(stack, 1)
    summary = await dispatched(stack, row.endpoint_id)

    assert summary.delivered == 1
    [request] = app.received
    body = Webhook(secret).verify(request.body, request.headers)
    assert body["type"] == "ticket.breached"
    assert body["data"] == {
        "ticket_id": "T-0",
        "priority": "high",
        "event_id": "sla-T-0/breached/first_response",
        "process_id": "sla-T-0",
    }, "the contact's email is personal data, left out for this endpoint"
    [log] = await deliveries_of(stack.database, row.endpoint_id)
    assert log.delivery.state == "delivered"
    assert log.delivery.message_id == request.headers["webhook-id"]
    assert [attempt.status for attempt in log.attempts] == [200]


async def test_events_emitted_while_the_receiver_is_down_are_all_delivered_once_it_is_back(
    stack: Stack, receiver: tuple[Receiver, str]
) -> None:
    app, base_url = receiver
    app.planned["/hooks"] = [*[503] * 200, *[500] * 200]  # down for two rounds, then back
    row, _ = await endpoint(stack, f"{base_url}/hooks")

    await emit_breaches(stack, 200)
    summary = await dispatched(stack, row.endpoint_id)

    assert summary.delivered == 200 and summary.failed == 0
    attempts = app.by_id()
    assert len(attempts) == 200
    assert all(len(requests) == 3 for requests in attempts.values())
    answered_200 = [r for r in app.received[400:]]
    assert len({r.headers["webhook-id"] for r in answered_200}) == 200
    logs = await deliveries_of(stack.database, row.endpoint_id, limit=500)
    assert {log.delivery.state for log in logs} == {"delivered"}
    assert [a.status for a in logs[0].attempts] == [503, 500, 200]


async def test_events_emitted_while_nothing_listens_are_delivered_once_the_receiver_is_up(
    stack: Stack, receiver: tuple[Receiver, str]
) -> None:
    app, base_url = receiver
    proxy = TcpProxy("127.0.0.1", int(base_url.rsplit(":", 1)[1]))  # closed: connection refused
    row, _ = await endpoint(stack, f"http://127.0.0.1:{proxy.port}/hooks")

    await emit_breaches(stack, 200)

    async def refused_once() -> list[int]:
        logs = await deliveries_of(stack.database, row.endpoint_id, limit=500)
        return [len(log.attempts) for log in logs]

    await eventually(refused_once, lambda counts: len(counts) == 200 and min(counts) >= 1)
    await proxy.restore()
    try:
        summary = await dispatched(stack, row.endpoint_id)
    finally:
        await proxy.cut()

    assert summary.delivered == 200
    assert len(app.by_id()) == 200 and len(app.received) == 200, "each once, none lost"
    logs = await deliveries_of(stack.database, row.endpoint_id, limit=500)
    # Refused until the proxy opened (a second refusal when the 200 refusals took longer
    # than the 5 s back-off on a loaded machine), then delivered once.
    statuses = [[a.status for a in log.attempts] for log in logs]
    assert all(s[-1] == 200 and s[:-1] and set(s[:-1]) == {None} for s in statuses), statuses
    assert "cannot reach" in str(logs[0].attempts[0].error)


async def test_an_endpoint_slower_than_the_timeout_is_retried(
    idle_stack: Stack, receiver: tuple[Receiver, str]
) -> None:
    app, base_url = receiver
    app.planned["/slow"] = [Planned(200, stall_seconds=3)]
    row, _ = await endpoint(idle_stack, f"{base_url}/slow")

    async with idle_stack.worker(outbound_timeout_seconds=1):
        await emit_breaches(idle_stack, 1)
        summary = await dispatched(idle_stack, row.endpoint_id)

    assert summary.delivered == 1
    [log] = await deliveries_of(idle_stack.database, row.endpoint_id)
    first, second = log.attempts
    assert (first.status, second.status) == (None, 200)
    assert "within 1 s" in str(first.error)
    assert 900 <= first.latency_ms < 3000  # the second it waited, logged


async def test_a_429_is_retried_no_sooner_than_its_retry_after(
    stack: Stack, receiver: tuple[Receiver, str]
) -> None:
    app, base_url = receiver
    app.planned["/hooks"] = [Planned(429, {"Retry-After": "600"})]
    row, _ = await endpoint(stack, f"{base_url}/hooks")

    await emit_breaches(stack, 1)
    await dispatched(stack, row.endpoint_id)

    [log] = await deliveries_of(stack.database, row.endpoint_id)
    first, second = log.attempts
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= timedelta(seconds=600)


async def test_a_503_is_retried_no_sooner_than_its_retry_after_and_the_log_says_when(
    stack: Stack, receiver: tuple[Receiver, str]
) -> None:
    app, base_url = receiver
    app.planned["/busy"] = [Planned(503, {"Retry-After": "900"})]
    row, _ = await endpoint(stack, f"{base_url}/busy")

    await emit_breaches(stack, 1)
    await dispatched(stack, row.endpoint_id)

    [log] = await deliveries_of(stack.database, row.endpoint_id)
    first, second = log.attempts
    assert (first.status, second.status) == (503, 200)
    assert second.at - first.at >= timedelta(seconds=900)  # the back-off alone: 5 s
    assert first.error == "answered 503" and first.latency_ms > 0
    assert log.delivery.state == "delivered" and log.delivery.next_attempt_at is None


async def test_a_redirect_is_not_followed_but_retried_at_the_endpoints_own_url(
    stack: Stack, receiver: tuple[Receiver, str]
) -> None:
    app, base_url = receiver
    app.planned["/moved"] = [Planned(302, {"Location": f"{base_url}/elsewhere"})]
    row, _ = await endpoint(stack, f"{base_url}/moved")

    await emit_breaches(stack, 1)
    await dispatched(stack, row.endpoint_id)

    [log] = await deliveries_of(stack.database, row.endpoint_id)
    assert [attempt.status for attempt in log.attempts] == [302, 200]
    assert [request.path for request in app.received] == ["/moved", "/moved"]


async def test_a_410_disables_the_endpoint_fails_what_is_pending_and_tells_the_operator(
    stack: Stack, receiver: tuple[Receiver, str]
) -> None:
    app, base_url = receiver
    app.planned["/gone"] = [410, 410, 410]  # the three may go in one round
    row, _ = await endpoint(stack, f"{base_url}/gone")

    await emit_breaches(stack, 3)
    summary = await dispatched(stack, row.endpoint_id)

    assert summary.stopped is not None and "410" in summary.stopped
    stored = await endpoint_of(stack.database, None, row.endpoint_id)
    assert stored is not None and not stored.enabled
    logs = await deliveries_of(stack.database, row.endpoint_id)
    assert {log.delivery.state for log in logs} == {"failed"}
    assert len(app.received) <= 3
    [mail] = mail_about(stack.maildir, OPERATOR, row.endpoint_id)
    assert "410" in mail.body


async def test_an_endpoint_failing_for_three_days_is_given_up_and_disabled(
    stack: Stack, receiver: tuple[Receiver, str]
) -> None:
    app, base_url = receiver
    app.planned["/down"] = [*[500] * 1000]
    row, _ = await endpoint(stack, f"{base_url}/down")

    await emit_breaches(stack, 1)
    summary = await dispatched(stack, row.endpoint_id)

    [log] = await deliveries_of(stack.database, row.endpoint_id)
    assert log.delivery.state == "failed"
    span = log.attempts[-1].at - log.attempts[0].at
    assert abs(span - timedelta(days=3)) < timedelta(seconds=1), "the last at three days"
    assert len(log.attempts) < 30, "the back-off grows: not a retry every few seconds"
    assert summary.delivered == 0
    stored = await endpoint_of(stack.database, None, row.endpoint_id)
    assert stored is not None and not stored.enabled
    assert stored.disabled_reason == "every attempt failed for 3 days"
    assert mail_about(stack.maildir, OPERATOR, row.endpoint_id)


async def test_during_a_rotation_both_secrets_sign_and_a_receiver_with_either_verifies(
    stack: Stack, receiver: tuple[Receiver, str]
) -> None:
    app, base_url = receiver
    row, old_secret = await endpoint(stack, f"{base_url}/hooks")
    rotated = await rotate_secret(
        stack.database, None, row.endpoint_id, timedelta(hours=24), stack.settings.secret_keys
    )
    assert rotated is not None
    _, new_secret = rotated

    await emit_breaches(stack, 1)
    await dispatched(stack, row.endpoint_id)

    [request] = app.received
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for secret in (old_secret, new_secret):
        assert Webhook(secret).verify(request.body, request.headers)["type"] == "ticket.breached"


async def test_a_host_resolving_to_loopback_is_refused_and_nothing_is_sent(
    idle_stack: Stack, receiver: tuple[Receiver, str]
) -> None:
    app, base_url = receiver
    row, _ = await endpoint(idle_stack, base_url.replace("127.0.0.1", "localhost") + "/hooks")

    async with idle_stack.worker(outbound_allowed_hosts=[]):
        await emit_breaches(idle_stack, 1)
        summary = await dispatched(idle_stack, row.endpoint_id)

    assert app.received == []
    assert summary.stopped is not None and "inside the network" in summary.stopped
    [log] = await deliveries_of(idle_stack.database, row.endpoint_id)
    assert log.delivery.state == "failed"


async def test_an_endpoint_with_personal_data_gets_it_and_one_not_subscribed_gets_nothing(
    stack: Stack, receiver: tuple[Receiver, str]
) -> None:
    app, base_url = receiver
    personal, _ = await endpoint(stack, f"{base_url}/personal", personal=True)
    await endpoint(stack, f"{base_url}/renewals", ["renewal.*"])

    await emit_breaches(stack, 1)
    await dispatched(stack, personal.endpoint_id)

    [request] = app.received
    assert request.path == "/personal"
    assert json.loads(request.body)["data"]["contact_email"] == "ann@example.com"


async def test_an_automation_run_emits_its_enrolment_and_its_end_as_milestone_events(
    stack: Stack, receiver: tuple[Receiver, str]
) -> None:
    app, base_url = receiver
    row, secret = await endpoint(stack, f"{base_url}/automations", ["automation.*"])
    definition = parse_definition(
        {
            "id": "quick-note",
            "name": "Note won deals",
            "object": "deal",
            "fields": {"won": "bool"},
            "trigger": {"types": ["updated"], "condition": "record.won"},
            "steps": [
                {"id": "note", "set": {"noted": "true"}},
                {"id": "done", "end": {"outcome": "noted"}},
            ],
        },
        Policy(),
    )
    record_id = new_record_id("d")
    now = await stack.env.get_current_time()
    event = record_event(definition, record_id, "updated", {"won": True}, at=now)

    run = await start_run(stack.client, stack.task_queue, definition, event)
    assert (await run.result()).outcome == "noted"
    await dispatched(stack, row.endpoint_id)

    bodies = [Webhook(secret).verify(r.body, r.headers) for r in app.received]
    assert sorted(body["type"] for body in bodies) == [
        "automation.completed",
        "automation.enrolled",
    ]
    [ended] = [body for body in bodies if body["type"] == "automation.completed"]
    assert ended["data"] | {"automation_id": "quick-note", "outcome": "noted"} == ended["data"]
    assert ended["data"]["record_id"] == record_id
    assert ended["data"]["process_id"] == run.id
    assert ended["data"]["has_goal"] is False  # the reports count no goal rate for it
