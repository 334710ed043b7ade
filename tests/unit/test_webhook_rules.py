"""The pure rules of webhooks: subscriptions, payloads, back-off, Retry-After, sealing, URLs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from activities.outbound import signed_headers, signing_key
from activities.webhook_answers import MAX_RETRY_AFTER, retry_after
from crm.domain.webhook_events import (
    EVENT_TYPES,
    event_catalogue,
    pattern_problem,
    payload,
    subscribes,
)
from crm.platform.codec import CodecKeyError, new_codec_key
from crm.platform.dispatch import _Coalesced
from crm.platform.sealing import SealingUnavailable, seal, unseal
from crm.platform.urls import address_problem, url_problem
from crm.store.webhook_deliveries import GIVE_UP_AFTER, next_retry
from crm.store.webhooks import new_secret

NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize("pattern", ["*", "ticket.*", "ticket.breached", "task.completed"])
def test_a_type_a_process_wildcard_and_everything_are_subscribable(pattern: str) -> None:
    assert pattern_problem(pattern) is None


@pytest.mark.parametrize(
    ("pattern", "says"),
    [("ticket.exploded", "not an event type"), ("billing.*", "no process"), ("", "not an")],
)
def test_anything_else_is_refused_saying_why(pattern: str, says: str) -> None:
    problem = pattern_problem(pattern)
    assert problem is not None and says in problem


def test_subscriptions_match_exact_types_wildcards_and_nothing_else() -> None:
    assert subscribes(["ticket.*"], "ticket.breached")
    assert subscribes(["*"], "renewal.lapsed")
    assert subscribes(["renewal.lapsed"], "renewal.lapsed")
    assert not subscribes(["renewal.renewed", "ticket.*"], "renewal.lapsed")


def test_personal_fields_are_sent_only_to_an_endpoint_that_asked() -> None:
    data = {"contact_email": "ann@example.com", "plan": "pro"}
    plain = payload("renewal.lapsed", "e-1", "renewal-s-1", NOW, data, personal_data=False)
    full = payload("renewal.lapsed", "e-1", "renewal-s-1", NOW, data, personal_data=True)

    assert plain == {
        "type": "renewal.lapsed",
        "timestamp": "2026-12-04T09:00:00Z",
        "data": {"plan": "pro", "event_id": "e-1", "process_id": "renewal-s-1"},
    }
    assert full["data"]["contact_email"] == "ann@example.com"


def test_free_text_people_wrote_is_personal() -> None:
    data = {"subject": "Jane Roe (jane@example.com) cannot log in", "priority": "high"}
    plain = payload("ticket.breached", "e-2", "sla-t-1", NOW, data, personal_data=False)
    assert "subject" not in plain["data"] and plain["data"]["priority"] == "high"
    decided = {"comment": "Fine by me, Jane", "decided_by": "mgr-1"}
    plain = payload("approval.approved", "e-3", "approval-a-1", NOW, decided, personal_data=False)
    assert "comment" not in plain["data"] and plain["data"]["decided_by"] == "mgr-1"


def test_the_catalogue_has_a_schema_for_every_type() -> None:
    catalogue = event_catalogue()
    assert "(subject)" in catalogue["ticket.breached"]["description"]
    assert catalogue["ticket.met"]["description"].endswith("It holds no personal fields.")
    assert set(catalogue) == set(EVENT_TYPES)
    assert catalogue["ticket.warning"]["properties"]["data"]["properties"]["due_at"] == {
        "type": "string",
        "format": "date-time",
    }


def test_retries_back_off_and_end_with_a_last_attempt_at_three_days() -> None:
    at, attempts, times = NOW, 0, []
    while (retry := next_retry(NOW, attempts + 1, at)) is not None:
        attempts += 1
        times.append(retry - at)
        at = retry
    assert times[:4] == [
        timedelta(seconds=5),
        timedelta(minutes=1),
        timedelta(minutes=5),
        timedelta(minutes=30),
    ]
    assert at == NOW + GIVE_UP_AFTER
    assert max(times) == timedelta(hours=10)
    assert 10 < attempts < 20


@pytest.mark.parametrize(
    ("header", "delay"),
    [
        ("120", timedelta(seconds=120)),
        ("Fri, 04 Dec 2026 09:10:00 GMT", timedelta(minutes=10)),
        ("999999", MAX_RETRY_AFTER),
        ("soon", None),
        (None, None),
    ],
)
def test_retry_after_is_read_as_seconds_or_a_date_and_capped(
    header: str | None, delay: timedelta | None
) -> None:
    assert retry_after(header, NOW) == delay


def test_a_sealed_secret_opens_only_with_its_key_and_for_its_endpoint() -> None:
    keys = new_codec_key("k1")
    sealed = seal("whsec_abc", "ep_1", keys)

    assert "whsec_abc" not in sealed
    assert unseal(sealed, "ep_1", f"{new_codec_key('k2')},{keys}") == "whsec_abc"
    with pytest.raises(CodecKeyError):
        unseal(sealed, "ep_2", keys)
    with pytest.raises(CodecKeyError):
        unseal(sealed, "ep_1", new_codec_key("k1"))
    with pytest.raises(SealingUnavailable):
        seal("whsec_abc", "ep_1", None)


def test_signed_headers_verify_with_the_standardwebhooks_library_for_each_secret() -> None:
    old, new = new_secret(), new_secret()
    body = b'{"type":"ticket.breached"}'
    headers = signed_headers([signing_key(new), signing_key(old)], "msg_1", body)

    for secret in (old, new):
        assert Webhook(secret).verify(body, headers) == {"type": "ticket.breached"}
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://hooks.example.com/x", None),
        ("ftp://hooks.example.com", "http"),
        ("hooks.example.com/x", "http"),
        ("https://user:pw@hooks.example.com", "credentials"),
        ("http://exa mple.com/", "not a host name DNS can look up"),
        ("http://ex%41mple.com/", "not a host name DNS can look up"),
        ("http://a..example.com/", "not a host name DNS can look up"),
        ("http://bücher.de/hooks", None),  # IDNA-encoded: xn--bcher-kva.de
        ("http://_dmarc.example.com/", None),
    ],
)
def test_url_shapes(url: str, problem: str | None) -> None:
    found = url_problem(url)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_an_address_host_inside_the_network_is_refused_unless_allowed() -> None:
    assert address_problem("http://169.254.169.254/latest", []) is not None
    assert address_problem("http://127.0.0.1:8025/h", ["127.0.0.1"]) is None
    assert address_problem("https://93.184.215.14/h", []) is None
    assert address_problem("https://hooks.example.com/h", []) is None  # resolved at call time


async def test_wakes_of_one_endpoint_coalesce_and_each_caller_gets_one_begun_after_it_asked() -> (
    None
):
    wakes, sent = _Coalesced(), 0
    began: list[int] = []
    asked_at: dict[int, int] = {}

    async def caller(number: int) -> None:
        asked_at[number] = len(began)

        async def send() -> None:
            nonlocal sent
            began.append(number)
            await asyncio.sleep(0.01)
            sent += 1

        await wakes.wake("ep", send)
        assert len(began) > asked_at[number], "a wake that began after it asked"

    await asyncio.gather(*(caller(number) for number in range(20)))

    assert sent <= 2, f"{sent} signals for 20 events"
