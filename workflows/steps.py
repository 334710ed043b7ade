"""What every process workflow does with its steps, written once.

Each process publishes its kind, customer and stage as search attributes,
shows the steps it took in its ``state`` query (``_show_step``), and writes
the ones that matter to the durable audit trail (``_audit_step``) under
idempotency keys derived from its workflow id. A step's activity runs through
``_execute``, on the task queue or as a local activity. The steps processes
share, each one activity, are ``workflows.publishing_steps.PublishingSteps``
(outcome offers, milestones) and ``workflows.activity_steps.ActivitySteps`` (a
task, an email...), built on this in that order.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    FailureError,
    is_cancelled_exception,
)
from temporalio.workflow import ActivityCancellationType

from workflows.common import CUSTOMER_ID, PROCESS, STAGE, ProcessState, StepEntry
from workflows.contracts import RECORD_STEP, AuditRecord, step_key
from workflows.retries import RECORD_RETRY
from workflows.task_types import TASK_CHANGED, TaskChange


class ProcessSteps:
    """Audit trail, visible steps and stage of one process run.

    A workflow class calls ``super().__init__(process=..., customer_id=...)``
    from its ``@workflow.init``. ``step_prefix`` goes before every step name in
    the idempotency keys (``{workflow_id}/{step_prefix}{step}``): a process that
    continues as new gives each run its own, so a step of the next run is not
    taken for one already done.
    """

    def __init__(self, *, process: str, customer_id: str, step_prefix: str = "") -> None:
        self._process_id = workflow.info().workflow_id
        self._step_prefix = step_prefix
        self._state = ProcessState(
            process=process, process_id=self._process_id, customer_id=customer_id, stage="starting"
        )
        #: The ids of this run's tasks a person completed (``task_changed``).
        self._tasks_done: set[int] = set()
        #: Take the steps as local activities (``_execute``); a process sets it, under a
        #: patch of its own, at the start of a run.
        self._local_steps = False

    @workflow.signal(name=TASK_CHANGED)
    def _on_task_changed(self, change: TaskChange) -> None:
        """A person completed or reassigned one of this run's tasks: shown in ``state``."""
        detail = f"{change.change} by {change.by}"
        if change.change == "reassigned":
            detail += f" to {change.assignee_id}"
        if change.note:
            detail += f": {change.note}"
        self._show_step(f"task:{change.kind}:{change.change}", detail)
        if change.change == "done":
            self._tasks_done.add(change.task_id)

    async def _execute(
        self,
        activity: str,
        arg: Any,
        *,
        start_to_close_timeout: timedelta,
        retry_policy: RetryPolicy,
        summary: str,
        result_type: type | None = None,
        schedule_to_close_timeout: timedelta | None = None,
        cancellation_type: ActivityCancellationType = ActivityCancellationType.TRY_CANCEL,
    ) -> Any:
        """Run one step's activity: on the task queue, or, once the process set
        ``_local_steps``, as a local activity in the workflow task that asks for it.

        A local activity is the same function with the same retries (past a minute of them
        they wait on a durable timer), recorded as a marker instead of three events and a
        task of its own: a run that takes several steps at one instant (an SLA level's
        email, notice, task and milestone) costs the server one workflow task instead of
        one per step.
        """
        execute = (
            workflow.execute_local_activity if self._local_steps else workflow.execute_activity
        )
        try:
            return await execute(
                activity,
                arg,
                result_type=result_type,
                start_to_close_timeout=start_to_close_timeout,
                schedule_to_close_timeout=schedule_to_close_timeout,
                retry_policy=retry_policy,
                summary=summary,
                cancellation_type=cancellation_type,
            )
        except FailureError as err:
            if isinstance(err, ActivityError) or not self._local_steps:
                raise
            # A local activity's final failure arrives bare (an ApplicationError), not as
            # the ActivityError of an activity task: wrapped, so that a step the run can do
            # without (an email to a suppressed address) is carried on from either way.
            raise ActivityError(
                f"local activity {activity} failed",
                scheduled_event_id=0,
                started_event_id=0,
                identity="",
                activity_type=activity,
                activity_id="",
                retry_state=None,
            ) from err

    async def _carry_on(
        self, err: ActivityError, shown: str, not_done: str, audited: str, detail: dict[str, object]
    ) -> None:
        """Note a step the run goes on without after ``err``: shown as ``shown`` (``<not_done>:
        <why>``) and audited as ``audited`` (``detail`` and why). A cancellation of the run is
        re-raised (``carry_on_reason``)."""
        reason = carry_on_reason(err)
        self._show_step(shown, f"{not_done}: {reason}")
        await self._audit_step(audited, {**detail, "reason": reason})

    def _publish_process(self, customer_id: str, stage: str) -> None:
        """Make the run findable: ``CrmProcess``, ``CustomerId`` and its first ``CrmStage``."""
        workflow.upsert_search_attributes(
            [
                PROCESS.value_set(self._state.process),
                CUSTOMER_ID.value_set(customer_id),
                STAGE.value_set(stage),
            ]
        )

    async def _audit_step(self, step: str, detail: dict[str, object]) -> None:
        """Append ``step`` to the durable audit trail, once, whatever the retries."""
        await self._execute(
            RECORD_STEP,
            AuditRecord(key=self._key(step), process_id=self._process_id, step=step, detail=detail),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RECORD_RETRY,
            summary=f"audit {step}",
        )

    def _set_stage(self, stage: str, *, searchable: bool = True) -> None:
        """Show ``stage`` in ``state``, and as ``CrmStage`` unless it is not ``searchable``.

        Each ``CrmStage`` change is a write to the server's visibility store,
        its most expensive kind; a step that passes in a moment (enriching,
        assigning) is better left to ``state`` and the UI's pending activity.
        """
        self._state.stage = stage
        if searchable:
            workflow.upsert_search_attributes([STAGE.value_set(stage)])

    def _show_step(self, step: str, detail: str = "") -> None:
        """Show ``step`` in the ``state`` query (not durable: see ``_audit_step``)."""
        self._state.steps.append(StepEntry(step=step, at=workflow.now(), detail=detail))

    def _tenant(self) -> str | None:
        """The tenant that started the run (its memo), or None for a run of no tenant."""
        tenant: str | None = workflow.memo_value("tenant", None, type_hint=str)
        return tenant

    def _key(self, step: str) -> str:
        return step_key(self._process_id, f"{self._step_prefix}{step}")


def carry_on_reason(err: ActivityError) -> str:
    """Why an activity failed, for a step the process can do without (enrichment, an email).

    A cancellation of the run also arrives as an ActivityError while an activity
    is running or waiting to retry; that one is re-raised, never carried on from.
    """
    if is_cancelled_exception(err):
        raise err
    return err.cause.message if isinstance(err.cause, ApplicationError) else str(err)
