"""One endpoint's drain: its due deliveries posted through a window kept full, the answers
written back in batches while the posting goes on.

``deliver_due`` (``activities.webhook_delivery``) runs one ``Drain`` under the
endpoint's lease (``crm.store.webhook_deliveries``). Up to ``concurrency``
deliveries are in flight at once, and as each is answered the next due one
goes: from a queue refilled from the database, ``ROUND_SIZE`` at a time,
leaving out those the drain holds. A slow answer holds its own slot, not the
deliveries behind it. While answers are awaited and reads find nothing new,
the drain looks less often (``POLL`` doubling up to ``LINGER``); with none
awaited it looks every ``POLL`` until it lets go. The answers are written
back in batches by one writer at a time while the posting goes on
(``activities.webhook_writes``), at once when the drain is ending. A read
leaves out every delivery the drain holds, the ones being written included, so
a read that sees the database before a write never takes an answered delivery
again. An answer that will disable the endpoint (a 410, an address inside the
network) stops the drain taking more at once.

A worker that dies mid-drain has written nothing of what it held: the retried
activity sends those deliveries again with the same ``webhook-id``, which a
receiver dedupes. The drain ends when no delivery has come due for
``LINGER`` (it lets the lease go), when a write disabled the endpoint, when the
endpoint was deleted, disabled or given another URL, or after ``DRAIN_FOR``;
what it holds is answered and written first.

What each answer means is ``activities.webhook_answers``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from temporalio import activity

from activities.outbound import DestinationRefused, Outbound, Unreachable, signing_key
from activities.webhook_answers import (
    Sender,
    open_sender,
    post_delivery,
    retry_or_fail,
    unanswered,
)
from activities.webhook_writes import AnswerWrites, Written
from crm.store.db import Database
from crm.store.models import WebhookEndpoint, as_utc
from crm.store.webhook_deliveries import Attempted, Due, due_deliveries, release
from crm.store.webhooks import signing_secrets
from workflows.webhook_types import RoundResult

#: Deliveries one read of the database takes at most (it leaves out those the drain holds).
ROUND_SIZE = 200
#: How long a drain looks for more deliveries after the last it found.
LINGER = 0.25
#: How often it looks meanwhile, at first: a look that finds nothing new doubles it, up to
#: ``LINGER``.
POLL = 0.02
#: The longest one drain runs before its workflow starts the next.
DRAIN_FOR = 60.0


@dataclass(frozen=True)
class Posting:
    """What posting needs besides the deliveries: the outbound policy and its limit, the
    codec keys that open the endpoint's secrets, and whom to tell of a disabled endpoint."""

    outbound: Outbound
    codec_keys: str | None
    concurrency: int
    operator_email: str | None = None


class Drain:
    """One drain of ``endpoint_id``'s deliveries, from ``start`` (the workflow's time when it
    asked) on; ``run`` says what it did.

    ``concurrency`` posters each take the next queued delivery as soon as they have their
    answer; the drain itself reads the database when the queue runs low, writes the answers
    back in batches, and decides when to end.
    """

    def __init__(
        self, database: Database, posting: Posting, endpoint_id: str, start: datetime
    ) -> None:
        self._database = database
        self._posting = posting
        self._endpoint_id = endpoint_id
        self._start = start
        self._began = time.monotonic()
        self._endpoint: WebhookEndpoint | None = None
        self._url = ""
        self._keys: list[bytes] = []
        self._sender: Sender | None = None
        self._queue: asyncio.Queue[Due] = asyncio.Queue()
        #: Every delivery the drain holds, from its read until its answer is written.
        self._held: set[str] = set()
        self._posters: list[asyncio.Task[None]] = []
        self._in_flight = 0
        self._wake = asyncio.Event()
        self._writes = AnswerWrites(database, endpoint_id, self._wake)
        self._done = RoundResult()
        self._ending: RoundResult | None = None  # how it ends, once it stopped taking more
        self._looked_at = 0.0
        self._look_again = False
        self._poll = POLL

    def now(self) -> datetime:
        """The workflow's time when it asked, on by the drain's own clock."""
        return self._start + timedelta(seconds=time.monotonic() - self._began)

    async def run(self) -> RoundResult:
        async with contextlib.AsyncExitStack() as held:
            self._posters = [
                asyncio.create_task(self._post_each()) for _ in range(self._posting.concurrency)
            ]
            try:
                return await self._drain(held)
            finally:  # a failed write or a cancelled activity: stop posting (what was not
                # written is sent again, under the same webhook-id, by the retried activity)
                tasks = [*self._posters, *self._writes.running()]
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _drain(self, held: contextlib.AsyncExitStack) -> RoundResult:
        endpoint, due = await due_deliveries(
            self._database, self._endpoint_id, self._start, ROUND_SIZE, claim=True
        )
        self._url = endpoint.url if endpoint is not None else ""
        self._done = RoundResult(url=self._url)
        await self._take(held, endpoint, due)
        found_at = self._began - LINGER  # when a look last found deliveries (none yet)
        while True:
            for poster in self._posters:
                if poster.done():  # a poster never returns: it failed, and the drain with it
                    poster.result()
                    raise RuntimeError("a poster of the drain stopped")
            if (written := self._writes.written()) is not None:
                self._wrote(written)
            if batch := self._writes.start(self.now(), at_once=self._ending is not None):
                self._done = _counted(self._done, batch)
            if self._held:
                found_at = time.monotonic()
            elif self._ending is not None:
                return await self._ended()
            elif time.monotonic() - found_at >= LINGER:  # none came for a while: let go
                next_at = await release(self._database, self._endpoint_id)
                if next_at is None or next_at > self.now() or self._overdue():
                    return replace(self._done, more=False, next_due=next_at)
                await asyncio.sleep(POLL)  # stored as the lease ended, unwoken: claim again
                await self._take(held, *await self._read(claim=True))
                continue
            if self._ending is None and self._overdue():
                self._end(replace(self._done, more=True))
            if self._should_look():
                await self._take(held, *await self._read())
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL):
                    await self._wake.wait()

    # Taking deliveries.

    async def _take(
        self, held: contextlib.AsyncExitStack, endpoint: WebhookEndpoint | None, due: list[Due]
    ) -> None:
        """Queue what a read found, unless the endpoint stopped or moved: then end."""
        self._looked_at = time.monotonic()
        self._look_again = False
        self._endpoint = endpoint
        if self._ending is not None:
            return
        if endpoint is None or not endpoint.enabled:
            self._end(_stopped(endpoint, self._done, self._posting.operator_email))
            return
        if endpoint.url != self._url:  # the next drain connects to the new URL
            self._end(replace(self._done, more=True))
            return
        # ``due`` holds none the drain holds: the read left them out, and while it ran they
        # could only shrink, by ``_end``, which the check above saw
        self._poll = POLL if due else min(2 * self._poll, LINGER)
        if not due:
            return
        self._keys = [
            signing_key(secret)
            for secret in signing_secrets(endpoint, self.now(), self._posting.codec_keys)
        ]
        if not isinstance(self._sender, tuple):  # none yet, or the last could not open
            self._sender = await open_sender(held, self._posting.outbound, self._url)
        for item in due:
            self._held.add(item.key)
            self._queue.put_nowait(item)
        self._look_again = len(due) >= ROUND_SIZE  # more may be due: look again at once

    async def _read(self, *, claim: bool = False) -> tuple[WebhookEndpoint | None, list[Due]]:
        """The endpoint and up to ``ROUND_SIZE`` of its due deliveries the drain does not
        hold."""
        return await due_deliveries(
            self._database,
            self._endpoint_id,
            self.now(),
            ROUND_SIZE,
            claim=claim,
            held=frozenset(self._held),  # read in a thread while posters may end the drain
        )

    def _should_look(self) -> bool:
        """Whether to read the database now: taking more, fewer queued than the posters,
        and the last look found a full batch or was long enough ago (``_poll``)."""
        if self._ending is not None or self._queue.qsize() >= self._posting.concurrency:
            return False
        every = self._poll if self._in_flight else POLL  # none awaited: look often
        return self._look_again or time.monotonic() - self._looked_at >= every

    def _overdue(self) -> bool:
        return time.monotonic() - self._began >= DRAIN_FOR

    def _end(self, ending: RoundResult) -> None:
        """Take no more: what is queued stays pending for the next drain."""
        self._ending = ending
        while not self._queue.empty():
            self._held.discard(self._queue.get_nowait().key)

    # Posting.

    async def _post_each(self) -> None:
        """One poster: each queued delivery in turn, its answer kept for the next write."""
        while True:
            item = await self._queue.get()
            self._in_flight += 1
            answer = await self._attempt(item)
            self._in_flight -= 1
            full = self._writes.add(answer)
            if answer.result in ("gone", "refused") and self._ending is None:
                # its write will disable the endpoint: take no more meanwhile
                self._end(replace(self._done, more=True))
            low = self._queue.qsize() < self._posting.concurrency
            if full or self._ending or (low and self._look_again):
                self._wake.set()  # write now, or read more at once

    async def _attempt(self, item: Due) -> Attempted:
        now, sender = self.now(), self._sender
        try:
            if isinstance(sender, DestinationRefused):
                return unanswered(item, now, str(sender), "refused")
            assert sender is not None  # opened before anything was queued
            if isinstance(sender, Unreachable):  # the name did not resolve: it retries
                return retry_or_fail(item, now, None, 0.0, str(sender))
            session, url = sender
            personal = self._endpoint.personal_data if self._endpoint else False
            outbound = self._posting.outbound
            return await post_delivery(outbound, session, url, personal, self._keys, item, now)
        except Exception as error:  # one delivery's failure, not the drain's
            activity.logger.exception("delivery %s failed", item.key)
            return retry_or_fail(item, now, None, 0.0, type(error).__name__)

    # Writing the answers back.

    def _wrote(self, written: Written) -> None:
        """A write is done: its deliveries are no longer held; a disabled endpoint ends it."""
        self._held -= written.keys
        if written.state.disabled_reason is None or (self._ending and self._ending.stopped):
            return
        self._end(
            replace(
                self._done,
                stopped=True,
                disabled_reason=written.state.disabled_reason,
                disabled_at=written.at,  # the endpoint's updated_at: one email for it
                url=self._url,
                tell=self._posting.operator_email,
            )
        )

    async def _ended(self) -> RoundResult:
        """What the drain did, once everything it held is written; a stopped endpoint's
        lease let go."""
        assert self._ending is not None
        ending = replace(
            self._ending,
            delivered=self._done.delivered,
            retrying=self._done.retrying,
            failed=self._done.failed,
        )
        if ending.stopped:
            await release(self._database, self._endpoint_id)
        return ending


def _stopped(
    endpoint: WebhookEndpoint | None, done: RoundResult, operator_email: str | None
) -> RoundResult:
    """How a drain ends that found its endpoint deleted or disabled."""
    if endpoint is None:
        return replace(done, stopped=True, disabled_reason="deleted")
    reason = endpoint.disabled_reason  # None: an admin disabled it
    return replace(
        done,
        stopped=True,
        disabled_reason=reason or "disabled",
        disabled_at=as_utc(endpoint.updated_at) if reason else None,
        url=endpoint.url,
        tell=operator_email if reason else None,
    )


def _counted(done: RoundResult, answers: list[Attempted]) -> RoundResult:
    """``done`` with ``answers`` counted."""
    delivered = sum(answer.result == "delivered" for answer in answers)
    retrying = sum(answer.result == "retry" for answer in answers)
    return replace(
        done,
        delivered=done.delivered + delivered,
        retrying=done.retrying + retrying,
        failed=done.failed + len(answers) - delivered - retrying,
    )
