"""A delivery's POST and what its answer means, for the drains of ``activities.webhook_drain``.

What an answer means: 2xx delivered; 410 the endpoint is gone (it is
disabled, its pending deliveries fail); 429 and 503 retry after their
``Retry-After`` (at least the back-off); any other status, a timeout or a
refused connection retries with the back-off of ``crm.store.webhook_deliveries``
for up to three days; a URL that resolves inside the network fails and
disables the endpoint.
"""

from __future__ import annotations

import contextlib
import json
import time
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

import aiohttp
from yarl import URL

from activities.outbound import (
    DestinationRefused,
    Outbound,
    Unreachable,
    checked_url,
    signed_headers,
)
from crm.domain.webhook_events import payload
from crm.store.models import as_utc
from crm.store.webhook_deliveries import Attempted, Due, next_retry

#: The longest a ``Retry-After`` may push a retry.
MAX_RETRY_AFTER = timedelta(hours=6)

#: Where a drain's deliveries go: a session to the endpoint's vetted addresses and its URL,
#: or why none could be opened.
Sender = tuple[aiohttp.ClientSession, URL] | DestinationRefused | Unreachable


async def post_delivery(
    outbound: Outbound,
    session: aiohttp.ClientSession,
    url: URL,
    personal: bool,
    keys: list[bytes],
    item: Due,
    now: datetime,
) -> Attempted:
    """POST ``item``'s event at ``now``, signed with ``keys``; what its answer means."""
    body = json.dumps(
        payload(
            item.event_type,
            item.event_id,
            item.process_id,
            as_utc(item.occurred_at),
            item.data,
            personal_data=personal,
        ),
        separators=(",", ":"),
        default=str,
    ).encode()
    headers = signed_headers(keys, item.message_id, body)
    sent = time.monotonic()
    try:
        answer = await outbound.post(session, url, body, headers)
    except Unreachable as unreachable:  # how long it waited: a timeout's is its length
        waited_ms = (time.monotonic() - sent) * 1000
        return retry_or_fail(item, now, None, waited_ms, str(unreachable))
    if 200 <= answer.status < 300:
        return Attempted(item.key, now, answer.status, answer.latency_ms, None, "delivered")
    if answer.status == 410:
        return Attempted(item.key, now, 410, answer.latency_ms, "answered 410 Gone", "gone")
    asked = retry_after(answer.retry_after, now) if answer.status in (429, 503) else None
    return retry_or_fail(
        item, now, answer.status, answer.latency_ms, f"answered {answer.status}", asked
    )


def retry_after(value: str | None, now: datetime) -> timedelta | None:
    """The delay a ``Retry-After`` asks for (seconds or an HTTP date), capped; None if none."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(timedelta(seconds=int(value[:9])), MAX_RETRY_AFTER)  # 9 digits: years
    try:
        delay = parsedate_to_datetime(value) - now
    except (TypeError, ValueError, OverflowError):
        return None
    return min(max(delay, timedelta(0)), MAX_RETRY_AFTER)


async def open_sender(held: contextlib.AsyncExitStack, outbound: Outbound, url_text: str) -> Sender:
    """A session to ``url_text``, kept open by ``held``; or why there is none."""
    try:
        url = checked_url(url_text)
        return await held.enter_async_context(outbound.session(url)), url
    except (DestinationRefused, Unreachable) as cannot:
        return cannot


def unanswered(item: Due, now: datetime, error: str, result: str) -> Attempted:
    return Attempted(item.key, now, None, 0.0, error, result)


def retry_or_fail(
    item: Due,
    now: datetime,
    status: int | None,
    latency_ms: float,
    error: str,
    asked: timedelta | None = None,
) -> Attempted:
    first = as_utc(item.first_attempt_at) if item.first_attempt_at else now
    retry_at = next_retry(first, item.attempts - (item.attempts_before or 0) + 1, now)
    if retry_at is not None and asked is not None:
        retry_at = max(retry_at, now + asked)
    result = "retry" if retry_at is not None else "failed"
    return Attempted(item.key, now, status, latency_ms, error, result, retry_at)
