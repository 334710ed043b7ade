"""Waking webhook endpoints' dispatch workflows, from wherever an event is emitted."""

from __future__ import annotations

from collections.abc import Iterable

from temporalio.client import Client
from temporalio.service import RPCError

from crm.platform.temporal import TemporalUnavailable
from workflows.webhook_types import WAKE, DispatchInput, dispatch_id


async def wake_endpoints(client: Client, task_queue: str, endpoint_ids: Iterable[str]) -> None:
    """Start or wake (signal-with-start) the dispatch workflow of each endpoint, which then
    delivers what is due. Raises TemporalUnavailable; the deliveries stay pending, and the
    next wake of the endpoint (an event, a redelivery, a worker's start) takes them."""
    for endpoint_id in endpoint_ids:
        try:
            await client.start_workflow(
                "WebhookDispatch",
                DispatchInput(endpoint_id),
                id=dispatch_id(endpoint_id),
                task_queue=task_queue,
                start_signal=WAKE,
            )
        except RPCError as err:
            raise TemporalUnavailable(err.message) from err
