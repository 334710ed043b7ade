"""A user's automation, interpreted: one record's run of one version of a definition.

The run takes the definition's steps (``crm.domain.automation``) one at a
time from the first: it sends emails, creates tasks, waits on durable timers
counted in the calendar's business time or for a record event, branches on
CEL conditions and sets variables, starts built-in processes (an activity,
idempotent by the process's business key), asks for approvals (the
approval process as a child workflow, ``approval-automation-...-{step}``)
and calls HTTP endpoints (an activity, retried for up to an hour under one
``webhook-id``), until an ``end`` step, the last step, or its goal. The record events the API
delivers (signal ``record_event``, taken once per ``event_id``) update the
record the expressions see; one that makes the goal true ends the run as
``goal_met``, even in the middle of a wait (or an approval, then withdrawn).

A step that cannot be taken on this record's data (a condition on a missing
field, an owner field left empty, an unknown staff id) ends the run as
``failed``, visibly: an audit entry ``failed:<step>``, the ``state`` query's
outcome and the ``CrmStage`` search attribute ``failed``. It never fails the
workflow task. A step leading back to an earlier one (a loop) continues as
new, so a run that lasts years keeps a short history.
"""

import asyncio
from datetime import timedelta
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.common import (
    VersioningBehavior,
)
from temporalio.exceptions import (
    ActivityError,
    is_cancelled_exception,
)

from workflows.automation_steps import PROCESS_NAME, StepFailed
from workflows.automation_waits import AutomationWaits
from workflows.steps import carry_on_reason

with workflow.unsafe.imports_passed_through():
    from crm.domain.automation import Step, customer_of
    from workflows.automation_types import (
        AutomationInput,
        AutomationResult,
        RecordEvent,
        jsonable,
    )
    from workflows.common import (
        AUTOMATION_ID,
        AUTOMATION_VERSION,
        CUSTOMER_ID,
        PROCESS,
        RECORD_ID,
        STAGE,
        ProcessState,
    )
    from workflows.contracts import EmailRequest


#: From this patch on, a cancelled run records why in its outcome and its
#: ``automation.cancelled`` event; runs cancelled before it recorded the reason as a failed
#: step (``failed:<reason>``), which the needs-attention list took for a failure.
CANCELLED_NOT_FAILED = "automation-cancelled-not-failed"
#: From this patch on, a run is for its record's customer (``customer_of``: the record's
#: ``customer_id`` when it enrolled or continued as new, else the record): its ``CustomerId``
#: search attribute, so it is on the customer's timeline, and the customer of its events,
#: tasks and approvals. Runs before it gave the record's id as their customer.
RECORD_CUSTOMER = "automation-record-customer"
#: From this patch on, a run cancelled while it enrols (a record deleted the moment it was
#: enrolled) ends as any cancelled run does, its reason recorded and emitted; before it,
#: such a run ended with no outcome.
CANCELLED_ENROLLING = "automation-cancelled-enrolling"
#: From this patch on, a cancelled run (its record deleted, or cancelled by hand) closes its
#: open tasks, as a finished approval or a cancelled lead does: nobody works on a run that
#: is over. Before it, they stayed open in their assignees' work.
CANCELLED_CLOSES_TASKS = "automation-cancelled-closes-tasks"


@workflow.defn(versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class AutomationWorkflow(AutomationWaits):
    """One record's run of one automation version; see the module docstring."""

    @workflow.init
    def __init__(self, run: AutomationInput) -> None:
        super().__init__(run)
        self._step_id: str | None = None

    @workflow.run
    async def run(self, run: AutomationInput) -> AutomationResult:
        definition = self._definition
        for_customer = workflow.patched(RECORD_CUSTOMER)
        if for_customer:
            self._state.customer_id = customer_of(run.record_id, run.record)
        outcome, failure = "completed", None
        enrolling = True
        try:
            if run.at_step is None:
                workflow.upsert_search_attributes(
                    [
                        PROCESS.value_set(PROCESS_NAME),
                        STAGE.value_set("enrolled"),
                        AUTOMATION_ID.value_set(run.automation_id),
                        AUTOMATION_VERSION.value_set(str(run.version)),
                        RECORD_ID.value_set(run.record_id),
                    ]
                    + ([CUSTOMER_ID.value_set(self._state.customer_id)] if for_customer else [])
                )
                await self._emit("automation.enrolled", self._run_fields(), step="enrolled")
            elif for_customer:  # a run continued as new is for the customer too
                workflow.upsert_search_attributes([CUSTOMER_ID.value_set(self._state.customer_id)])
            enrolling = False
            step_id: str | None = run.at_step or definition.steps[0].id
            while step_id is not None and not self._goal_met:
                step = definition.step(step_id)
                self._step_id = self._state.stage = step.id
                try:
                    following = await self._take(step)
                except StepFailed as err:
                    outcome, failure = "failed", f"{step.id}: {err}"
                    break
                self._steps_taken += 1
                if step.end is not None:
                    outcome = step.end.outcome
                    break
                if self._goal_met:
                    break
                if following is not None and definition.index(following) <= definition.index(
                    step.id
                ):
                    self._continue_as_new(following)
                step_id = following
            if self._goal_met:
                outcome = "goal_met"
        except (asyncio.CancelledError, ActivityError) as err:
            if not is_cancelled_exception(err):
                raise
            if enrolling and not workflow.patched(CANCELLED_ENROLLING):
                raise
            reason = workflow.cancellation_reason() or "cancelled"
            if workflow.patched(CANCELLED_CLOSES_TASKS):
                await self._close_tasks(f"cancelled: {reason}", "close the run's tasks")
            if workflow.patched(CANCELLED_NOT_FAILED):
                await self._finish("cancelled", None, reason=reason)
            else:
                await self._finish("cancelled", reason)
            raise
        await self._finish(outcome, failure)
        return AutomationResult(
            automation_id=run.automation_id,
            version=run.version,
            record_id=run.record_id,
            outcome=outcome,
            last_step=self._step_id,
            steps_taken=self._steps_taken,
            variables=jsonable(self._view.variables),
            failure=failure,
        )

    @workflow.signal
    def record_event(self, event: RecordEvent) -> None:
        """A change of the record: taken once per ``event_id``; may meet the goal or end a wait."""
        if event.event_id in self._view.seen or event.record_id != self._run.record_id:
            return
        self._take_event(event)
        self._show_step(f"event:{event.type}", ", ".join(event.changed()) or event.event_id)

    @workflow.query
    def state(self) -> ProcessState:
        """The current step, what it waits for, the record's fields and the run's variables."""
        self._state.details = {
            "automation_id": self._run.automation_id,
            "version": self._run.version,
            "step": self._state.stage,
            "steps_taken": self._steps_taken,
            "variables": jsonable(self._view.variables),
            "record": self._view.record,
        }
        return self._state

    # Taking one step: where the run goes next (None: it ends).

    async def _take(self, step: Step) -> str | None:
        following = self._definition.following(step.id)
        if step.email is not None:
            to = await self._address(step.email.to)
            await self._email(
                step.id,
                EmailRequest(
                    key=self._key(f"{self._steps_taken}-{step.id}"),
                    process_id=self._process_id,
                    to=to,
                    template=f"{self._run.automation_id}.{step.id}"[:100],
                    context=self._template_values(),
                    subject=step.email.subject,
                    body=step.email.body,
                    category=step.email.email_class(),
                ),
                within=timedelta(days=1),
            )
        elif step.task is not None:
            task_id = await self._create_task(step)
            if step.task.wait_for_done is not None:
                return await self._wait_for_done(step, task_id, following)
        elif step.wait is not None:
            return await self._wait(step, following)
        elif step.branch is not None:
            for case in step.branch.cases:
                if self._holds(case.condition):
                    return case.next
            return step.branch.otherwise or following
        elif step.set is not None:
            for name, source in step.set.items():
                self._view.variables[name] = self._evaluate(source)
            self._show_step(f"set:{step.id}", ", ".join(step.set))
        elif step.start is not None:
            await self._start_process(step)
        elif step.approval is not None:
            return await self._ask_approval(step, following)
        elif step.http is not None:
            return await self._call_http(step, following)
        return following

    async def _create_task(self, step: Step) -> int:
        """Create the step's task; its id."""
        task = step.task
        assert task is not None
        assignee, assignment_key = await self._assignee(step.id, task.assignee)
        try:
            name = f"{self._steps_taken}-{step.id}"
            request = self._task_request(
                name,
                customer_id=self._state.customer_id,
                assignee_id=assignee,
                kind=step.id[:50],
                title=task.title,
                due=task.due.after(workflow.now(), self._calendar),
                detail=task.detail,
                assignment_key=assignment_key,
                template_values=self._template_values(),
            )
            created = await self._task(name, request)
        except ActivityError as err:
            raise StepFailed(carry_on_reason(err)) from None
        return created.task_id

    # The end.

    async def _finish(
        self, outcome: str, failure: str | None, *, reason: str | None = None
    ) -> None:
        """Record how the run ended: ``failure`` (``<step>: <why>``) for a step that failed,
        ``reason`` for a cancelled run."""
        self._state.outcome = outcome
        self._set_stage("failed" if outcome == "failed" else outcome)
        why = failure or reason
        workflow.set_current_details(f"Ended: {outcome}" + (f" ({why})" if why else ""))
        detail: dict[str, object] = {"outcome": outcome, "steps_taken": self._steps_taken}
        if reason is not None:
            detail["reason"] = reason
        if failure is not None:
            step = failure.partition(":")[0]
            self._show_step(f"failed:{step}", failure)
            await self._audit_step(f"failed:{step}", {"reason": failure})
            detail["failure"] = failure
        await self._audit_step("outcome", detail)
        await self._emit_end(outcome, failure, reason)
        await workflow.wait_condition(workflow.all_handlers_finished)

    async def _emit_end(self, outcome: str, failure: str | None, reason: str | None) -> None:
        """Emit how the run ended: ``automation.step_failed`` (the step and why),
        ``.goal_met``, ``.cancelled`` (why) or ``.completed`` (with the ``end`` step's
        outcome)."""
        fields: dict[str, Any] = {**self._run_fields(), "outcome": outcome}
        if failure is not None:
            step, _, why = failure.partition(": ")
            fields |= {"step": step, "reason": why}
        if reason is not None:
            fields["reason"] = reason
        kind = {"failed": "step_failed", "goal_met": "goal_met", "cancelled": "cancelled"}
        await self._emit(f"automation.{kind.get(outcome, 'completed')}", fields, step="ended")

    def _run_fields(self) -> dict[str, Any]:
        run = self._run
        return {
            "automation_id": run.automation_id,
            "version": run.version,
            "object": self._definition.object,
            "record_id": run.record_id,
            "has_goal": self._definition.goal is not None,
        }

    def _continue_as_new(self, at_step: str) -> NoReturn:
        run = self._run
        workflow.continue_as_new(
            AutomationInput(
                automation_id=run.automation_id,
                version=run.version,
                definition=run.definition,
                calendar=run.calendar,
                record_id=run.record_id,
                record=self._view.record,
                at_step=at_step,
                variables=jsonable(self._view.variables),
                previous=self._view.previous,
                seen_events=self._view.seen,
                steps_taken=self._steps_taken,
                enrolled_at=run.enrolled_at,
            )
        )
