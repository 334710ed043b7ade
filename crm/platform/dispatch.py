"""Waking webhook endpoints' dispatch workflows, from wherever an event is emitted.

A wake is a signal-with-start of the endpoint's ``webhooks-{endpoint_id}`` run,
sent after the event's deliveries were committed. Wakes are coalesced per
endpoint within a process: a caller waits for a wake that began after it
asked, and one such wake serves every caller that asked before it began, so a
burst of events for one endpoint costs a few signals, not one each. The
endpoints of one event are woken at the same time.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from temporalio.client import Client
from temporalio.service import RPCError

from crm.platform.temporal import TemporalUnavailable
from workflows.webhook_types import WAKE, DispatchInput, dispatch_id


async def wake_endpoints(client: Client, task_queue: str, endpoint_ids: Iterable[str]) -> None:
    """Start or wake (signal-with-start) the dispatch workflow of each endpoint, which then
    delivers what is due. Raises TemporalUnavailable; the deliveries stay pending, and the
    next wake of the endpoint (an event, a redelivery, a worker's start) takes them."""
    wakes = _wakes()

    async def wake(endpoint_id: str) -> None:
        async def send() -> None:
            await client.start_workflow(
                "WebhookDispatch",
                DispatchInput(endpoint_id),
                id=dispatch_id(endpoint_id),
                task_queue=task_queue,
                start_signal=WAKE,
            )

        await wakes.wake((id(client), task_queue, endpoint_id), send)

    try:
        await asyncio.gather(*(wake(endpoint_id) for endpoint_id in set(endpoint_ids)))
    except RPCError as err:
        raise TemporalUnavailable(err.message) from err


@dataclass
class _Coalesced:
    """Per endpoint: wakes asked for, the last asked for that a sent wake covers, and the
    lock that lets one wake go at a time."""

    asked: dict[object, int] = field(default_factory=dict)
    covered: dict[object, int] = field(default_factory=dict)
    locks: dict[object, asyncio.Lock] = field(default_factory=dict)

    async def wake(self, key: object, send: Callable[[], Awaitable[None]]) -> None:
        """Return once a wake that began after this call was sent (``send``, or another
        caller's)."""
        mine = self.asked[key] = self.asked.get(key, 0) + 1
        async with self.locks.setdefault(key, asyncio.Lock()):
            if self.covered.get(key, 0) >= mine:
                return
            covers = self.asked[key]  # every caller that asked before this wake began
            await send()
            self.covered[key] = max(self.covered.get(key, 0), covers)


_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Coalesced] = (
    weakref.WeakKeyDictionary()
)


def _wakes() -> _Coalesced:
    """This event loop's coalesced wakes (locks belong to one loop)."""
    loop = asyncio.get_running_loop()
    if loop not in _BY_LOOP:
        _BY_LOOP[loop] = _Coalesced()
    return _BY_LOOP[loop]
