"""The activities that emit webhook events and deliver them, signed, to their endpoints.

``emit_event`` (behind the ``emit_milestone`` activity and ``offer_outcome``)
stores an event and its deliveries (``crm.store.emissions``: events emitted
at once share a transaction) and wakes the dispatch workflow of each endpoint
it reached that no drain holds (signal-with-start, ``workflows.
webhook_dispatch``). ``deliver_due`` drains an endpoint: under its lease
(``crm.store.webhook_deliveries``) it makes rounds of the due deliveries, and
of those emitted while it runs, until none has come for ``LINGER``. Each is
POSTed through ``activities.outbound`` (signed with every current secret,
under the delivery's ``webhook-id``, the same on every attempt), at most
``concurrency`` at once on one keep-alive session kept for the drain, and
each round's results are written back in one transaction. A worker that dies
mid-round has written nothing of that round: the retried activity sends the
same deliveries again with the same ``webhook-id``, which a receiver dedupes.

What an answer means: 2xx delivered; 410 the endpoint is gone (it is
disabled, its pending deliveries fail); 429 and 503 retry after their
``Retry-After`` (at least the back-off); any other status, a timeout or a
refused connection retries with the back-off of ``crm.store.webhook_deliveries`` for up
to three days; a URL that resolves inside the network fails and disables the
endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import replace
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

import aiohttp
from temporalio import activity
from temporalio.client import Client
from yarl import URL

from activities.outbound import (
    DestinationRefused,
    Outbound,
    Unreachable,
    checked_url,
    signed_headers,
    signing_key,
)
from crm.domain.webhook_events import payload
from crm.platform.dispatch import wake_endpoints
from crm.store.db import Database
from crm.store.emissions import store_event
from crm.store.models import WebhookEndpoint, as_utc, utcnow
from crm.store.webhook_deliveries import (
    Attempted,
    Due,
    due_deliveries,
    next_retry,
    record_round,
    release,
)
from crm.store.webhooks import Emitted, signing_secrets
from workflows.webhook_types import (
    DELIVER_DUE,
    EMIT_EVENT,
    DeliveryRound,
    MilestoneEmitted,
    MilestoneEvent,
    RoundResult,
)

#: Deliveries one round takes at most.
ROUND_SIZE = 200
#: How long a drain looks for more deliveries after the last it found.
LINGER = 0.25
#: How often it looks meanwhile.
POLL = 0.02
#: The longest one drain runs before its workflow starts the next.
DRAIN_FOR = 60.0
#: How often a round tells Temporal it is alive (the workflow's heartbeat timeout is 30 s).
HEARTBEAT_EVERY = 5.0
#: The longest a ``Retry-After`` may push a retry.
MAX_RETRY_AFTER = timedelta(hours=6)


async def emit_event(client: Client, database: Database, task_queue: str, event: Emitted) -> int:
    """Store ``event`` and its deliveries, and wake each endpoint's dispatcher that is not
    draining already; how many endpoints it goes to. Safe to repeat."""
    stored = await store_event(database, event)
    await wake_endpoints(client, task_queue, stored.to_wake)
    return len(stored.endpoints)


def emitted_of(event: MilestoneEvent) -> Emitted:
    """The event a process's milestone emits."""
    return Emitted(
        tenant=event.tenant,
        event_id=event.event_id,
        type=event.type,
        process_id=event.process_id,
        occurred_at=event.occurred_at,
        data=event.data,
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


class WebhookActivities:
    """Deliveries with the worker's database, codec keys and outbound policy."""

    def __init__(
        self,
        database: Database,
        codec_keys: str | None,
        outbound: Outbound,
        *,
        operator_email: str | None = None,
        concurrency: int = 20,
    ) -> None:
        self._database = database
        self._codec_keys = codec_keys
        self._outbound = outbound
        self._operator_email = operator_email
        self._concurrency = concurrency

    @activity.defn(name=EMIT_EVENT)
    async def emit_milestone(self, event: MilestoneEvent) -> MilestoneEmitted:
        """Store a process's milestone event and wake its endpoints' dispatchers; safe to
        retry (the event is stored once per id)."""
        queue = activity.info().task_queue  # the dispatchers run where this worker polls
        count = await emit_event(activity.client(), self._database, queue, emitted_of(event))
        return MilestoneEmitted(endpoints=count)

    @activity.defn(name=DELIVER_DUE)
    async def deliver_due(self, request: DeliveryRound) -> RoundResult:
        """Drain the endpoint: attempt its deliveries due at ``request.now`` (or now, for a
        round retried later than it was scheduled) and those that come due while it runs;
        what it did."""
        beating = asyncio.create_task(_heartbeat_every(HEARTBEAT_EVERY))
        try:
            return await self._drain(request.endpoint_id, max(request.now, utcnow()))
        finally:
            beating.cancel()

    async def _drain(self, endpoint_id: str, start: datetime) -> RoundResult:
        """Rounds of the endpoint's due deliveries under its lease (``crm.store.
        webhook_deliveries``), on one session, until none has come due for ``LINGER``, the
        endpoint stops or changes its URL, or ``DRAIN_FOR`` has passed."""
        began = time.monotonic()

        def now() -> datetime:  # the workflow's time when it asked, on by the drain's own
            return start + timedelta(seconds=time.monotonic() - began)

        endpoint, due = await due_deliveries(
            self._database, endpoint_id, start, ROUND_SIZE, claim=True
        )
        url = endpoint.url if endpoint is not None else ""
        drained = RoundResult(url=url)
        found_at = began - LINGER  # when a look last found deliveries (none yet)
        sender: Sender | None = None
        async with contextlib.AsyncExitStack() as held:
            while True:
                if endpoint is None or not endpoint.enabled:
                    await release(self._database, endpoint_id)
                    return self._stopped(endpoint, drained)
                if endpoint.url != url:  # the next drain connects to the new URL
                    return replace(drained, more=True)
                if due:
                    found_at = time.monotonic()
                    if not isinstance(sender, tuple):  # none yet, or the last could not open
                        sender = await _sender(held, self._outbound, url)
                    done = await self._round(endpoint, sender, due, now())
                    drained = _added(drained, done)
                    if done.stopped:
                        await release(self._database, endpoint_id)
                        return drained
                    if time.monotonic() - began >= DRAIN_FOR:
                        return replace(drained, more=True)
                elif time.monotonic() - found_at >= LINGER:  # none came for a while: let go
                    next_at = await release(self._database, endpoint_id)
                    if next_at is None or next_at > now() or time.monotonic() - began >= DRAIN_FOR:
                        return replace(drained, more=False, next_due=next_at)
                    await asyncio.sleep(POLL)  # stored as the lease ended, unwoken: claim again
                    endpoint, due = await due_deliveries(
                        self._database, endpoint_id, now(), ROUND_SIZE, claim=True
                    )
                    continue
                else:  # more may be on their way
                    await asyncio.sleep(POLL)
                endpoint, due = await due_deliveries(self._database, endpoint_id, now(), ROUND_SIZE)

    def _stopped(self, endpoint: WebhookEndpoint | None, drained: RoundResult) -> RoundResult:
        """The result of a drain that found its endpoint deleted or disabled."""
        if endpoint is None:
            return replace(drained, stopped=True, disabled_reason="deleted")
        reason = endpoint.disabled_reason  # None: an admin disabled it
        return replace(
            drained,
            stopped=True,
            disabled_reason=reason or "disabled",
            disabled_at=as_utc(endpoint.updated_at) if reason else None,
            url=endpoint.url,
            tell=self._operator_email if reason else None,
        )

    async def _round(
        self, endpoint: WebhookEndpoint, sender: Sender, due: list[Due], now: datetime
    ) -> RoundResult:
        """Attempt ``due`` and record the results."""
        endpoint_id = endpoint.endpoint_id
        keys = [signing_key(s) for s in signing_secrets(endpoint, now, self._codec_keys)]
        results = await self._attempt_all(sender, endpoint.personal_data, keys, due, now)
        state = await record_round(self._database, endpoint_id, results, now)
        counts = {kind: sum(r.result == kind for r in results) for kind in ("delivered", "retry")}
        return RoundResult(
            delivered=counts["delivered"],
            retrying=counts["retry"],
            failed=len(results) - counts["delivered"] - counts["retry"],
            more=len(due) == ROUND_SIZE and state.disabled_reason is None,
            next_due=state.next_due,
            stopped=state.disabled_reason is not None,
            disabled_reason=state.disabled_reason,
            disabled_at=now if state.disabled_reason else None,
            url=endpoint.url,
            tell=self._operator_email if state.disabled_reason else None,
        )

    async def _attempt_all(
        self, sender: Sender, personal: bool, keys: list[bytes], due: list[Due], now: datetime
    ) -> list[Attempted]:
        if isinstance(sender, DestinationRefused):
            return [_unanswered(item, now, str(sender), "refused") for item in due]
        if isinstance(sender, Unreachable):  # the name did not resolve: every one retries
            return [_retry_or_fail(item, now, None, 0.0, str(sender)) for item in due]
        session, url = sender
        gate = asyncio.Semaphore(self._concurrency)

        async def attempt(item: Due) -> Attempted:
            async with gate:
                try:
                    return await self._attempt(session, url, personal, keys, item, now)
                except Exception as error:  # one delivery's failure, not the round's
                    activity.logger.exception("delivery %s failed", item.key)
                    return _retry_or_fail(item, now, None, 0.0, type(error).__name__)

        return list(await asyncio.gather(*(attempt(item) for item in due)))

    async def _attempt(
        self,
        session: aiohttp.ClientSession,
        url: URL,
        personal: bool,
        keys: list[bytes],
        item: Due,
        now: datetime,
    ) -> Attempted:
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
            answer = await self._outbound.post(session, url, body, headers)
        except Unreachable as unreachable:  # how long it waited: a timeout's is its length
            waited_ms = (time.monotonic() - sent) * 1000
            return _retry_or_fail(item, now, None, waited_ms, str(unreachable))
        if 200 <= answer.status < 300:
            return Attempted(item.key, now, answer.status, answer.latency_ms, None, "delivered")
        if answer.status == 410:
            return Attempted(item.key, now, 410, answer.latency_ms, "answered 410 Gone", "gone")
        asked = retry_after(answer.retry_after, now) if answer.status in (429, 503) else None
        return _retry_or_fail(
            item, now, answer.status, answer.latency_ms, f"answered {answer.status}", asked
        )


#: Where a drain's deliveries go: a session to the endpoint's vetted addresses and its URL,
#: or why none could be opened.
Sender = tuple[aiohttp.ClientSession, URL] | DestinationRefused | Unreachable


async def _sender(held: contextlib.AsyncExitStack, outbound: Outbound, url_text: str) -> Sender:
    """A session to ``url_text``, kept open by ``held``; or why there is none."""
    try:
        url = checked_url(url_text)
        return await held.enter_async_context(outbound.session(url)), url
    except (DestinationRefused, Unreachable) as cannot:
        return cannot


def _added(drained: RoundResult, done: RoundResult) -> RoundResult:
    """``drained`` with a round's counts added, and what the round says is next."""
    return replace(
        done,
        delivered=drained.delivered + done.delivered,
        retrying=drained.retrying + done.retrying,
        failed=drained.failed + done.failed,
    )


async def _heartbeat_every(seconds: float) -> None:
    while True:
        activity.heartbeat()
        await asyncio.sleep(seconds)


def _unanswered(item: Due, now: datetime, error: str, result: str) -> Attempted:
    return Attempted(item.key, now, None, 0.0, error, result)


def _retry_or_fail(
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
