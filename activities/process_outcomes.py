"""The activity that offers a built-in process's outcome to the tenant's automations.

The outcome goes in as a record event on ``crmflow.<process>`` (the name the
process publishes under, ``crm.domain.process_outcomes.published_as``: a
ticket's for the SLA workflow) through the same code that takes the system
of record's events, so it is taken once per event id: a retried attempt gets
the first attempt's answer and enrols nobody twice. It is also emitted, first,
as the webhook event ``<process>.<outcome>`` to the tenant's subscribed
endpoints (``activities.webhook_delivery``): stored with its fact for the
reports (with when the run began, read from Temporal), and their dispatchers
woken; the delivery itself never holds the process up.
"""

from __future__ import annotations

from datetime import datetime

from temporalio import activity
from temporalio.client import WorkflowExecutionDescription
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from activities.webhook_delivery import emit_event
from crm.automations.record_events import EventRefused, EventSettings, take_record_event
from crm.domain.process_outcomes import PROCESS_OBJECT_PREFIX, published_as
from crm.policy import Policy
from crm.store.db import Database
from crm.store.webhooks import Emitted
from workflows.automation_types import RecordEvent
from workflows.contracts import OFFER_OUTCOME, OutcomeEvent, OutcomeOffered


class OutcomeActivities:
    """Offers process outcomes to automations with the worker's database, policy and queue."""

    def __init__(self, database: Database, policy: Policy, task_queue: str) -> None:
        self._settings = EventSettings(database, policy, task_queue)
        self._database = database
        self._task_queue = task_queue

    @activity.defn(name=OFFER_OUTCOME)
    async def offer_outcome(self, outcome: OutcomeEvent) -> OutcomeOffered:
        """Enrol the records of the automations the outcome triggers and tell the runs that
        listen; the runs it reached. A repeat of the event id answers what the first did,
        whatever its body: the id names the run and the step, and a workflow task that
        offered it as a local activity and was retried builds it again at a later instant.
        Raises EventInProgress (retried) while an earlier attempt is still at it."""
        process = published_as(outcome.process)  # the SLA workflow publishes a ticket's
        event = RecordEvent(
            event_id=outcome.event_id,
            object=PROCESS_OBJECT_PREFIX + process,
            record_id=outcome.record_id,
            type=outcome.outcome,
            occurred_at=outcome.occurred_at,
            record=outcome.record,
        )
        emitted = Emitted(
            tenant=outcome.tenant,
            event_id=outcome.event_id,
            type=f"{process}.{outcome.outcome}",
            process_id=str(outcome.record.get("process_id") or activity.info().workflow_id),
            occurred_at=outcome.occurred_at,
            data=outcome.record,
            record_id=outcome.record_id,
            started_at=await run_started_at(),
        )
        await emit_event(activity.client(), self._database, self._task_queue, emitted)
        try:
            answer = await take_record_event(
                activity.client(), self._settings, outcome.tenant, event, id_names_the_event=True
            )
        except EventRefused as err:
            if err.kind == "event-in-progress":  # an earlier attempt is still at it: retry
                raise ApplicationError(str(err), type="EventInProgress") from err
            raise ApplicationError(str(err), type="EventRefused", non_retryable=True) from err
        return OutcomeOffered(
            enrolled=list(answer["enrolled"]),
            delivered=list(answer["delivered"]),
            errors=[f"{error['automation_id']}: {error['message']}" for error in answer["errors"]],
        )


async def describe_current_run() -> WorkflowExecutionDescription:
    """Temporal's description of the run this activity works for (its start, its memo).

    Raises temporalio.service.RPCError when Temporal cannot answer, RuntimeError for an
    activity that works for no workflow.
    """
    info = activity.info()
    if info.workflow_id is None:
        raise RuntimeError("the activity works for no workflow")
    handle = activity.client().get_workflow_handle(info.workflow_id, run_id=info.workflow_run_id)
    return await handle.describe()


async def run_started_at() -> datetime | None:
    """When the run this activity works for began (a renewal's term: its own run); None when
    Temporal cannot say, which only leaves the reports without the run's duration."""
    try:
        return (await describe_current_run()).start_time
    except (RPCError, RuntimeError):
        activity.logger.warning("the run's start is unknown", exc_info=True)
        return None
