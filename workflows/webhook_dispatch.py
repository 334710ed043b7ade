"""The workflow that delivers one webhook endpoint's events, for as long as any is pending.

One run per endpoint (``webhooks-{endpoint_id}``), started or woken by the
signal-with-start of whoever emits an event for it (``activities.
webhook_delivery.emit_event``). Each round is the ``deliver_due`` activity, a
drain (``activities.webhook_drain``) which attempts the deliveries due, and
those emitted while it runs (whose emitters then send no signal), and writes
their results to the database;
between rounds the workflow sleeps on a durable timer until the next retry is
due, or until it is woken. Retries therefore survive any restart: a delivery
due in ten hours is attempted in ten hours. With nothing pending for an hour
the run ends (the next event starts another); it continues as new when its
history grows long. When a round disables the endpoint (a 410, an address
inside the network, three days of failures) the operator is emailed and the
run ends.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import VersioningBehavior
from temporalio.exceptions import ActivityError

from workflows.retries import ROUND_RETRY

with workflow.unsafe.imports_passed_through():
    from workflows.contracts import SEND_EMAIL, EmailReceipt, EmailRequest
    from workflows.webhook_types import (
        DELIVER_DUE,
        WAKE,
        DeliveryRound,
        DispatchInput,
        DispatchSummary,
        RoundResult,
    )

#: The name its recorded histories go by (``tests/histories/webhooks-*.json``).
PROCESS_NAME = "webhooks"
#: How long a run with nothing pending waits for an event before it ends.
IDLE = timedelta(hours=1)
#: Rounds before the run continues as new.
ROUNDS_PER_RUN = 500


@workflow.defn(name="WebhookDispatch", versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class WebhookDispatchWorkflow:
    def __init__(self) -> None:
        self._woken = False

    @workflow.signal(name=WAKE)
    def wake(self) -> None:
        """New deliveries are due now."""
        self._woken = True

    @workflow.run
    async def run(self, request: DispatchInput) -> DispatchSummary:
        summary = DispatchSummary()
        while (
            summary.rounds < ROUNDS_PER_RUN and not workflow.info().is_continue_as_new_suggested()
        ):
            self._woken = False
            done: RoundResult = await workflow.execute_activity(
                DELIVER_DUE,
                DeliveryRound(request.endpoint_id, workflow.now()),
                result_type=RoundResult,
                start_to_close_timeout=timedelta(minutes=10),
                heartbeat_timeout=timedelta(seconds=30),
                retry_policy=ROUND_RETRY,
            )
            summary.rounds += 1
            summary.delivered += done.delivered
            summary.failed += done.failed
            if done.stopped and self._woken:  # enabled again meanwhile, perhaps: look again
                continue
            if done.stopped:
                summary.stopped = done.disabled_reason
                if done.tell is not None and done.disabled_reason is not None:
                    await self._tell_operator(request.endpoint_id, done)
                return summary
            if done.more:
                continue
            if done.next_due is None:
                if not await self._wait(IDLE):
                    return summary
                continue
            await self._wait(done.next_due - workflow.now())
        workflow.continue_as_new(request)

    async def _wait(self, delay: timedelta) -> bool:
        """Sleep up to ``delay`` (a durable timer); whether it was woken first."""
        if self._woken or delay <= timedelta(0):
            return True
        try:
            await workflow.wait_condition(lambda: self._woken, timeout=delay)
        except TimeoutError:
            return False
        return True

    async def _tell_operator(self, endpoint_id: str, done: RoundResult) -> None:
        assert done.tell is not None
        try:
            await self._email_operator(endpoint_id, done.tell, done)
        except ActivityError as err:  # the endpoint stays disabled, and says why
            workflow.logger.warning("cannot tell %s about %s: %s", done.tell, endpoint_id, err)

    async def _email_operator(self, endpoint_id: str, to: str, done: RoundResult) -> None:
        disabled_at = done.disabled_at or workflow.now()  # one email per disabling
        await workflow.execute_activity(
            SEND_EMAIL,
            EmailRequest(
                key=f"{workflow.info().workflow_id}/disabled/{disabled_at.isoformat()}",
                process_id=workflow.info().workflow_id,
                to=to,
                template="webhook_disabled",
                context={
                    "endpoint_id": endpoint_id,
                    "url": done.url,
                    "reason": done.disabled_reason,
                },
                subject="Webhook endpoint {{ endpoint_id }} was disabled",
                body=(
                    "crmflow stopped delivering to the webhook endpoint {{ endpoint_id }} "
                    "({{ url }}): {{ reason }}.\n\n"
                    "Its pending deliveries failed. Fix the receiver, enable the endpoint "
                    '(PATCH /v1/webhooks/{{ endpoint_id }} {"enabled": true}) and redeliver '
                    "what failed (POST /v1/webhooks/{{ endpoint_id }}/redeliver).\n"
                ),
            ),
            result_type=EmailReceipt,
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=timedelta(days=1),
        )
