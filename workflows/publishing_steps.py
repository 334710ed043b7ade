"""What a process run publishes: its outcomes, offered to the tenant's automations, and its
milestones, emitted to the tenant's webhook endpoints.

``PublishingSteps`` adds them to ``ProcessSteps``; ``workflows.activity_steps.
ActivitySteps`` is built on it. Each is one activity, taken once per step whatever the
retries, and the run does not depend on it: one that fails for ``OFFER_WITHIN`` is noted
and the run goes on. Runs begun before the patch that brought an event publish nothing.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows.contracts import OFFER_OUTCOME, OutcomeEvent, OutcomeOffered
from workflows.retries import OFFER_RETRY, RECORD_RETRY
from workflows.steps import ProcessSteps
from workflows.webhook_types import EMIT_EVENT, MilestoneEmitted, MilestoneEvent

#: Runs begun before it do not offer their outcomes to automations.
OUTCOME_EVENTS = "outcome-events"

#: Runs begun before it emit no milestone events to webhooks (their outcomes still are).
WEBHOOK_EVENTS = "webhook-events"

#: Runs begun before it emit none of the milestones the reports need besides the webhook
#: events before (``onboarding.started``, ``.milestone_reached``, ``renewal.term_started``,
#: ``.date_changed``, ``.upsell_offered``, ``.upsell_accepted``, ``lead.first_contacted``).
REPORT_MILESTONES = "report-milestones"

#: How long a run tries to offer its outcome before it notes the failure and ends anyway.
OFFER_WITHIN = timedelta(minutes=30)


class PublishingSteps(ProcessSteps):
    """The outcome offers and milestone emissions of a process run."""

    async def _offer_outcome(
        self, outcome: str, record_id: str, record: dict[str, Any], *, step: str = "outcome"
    ) -> None:
        """Offer ``outcome`` of ``record_id`` to the tenant's automations on
        ``crmflow.<process>``, once, noted as ``offered:<step>``.

        The process does not depend on it: an offer that fails for
        ``OFFER_WITHIN`` is noted (``state`` and the audit trail as
        ``offer_failed:<step>``) and the run goes on. A cancellation of the run
        is re-raised. Runs begun before ``OUTCOME_EVENTS`` offer nothing.
        """
        if not workflow.patched(OUTCOME_EVENTS):
            return
        event = OutcomeEvent(
            event_id=f"{self._key(f'offer_{step}')}@{workflow.info().run_id}",
            process=self._state.process,
            record_id=record_id,
            outcome=outcome,
            occurred_at=workflow.now(),
            record={
                "process_id": self._process_id,
                "customer_id": self._state.customer_id,
                **record,
            },
            tenant=self._tenant(),
        )
        try:
            offered: OutcomeOffered = await self._execute(
                OFFER_OUTCOME,
                event,
                result_type=OutcomeOffered,
                start_to_close_timeout=timedelta(seconds=60),
                schedule_to_close_timeout=OFFER_WITHIN,
                retry_policy=OFFER_RETRY,
                summary=f"offer {outcome} to automations",
            )
        except ActivityError as err:
            detail: dict[str, object] = {"outcome": outcome}
            await self._carry_on(
                err, f"offered:{step}", "not offered", f"offer_failed:{step}", detail
            )
            return
        runs = offered.enrolled + offered.delivered
        self._show_step(f"offered:{step}", f"{outcome}: {', '.join(runs) or 'no automation'}")

    async def _emit(
        self, event_type: str, data: dict[str, Any], *, step: str, since: str | None = None
    ) -> None:
        """Emit the milestone ``event_type`` (``crm.domain.webhook_events``) to the tenant's
        webhook endpoints, once per ``step``: the event is stored and its deliveries queued;
        delivering is not the run's concern.

        The run does not depend on it: an emission that fails for ``OFFER_WITHIN`` is
        noted (``state`` and the audit trail as ``emit_failed:<step>``) and the run goes
        on. Runs begun before ``WEBHOOK_EVENTS``, or before the patch ``since`` that
        brought this milestone, emit nothing.
        """
        event = self._milestone(event_type, data, step=step, since=since)
        if event is None:
            return
        try:
            await self._execute(
                EMIT_EVENT,
                event,
                result_type=MilestoneEmitted,
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=OFFER_WITHIN,
                retry_policy=RECORD_RETRY,
                summary=f"emit {event_type}",
            )
        except ActivityError as err:
            detail: dict[str, object] = {"type": event_type}
            await self._carry_on(
                err, f"emitted:{step}", "not emitted", f"emit_failed:{step}", detail
            )

    def _milestone(
        self, event_type: str, data: dict[str, Any], *, step: str, since: str | None = None
    ) -> MilestoneEvent | None:
        """The milestone event of ``step`` (see ``_emit``); None for a run begun before
        ``WEBHOOK_EVENTS`` or before the patch ``since``."""
        if since is not None and not workflow.patched(since):
            return None
        if not workflow.patched(WEBHOOK_EVENTS):
            return None
        return MilestoneEvent(
            event_id=f"{self._key(f'emit_{step}')}@{workflow.info().run_id}",
            type=event_type,
            process_id=self._process_id,
            occurred_at=workflow.now(),
            data={"process_id": self._process_id, "customer_id": self._state.customer_id, **data},
            tenant=self._tenant(),
        )
