"""The activities that emit webhook events and deliver them, signed, to their endpoints.

``emit_event`` (behind the ``emit_milestone`` activity and ``offer_outcome``)
stores an event and its deliveries (``crm.store.emissions``: events emitted
at once share a transaction) and wakes the dispatch workflow of each endpoint
it reached that no drain holds (signal-with-start, ``workflows.
webhook_dispatch``). ``deliver_due`` drains an endpoint (``activities.
webhook_drain``): under its lease it posts the due deliveries, and those
emitted while it runs, through ``activities.outbound``, signed with every
current secret under the delivery's ``webhook-id`` (the same on every
attempt), and writes the answers back, until none has come for a while.
"""

from __future__ import annotations

import asyncio

from temporalio import activity
from temporalio.client import Client

from activities.outbound import Outbound
from activities.webhook_drain import Drain, Posting
from crm.platform.dispatch import wake_endpoints
from crm.store.db import Database
from crm.store.emissions import store_event
from crm.store.models import utcnow
from crm.store.webhooks import Emitted
from workflows.webhook_types import (
    DELIVER_DUE,
    EMIT_EVENT,
    DeliveryRound,
    MilestoneEmitted,
    MilestoneEvent,
    RoundResult,
)

#: How often a drain tells Temporal it is alive (the workflow's heartbeat timeout is 30 s).
HEARTBEAT_EVERY = 5.0


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
        self._posting = Posting(outbound, codec_keys, concurrency, operator_email)

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
        start = max(request.now, utcnow())
        try:
            return await Drain(self._database, self._posting, request.endpoint_id, start).run()
        finally:
            beating.cancel()


async def _heartbeat_every(seconds: float) -> None:
    while True:
        activity.heartbeat()
        await asyncio.sleep(seconds)
