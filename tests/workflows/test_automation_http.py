"""Automations that call an HTTP endpoint, end to end on the time-skipping server.

The production worker makes each call to a real receiver on 127.0.0.1 (let in
by ``outbound_allowed_hosts``, as a test needs); the receiver checks
nothing itself but records every request, so the tests verify the Standard
Webhooks signature as a receiver would and see each retry. Without the
allowance, a host resolving to 127.0.0.1 is refused before anything is sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import pytest

from activities.outbound import signing_key
from crm.automations.preview import preview
from crm.automations.validation import parse_definition
from crm.domain.automation import AutomationDefinition
from crm.platform.settings import Settings
from crm.platform.urls import refused_address
from crm.policy import Policy
from tests.support.automations import audit_steps, new_record_id, record_event, start_run
from tests.support.receivers import Received, Receiver, running_receiver
from tests.support.stack import Stack

SECRET = "whsec_" + base64.b64encode(b"crmflow-test-signing-key-32-byte").decode()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """This test's settings, signing with ``SECRET`` and letting calls reach 127.0.0.1."""
    return settings.model_copy(
        update={"automation_http_secret": SECRET, "outbound_allowed_hosts": ["127.0.0.1"]}
    )


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    with running_receiver() as running:
        yield running


def notifying(url: str, *, on_failure: bool = True) -> AutomationDefinition:
    """An automation posting a won deal to ``url``, ending ``delivered`` or ``undelivered``."""
    notify: dict[str, Any] = {
        "url": url,
        "body": {"deal": "record.name", "amount": "record.amount", "won": "record.won"},
        "save_as": "status",
    }
    ends: list[dict[str, Any]] = [{"id": "delivered", "end": {"outcome": "delivered"}}]
    if on_failure:
        notify["on_failure"] = "undelivered"
        ends.append({"id": "undelivered", "end": {"outcome": "undelivered"}})
    document = {
        "id": "won-deal-webhook",
        "name": "Tell the warehouse about won deals",
        "object": "deal",
        "fields": {"name": "string", "amount": "double", "won": "bool"},
        "trigger": {"types": ["updated"], "changed": ["won"], "condition": "record.won"},
        "steps": [{"id": "notify", "http": notify}, *ends],
    }
    return parse_definition(document, Policy())


async def run_to_the_end(stack: Stack, definition: AutomationDefinition) -> tuple[str, Any]:
    deal_id = new_record_id("d")
    now = await stack.env.get_current_time()
    deal = {"name": "Initech", "amount": 48000.0, "won": True}
    event = record_event(definition, deal_id, "updated", deal, {"won": False}, at=now)
    run = await start_run(stack.client, stack.task_queue, definition, event)
    return run.id, await run.result()


def verifies(request: Received) -> bool:
    """Whether the request's signature is the sender's, as a Standard Webhooks receiver checks."""
    signed = b".".join(
        (
            request.headers["webhook-id"].encode(),
            request.headers["webhook-timestamp"].encode(),
            request.body,
        )
    )
    expected = hmac.new(signing_key(SECRET), signed, hashlib.sha256).digest()
    scheme, _, given = request.headers["webhook-signature"].partition(",")
    return scheme == "v1" and hmac.compare_digest(base64.b64decode(given), expected)


async def test_a_call_answered_503_is_retried_under_the_same_webhook_id_and_signed_each_time(
    stack: Stack, receiver: tuple[Receiver, str]
) -> None:
    app, base_url = receiver
    app.planned["/hooks/won"] = [503]

    run_id, result = await run_to_the_end(stack, notifying(f"{base_url}/hooks/won"))

    assert result.outcome == "delivered"
    assert result.variables["status"] == 200
    first, second = app.received
    assert json.loads(second.body) == {"deal": "Initech", "amount": 48000.0, "won": True}
    assert second.headers["content-type"] == "application/json"
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert second.headers["webhook-id"].startswith(f"{run_id}/")
    assert verifies(first) and verifies(second)
    assert "http:notify" in await audit_steps(stack.database, run_id)


async def test_a_call_the_endpoint_refuses_goes_to_on_failure_without_a_retry(
    stack: Stack, receiver: tuple[Receiver, str]
) -> None:
    app, base_url = receiver
    app.planned["/hooks/won"] = [404]

    _, result = await run_to_the_end(stack, notifying(f"{base_url}/hooks/won"))

    assert result.outcome == "undelivered"
    assert len(app.received) == 1
    assert "status" not in result.variables


async def test_a_host_resolving_to_loopback_is_refused_unless_allowed_and_nothing_is_sent(
    idle_stack: Stack, receiver: tuple[Receiver, str]
) -> None:
    app, base_url = receiver
    url = base_url.replace("127.0.0.1", "localhost") + "/hooks/won"

    async with idle_stack.worker(outbound_allowed_hosts=[]):
        _, result = await run_to_the_end(idle_stack, notifying(url, on_failure=False))

    assert result.outcome == "failed"
    assert result.failure.startswith("notify: UrlRefused: localhost resolves to")
    assert app.received == []


async def test_without_a_signing_secret_the_step_fails_and_nothing_is_sent(
    idle_stack: Stack, receiver: tuple[Receiver, str]
) -> None:
    app, base_url = receiver

    async with idle_stack.worker(automation_http_secret=None):
        _, result = await run_to_the_end(idle_stack, notifying(f"{base_url}/h", on_failure=False))

    assert result.outcome == "failed"
    assert "HttpNotConfigured" in result.failure
    assert app.received == []


async def test_a_preview_shows_the_call_it_would_make_and_sends_nothing(
    receiver: tuple[Receiver, str],
) -> None:
    app, base_url = receiver
    definition = notifying(f"{base_url}/hooks/won")
    deal = {"name": "Initech", "amount": 48000.0, "won": True}

    shown = await preview(definition, "d-preview", deal, [], Policy())

    assert shown.outcome == "delivered"
    [call] = [entry for entry in shown.timeline if entry.action == "http"]
    assert call.step == "notify"
    assert call.detail["url"] == f"{base_url}/hooks/won"
    assert call.detail["body"] == {"deal": "Initech", "amount": 48000.0, "won": True}
    assert "webhook-signature" in call.detail["headers"]
    assert app.received == []


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "::1",
        "::",
        "fe80::1%eth0",
        "fc00::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "ff02::1",
    ],
)
def test_an_address_inside_the_network_is_refused(address: str) -> None:
    assert refused_address(address)


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
def test_a_public_address_is_let_through(address: str) -> None:
    assert not refused_address(address)
