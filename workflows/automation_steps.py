"""What an automation's run does besides waiting: call out and read its record.

``AutomationSteps`` is the base of ``workflows.automation.AutomationWorkflow``:
it holds the run's definition, record and calendar, evaluates CEL on the
record (a condition or expression that cannot be evaluated fails the step:
``StepFailed``), finds the people a step names, and takes the steps that
start work elsewhere: a built-in process (an activity, idempotent by the
process's business key), an approval (the approval process as a child
workflow, ``approval-automation-...-{step}``, withdrawn when the goal is met
meanwhile) and an HTTP call (an activity, retried for up to an hour under
one ``webhook-id``).
"""

import asyncio
import contextlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError
from temporalio.workflow import ChildWorkflowHandle

from workflows.activity_steps import ActivitySteps
from workflows.approval import ApprovalWorkflow
from workflows.retries import HTTP_RETRY, START_RETRY
from workflows.steps import carry_on_reason

with workflow.unsafe.imports_passed_through():
    from crm.domain.automation import Person, Step
    from crm.domain.calendar import BusinessCalendar
    from crm.domain.expressions import ExpressionError, Names, evaluate, holds, instant
    from workflows.approval_types import ApprovalInput, ApprovalResult, Approver, approval_id
    from workflows.automation_types import (
        CALL_HTTP,
        START_PROCESS,
        AutomationInput,
        HttpCallRequest,
        HttpCallResult,
        ProcessStartRequest,
        ProcessStartResult,
        RecordView,
        automation_run_id,
        jsonable,
    )
    from workflows.common import APPROVAL_ASSIGNEE, CUSTOMER_ID, PROCESS, STAGE
    from workflows.contracts import StaffContact
    from workflows.task_types import pool_assignee

PROCESS_NAME = "automation"


class StepFailed(Exception):
    """A step cannot be taken on this record's data; the run ends as ``failed``."""


class AutomationSteps(ActivitySteps):
    """The run's definition, record and calendar, and the steps that call out."""

    def __init__(self, run: AutomationInput) -> None:
        info = workflow.info()
        super().__init__(
            process=PROCESS_NAME,
            customer_id=run.record_id,
            step_prefix=f"{info.first_execution_run_id[:8]}/",
        )
        self._run = run
        self._definition = run.definition
        self._calendar = BusinessCalendar.from_spec(run.calendar)
        self._view = RecordView(
            run.definition,
            dict(run.record),
            previous=dict(run.previous),
            variables=dict(run.variables),
            seen=list(run.seen_events),
        )
        self._steps_taken = run.steps_taken
        self._goal_met = False

    # Steps that start work elsewhere.

    async def _start_process(self, step: Step) -> None:
        start = step.start
        assert start is not None
        fields = {name: jsonable(self._evaluate(source)) for name, source in start.fields.items()}
        try:
            started: ProcessStartResult = await workflow.execute_activity(
                START_PROCESS,
                ProcessStartRequest(
                    key=self._key(f"{self._steps_taken}-{step.id}"),
                    process=start.process,
                    fields=fields,
                    requested_by=self._process_id,
                    requested_at=workflow.now(),
                    tenant=self._tenant(),
                ),
                result_type=ProcessStartResult,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=START_RETRY,
                summary=f"start {start.process}",
            )
        except ActivityError as err:
            raise StepFailed(carry_on_reason(err)) from None
        how = "started" if started.created else "already running or done"
        self._show_step(f"start:{step.id}", f"{started.process_id} {how}")
        await self._audit_step(
            f"start:{step.id}",
            {
                "process": start.process,
                "process_id": started.process_id,
                "created": started.created,
            },
        )
        if start.save_as is not None:
            self._view.variables[start.save_as] = started.process_id

    async def _call_http(self, step: Step, following: str | None) -> str | None:
        """POST the step's body to its URL; where the run goes on (``on_failure`` when the
        endpoint refused the call or stayed unreachable, if the step names one)."""
        call = step.http
        assert call is not None
        body = {name: jsonable(self._evaluate(source)) for name, source in call.body.items()}
        try:
            answered: HttpCallResult = await workflow.execute_activity(
                CALL_HTTP,
                HttpCallRequest(
                    key=self._key(f"{self._steps_taken}-{step.id}"),
                    url=call.url,
                    body=body,
                    requested_by=self._process_id,
                ),
                result_type=HttpCallResult,
                start_to_close_timeout=timedelta(seconds=60),
                schedule_to_close_timeout=timedelta(hours=1),
                retry_policy=HTTP_RETRY,
                summary=f"POST {call.url}"[:200],
            )
        except ActivityError as err:
            reason = carry_on_reason(err)
            if isinstance(err.cause, ApplicationError) and err.cause.type:
                reason = f"{err.cause.type}: {reason}"
            if call.on_failure is None:
                raise StepFailed(reason) from None
            self._show_step(f"http_failed:{step.id}", reason)
            await self._audit_step(f"http:{step.id}", {"url": call.url, "failure": reason})
            return call.on_failure
        self._show_step(f"http:{step.id}", f"{call.url} answered {answered.status}")
        await self._audit_step(f"http:{step.id}", {"url": call.url, "status": answered.status})
        if call.save_as is not None:
            self._view.variables[call.save_as] = answered.status
        return following

    async def _ask_approval(self, step: Step, following: str | None) -> str | None:
        """Ask for the step's approval as a child workflow; where its outcome leads.

        The goal met while the approval waits withdraws it (the child is
        cancelled) and ends the run.
        """
        approval = step.approval
        assert approval is not None
        request = await self._approval_request(step)
        child_id = approval_id(request.subject_id, self._tenant())
        first = request.chain[0]
        approver_id = first.approver_id
        deadline = first.decide_by or workflow.now() + timedelta(seconds=first.timeout_seconds)
        self._state.due[step.id] = deadline
        self._state.waiting_for = [f"approval:{approver_id}"]
        self._show_step(f"approval:{step.id}", f"{child_id} from {approver_id}")
        self._set_stage(step.id)
        workflow.set_current_details(
            f"Step {step.id}: waiting for {approver_id} to decide "
            f"until {deadline:%Y-%m-%d %H:%M} UTC."
        )
        try:
            child = await workflow.start_child_workflow(
                ApprovalWorkflow.run,
                request,
                id=child_id,
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(PROCESS, "approval"),
                        SearchAttributePair(CUSTOMER_ID, self._state.customer_id),
                        SearchAttributePair(STAGE, "awaiting_decision"),
                        SearchAttributePair(APPROVAL_ASSIGNEE, approver_id),
                    ]
                ),
                static_summary=f"Approval for {self._definition.name}: {self._run.record_id}",
                memo={"tenant": self._tenant()} if self._tenant() else None,
            )
            try:
                await workflow.wait_condition(lambda: child.done() or self._goal_met)
            except asyncio.CancelledError:
                await self._withdraw(step, child, "the run was cancelled")
                raise
            if not child.done():
                await self._withdraw(step, child, "goal met")
                return following
            result: ApprovalResult = child.result()
        except ChildWorkflowError as err:
            raise StepFailed(f"approval {child_id}: {err.cause or err}") from None
        finally:
            self._state.waiting_for = []
            self._state.due.pop(step.id, None)
        self._show_step(f"{result.outcome}:{step.id}", result.decided_by or "nobody decided")
        await self._audit_step(
            f"approval:{step.id}",
            {"approval_id": child_id, "outcome": result.outcome, "decided_by": result.decided_by},
        )
        if result.outcome == "rejected":
            return approval.on_rejected or following
        if result.outcome == "expired":
            return approval.on_expired or following
        return following

    async def _withdraw(
        self, step: Step, child: ChildWorkflowHandle[ApprovalWorkflow, ApprovalResult], why: str
    ) -> None:
        """Cancel the step's approval and let it close as withdrawn (its tasks closed)."""
        child.cancel()
        with contextlib.suppress(asyncio.CancelledError, ChildWorkflowError):
            await child
        self._show_step(f"withdrawn:{step.id}", why)

    async def _approval_request(self, step: Step) -> ApprovalInput:
        """The approval ``step`` asks for: its approver from the staff directory, its subject,
        and a subject id of the run and the step (the child's business key)."""
        approval = step.approval
        assert approval is not None
        approver = await self._contact(await self._staff_id(approval.approver))
        subject = self._evaluate(approval.subject)
        if not isinstance(subject, str) or not subject.strip():
            raise StepFailed(f"subject {approval.subject!r} gives no text: {subject!r}")
        now = workflow.now()
        decide_by = approval.timeout.after(now, self._calendar)
        timeout = decide_by - now
        run = self._run
        run_key = automation_run_id(run.automation_id, self._definition.object, run.record_id)
        return ApprovalInput(
            subject_id=f"{run_key}-{step.id}",
            subject=subject[:200],
            requester_id=self._process_id,
            chain=[
                Approver(
                    approver_id=approver.staff_id,
                    name=approver.name,
                    email=approver.email,
                    timeout_seconds=max(1, int(timeout.total_seconds())),
                    decide_by=decide_by,
                )
            ],
            customer_id=self._state.customer_id,
            details={
                "automation_id": run.automation_id,
                "record_id": run.record_id,
                "step": step.id,
            },
        )

    # Expressions on the record.

    def _names(self) -> dict[str, Any]:
        return self._view.names(workflow.now())

    def _holds(self, source: str) -> bool:
        return bool(self._checked(holds, source, "condition"))

    def _evaluate(self, source: str) -> Any:
        return self._checked(evaluate, source, "expression")

    def _instant(self, source: str) -> Any:
        return self._checked(instant, source, "expression")

    def _checked(self, evaluation: Callable[[str, Names], Any], source: str, what: str) -> Any:
        """``evaluation`` of ``source`` on the record; one that fails fails the step."""
        try:
            return evaluation(source, self._names())
        except ExpressionError as err:
            raise StepFailed(f"{what} {source!r}: {err}") from None

    def _template_values(self) -> dict[str, Any]:
        return self._view.template_values(workflow.now())

    # People: whom an email or task is for.

    async def _address(self, person: Person) -> str:
        if person.field is not None:
            address = self._view.record.get(person.field)
            if not isinstance(address, str) or "@" not in address:
                raise StepFailed(f"record.{person.field} is no email address: {address!r}")
            return str(address)
        staff_id = await self._staff_id(person)
        return (await self._contact(staff_id)).email

    async def _assignee(self, step_id: str, person: Person) -> tuple[str, str | None]:
        if person.pool is not None and person.claim:  # nobody's until a member claims it
            return pool_assignee(person.pool), None
        if person.pool is not None:
            try:
                assignment = await self._assign_owner(
                    self._key(f"{self._steps_taken}-{step_id}-assign"),
                    person.pool,
                    self._run.record_id,
                    summary=f"assign from {person.pool}",
                )
            except ActivityError as err:
                raise StepFailed(carry_on_reason(err)) from None
            return assignment.assignee_id, assignment.key
        return await self._staff_id(person), None

    async def _staff_id(self, person: Person) -> str:
        if person.staff is not None:
            staff_id = person.staff
        else:
            name = self._definition.owner_field if person.owner else person.field
            value = self._view.record.get(name or "")
            if not isinstance(value, str) or not value:
                raise StepFailed(f"record.{name} names no staff member: {value!r}")
            staff_id = str(value)
        if not person.manager:
            return staff_id
        manager = (await self._contact(staff_id)).manager_id
        if manager is None:
            raise StepFailed(f"{staff_id} has no manager")
        return manager

    async def _contact(self, staff_id: str) -> StaffContact:
        try:
            return await self._look_up_staff(staff_id)
        except ActivityError as err:
            raise StepFailed(carry_on_reason(err)) from None
