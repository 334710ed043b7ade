"""The answers a webhook drain (``activities.webhook_drain``) writes back, in batches by one
writer at a time, while its posting goes on.

A batch is written (``record_round``: the attempts, the deliveries, the endpoint's run of
failures) once ``WRITE_BATCH`` answers have gathered, once the oldest has waited
``WRITE_AFTER``, or at once when the drain asks (it is ending). Until its write ends, a
batch's deliveries are still pending in the database; the drain holds them meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime

from crm.store.db import Database
from crm.store.webhook_deliveries import Attempted, EndpointState, record_round

#: Answers written back in one transaction once this many have gathered...
WRITE_BATCH = 200
#: ...or once the oldest has waited this long (seconds), or the drain is ending.
WRITE_AFTER = 0.25


@dataclass(frozen=True)
class Written:
    """A batch written back: its deliveries' keys, the drain's time it was written at, and
    where the endpoint stands after it."""

    keys: frozenset[str]
    at: datetime
    state: EndpointState


class AnswerWrites:
    """One endpoint's answers, gathered and written back; ``wake`` is set when a write ends."""

    def __init__(self, database: Database, endpoint_id: str, wake: asyncio.Event) -> None:
        self._database = database
        self._endpoint_id = endpoint_id
        self._wake = wake
        self._gathered: list[Attempted] = []
        self._oldest_at = 0.0
        self._writing: asyncio.Task[Written] | None = None

    def add(self, answer: Attempted) -> bool:
        """Keep ``answer`` for the next batch; whether a full batch is waiting."""
        if not self._gathered:
            self._oldest_at = time.monotonic()
        self._gathered.append(answer)
        return len(self._gathered) >= WRITE_BATCH

    def start(self, now: datetime, *, at_once: bool) -> list[Attempted]:
        """Start writing the answers gathered, at the drain's time ``now``, if no write is
        under way and a batch is due (full, its oldest ``WRITE_AFTER`` old, or ``at_once``);
        the batch started, or none."""
        if self._writing is not None or not self._gathered:
            return []
        waited = time.monotonic() - self._oldest_at
        if len(self._gathered) < WRITE_BATCH and waited < WRITE_AFTER and not at_once:
            return []
        batch, self._gathered = self._gathered, []
        self._writing = asyncio.create_task(self._write(batch, now))
        return batch

    def written(self) -> Written | None:
        """The write that has ended, once (raising what it raised); None while it runs, or
        when none was started."""
        if self._writing is None or not self._writing.done():
            return None
        ended, self._writing = self._writing, None
        return ended.result()

    def running(self) -> list[asyncio.Task[Written]]:
        """The write under way, if any (to cancel when the drain fails)."""
        return [self._writing] if self._writing is not None else []

    async def _write(self, batch: list[Attempted], now: datetime) -> Written:
        try:
            state = await record_round(self._database, self._endpoint_id, batch, now)
            return Written(frozenset(answer.delivery_key for answer in batch), now, state)
        finally:
            self._wake.set()
