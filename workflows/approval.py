"""Approval: a decision asked of a chain of approvers, usable as a child of any process.

1. The first approver of the chain is asked (email + task) and named in the
   ``ApprovalAssignee`` search attribute.
2. The current approver, or their delegate, decides ``approve`` or ``reject``
   with a comment:
   - through the ``decide`` update, whose validator refuses a caller who is
     not the current approver or delegate, a second decision and an unknown
     value (the API uses it and answers 403 / 409 / 422);
   - or through the ``decide`` signal of the same shape, which the Temporal
     UI and ``temporal workflow signal`` can send; a signal that the update's
     validator would refuse is noted in the state and otherwise ignored.
3. A step whose approver does not decide within its timeout escalates to the
   next approver (email + task); the last step's timeout expires the request.

The result says approved, rejected or expired, who decided (and on whose
behalf, for a delegate), when, and with which comment.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import VersioningBehavior
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

from workflows.activity_steps import ActivitySteps
from workflows.retries import RECORD_RETRY

with workflow.unsafe.imports_passed_through():
    from workflows.approval_types import (
        DECISIONS,
        ApprovalDecision,
        ApprovalInput,
        ApprovalResult,
        Approver,
    )
    from workflows.common import (
        APPROVAL_ASSIGNEE,
        ProcessState,
    )
    from workflows.contracts import (
        CREATE_TASK,
        EmailRequest,
        TaskRef,
        TaskRequest,
    )

PROCESS_NAME = "approval"
#: Added after runs were in flight: runs that began before it finish without closing tasks.
CLOSE_TASKS_PATCH = "close-approval-tasks"


@workflow.defn(versioning_behavior=VersioningBehavior.PINNED)
class ApprovalWorkflow(ActivitySteps):
    """One approval request; see the module docstring for the chain and its timeouts."""

    @workflow.init
    def __init__(self, request: ApprovalInput) -> None:
        super().__init__(process=PROCESS_NAME, customer_id=request.customer_id)
        self._request = request
        self._step = 0
        self._deadline: datetime | None = None
        self._escalations: list[str] = []
        self._result: ApprovalResult | None = None

    @workflow.run
    async def run(self, request: ApprovalInput) -> ApprovalResult:
        if problems := request.problems():
            message = "invalid approval input: " + "; ".join(problems)
            raise ApplicationError(message, type="InvalidInput", non_retryable=True)
        self._publish_process(request.customer_id, "awaiting_decision")
        try:
            for index, approver in enumerate(request.chain):
                if await self._ask(index, approver):
                    break
            else:
                self._expire()
        except (asyncio.CancelledError, ActivityError) as err:
            if not is_cancelled_exception(err):  # a cancel mid-activity is an ActivityError
                raise
            await self._close_as_withdrawn()
            raise
        result = self._result_or_fail()
        await self._finish(result)
        return result

    @workflow.update(name="decide")
    def decide(self, decision: ApprovalDecision) -> ApprovalResult:
        """Approve or reject as the current approver or their delegate; returns the result."""
        return self._accept(decision)

    @decide.validator
    def _validate_decision(self, decision: ApprovalDecision) -> None:
        problem = self._refusal(decision)
        if problem is not None:
            message, error_type = problem
            raise ApplicationError(message, type=error_type, non_retryable=True)

    @workflow.signal(name="decide")
    def decide_by_signal(self, decision: ApprovalDecision) -> None:
        """The ``decide`` update as a signal (Temporal UI/CLI); a refused one is only noted."""
        problem = self._refusal(decision)
        if problem is not None:
            message, _ = problem
            workflow.logger.warning("approval ignores decision signal: %s", message)
            self._show_step("decision_refused", message)
            return
        self._accept(decision)

    @workflow.query
    def state(self) -> ProcessState:
        """Stage, whose decision the request waits for and until when, and the steps so far."""
        current = self._current()
        waiting = self._result is None and current is not None
        self._state.waiting_for = [f"decision:{current.approver_id}"] if waiting and current else []
        self._state.details = {
            "subject_id": self._request.subject_id,
            "subject": self._request.subject,
            "requester_id": self._request.requester_id,
            "chain": [a.approver_id for a in self._request.chain],
            "step": self._step,
            "current_approver": current.approver_id if waiting and current else None,
            "delegate": current.delegate_id if waiting and current else None,
            "decide_by": self._deadline.isoformat() if waiting and self._deadline else None,
            "details": dict(self._request.details),
            "escalations": list(self._escalations),
            "result": _result_view(self._result),
        }
        return self._state

    # The steps of the process, in order.

    async def _ask(self, index: int, approver: Approver) -> bool:
        """Ask ``approver`` (escalating from the one before); True once decided."""
        self._step = index
        asked_at = workflow.now()
        self._deadline = asked_at + timedelta(seconds=approver.timeout_seconds)
        if approver.decide_by is not None:  # past already (asked late): it expires at once
            self._deadline = max(approver.decide_by, asked_at)
        self._state.due[f"decision:{approver.approver_id}"] = self._deadline
        workflow.upsert_search_attributes([APPROVAL_ASSIGNEE.value_set(approver.approver_id)])
        step = "request" if index == 0 else "escalation"
        if index > 0:
            previous = self._request.chain[index - 1].approver_id
            self._escalations.append(approver.approver_id)
            self._show_step(
                "escalate", f"{previous} did not decide in time; asking {approver.approver_id}"
            )
            await self._audit_step(
                f"escalate_{index}", {"from": previous, "to": approver.approver_id}
            )
        await self._notify(index, approver, step)
        await self._emit(
            "approval.requested",
            {
                "subject": self._request.subject,
                "requester_id": self._request.requester_id,
                "approver_id": approver.approver_id,
                "decide_by": self._deadline.isoformat(),
            },
            step=f"requested_{index}",
        )
        workflow.set_current_details(
            f"Waiting for {approver.approver_id} to decide "
            f"until {self._deadline:%Y-%m-%d %H:%M} UTC."
        )
        try:
            await workflow.wait_condition(
                lambda: self._result is not None,
                timeout=max(self._deadline - asked_at, timedelta(milliseconds=1)),
                timeout_summary=f"{approver.approver_id} decides",
            )
        except TimeoutError:
            self._show_step("timeout", approver.approver_id)
            return self._result is not None
        return True

    def _expire(self) -> None:
        last = len(self._request.chain) - 1
        self._result = ApprovalResult(
            approval_id=self._process_id,
            outcome="expired",
            decided_by=None,
            on_behalf_of=None,
            decided_at=workflow.now(),
            comment=f"no decision from {', '.join(a.approver_id for a in self._request.chain)}",
            step=last,
            escalations=list(self._escalations),
        )

    async def _finish(self, result: ApprovalResult) -> None:
        self._set_stage(result.outcome)
        self._state.outcome = result.outcome
        workflow.upsert_search_attributes([APPROVAL_ASSIGNEE.value_unset()])
        self._show_step("outcome", f"{result.outcome} by {result.decided_by or 'nobody'}")
        await self._audit_step(
            "outcome",
            {
                "outcome": result.outcome,
                "decided_by": result.decided_by,
                "on_behalf_of": result.on_behalf_of,
                "comment": result.comment,
            },
        )
        if workflow.patched(CLOSE_TASKS_PATCH):
            await self._close_tasks(result.outcome, "close the approval's tasks")
        await self._offer_outcome(
            result.outcome,
            self._request.subject_id,
            self._outcome_record(result.decided_by, result.comment),
        )
        await workflow.wait_condition(workflow.all_handlers_finished)

    async def _close_as_withdrawn(self) -> None:
        reason = workflow.cancellation_reason() or "withdrawn by the requesting process"
        self._set_stage("withdrawn")
        self._state.outcome = "withdrawn"
        workflow.upsert_search_attributes([APPROVAL_ASSIGNEE.value_unset()])
        await self._audit_step("outcome", {"outcome": "withdrawn", "reason": reason})
        if workflow.patched(CLOSE_TASKS_PATCH):
            await self._close_tasks("withdrawn", "close the approval's tasks")
        await self._offer_outcome(
            "withdrawn", self._request.subject_id, self._outcome_record(None, reason)
        )

    def _outcome_record(self, decided_by: str | None, comment: str) -> dict[str, object]:
        """The approval as automations on ``crmflow.approval`` see it."""
        return {
            "subject": self._request.subject,
            "requester_id": self._request.requester_id,
            "decided_by": decided_by or "",
            "comment": comment,
        }

    # Decisions: validated the same way for the update and the signal.

    def _refusal(self, decision: ApprovalDecision) -> tuple[str, str] | None:
        """Why ``decision`` cannot be taken, with the error type, or None if it can."""
        if self._result is not None:
            return (
                f"approval {self._process_id} is already {self._result.outcome}",
                "AlreadyDecided",
            )
        if decision.decision not in DECISIONS:
            return (
                f"unknown decision {decision.decision!r}; expected one of {list(DECISIONS)}",
                "InvalidDecision",
            )
        current = self._current()
        allowed = {current.approver_id, current.delegate_id} - {None} if current else set()
        if decision.decided_by not in allowed:
            return (
                f"{decision.decided_by!r} is not the current approver of {self._process_id}; "
                f"waiting for {sorted(a for a in allowed if a)}",
                "NotCurrentApprover",
            )
        return None

    def _accept(self, decision: ApprovalDecision) -> ApprovalResult:
        current = self._current()
        assert current is not None
        delegated = decision.decided_by != current.approver_id
        self._result = ApprovalResult(
            approval_id=self._process_id,
            outcome="approved" if decision.decision == "approve" else "rejected",
            decided_by=decision.decided_by,
            on_behalf_of=current.approver_id if delegated else None,
            decided_at=workflow.now(),
            comment=decision.comment,
            step=self._step,
            escalations=list(self._escalations),
        )
        self._show_step(
            f"decision:{decision.decision}", f"{decision.decided_by}: {decision.comment}"
        )
        return self._result

    # Helpers: each a single activity call or a change of the visible state.

    async def _notify(self, index: int, approver: Approver, step: str) -> None:
        due = self._deadline or workflow.now()
        requester = self._request.requester_id
        await workflow.execute_activity(
            CREATE_TASK,
            TaskRequest(
                key=self._key(f"task_{step}_{index}"),
                process_id=self._process_id,
                customer_id=self._request.customer_id,
                assignee_id=approver.approver_id,
                kind=f"approval_{step}",
                title=f"Approve or reject: {self._request.subject}",
                due_at=due,
                detail=f"Requested by {requester}. Decide it under My work in the console "
                f"(or POST /v1/approvals/{self._process_id}/decision).",
                tenant=self._tenant(),
            ),
            result_type=TaskRef,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RECORD_RETRY,
            summary=f"task approval_{step} for {approver.approver_id}",
        )
        self._show_step(f"task:approval_{step}", approver.approver_id)
        previous = self._request.chain[index - 1] if index > 0 else None
        await self._email(
            f"approval_{step}",
            EmailRequest(
                key=self._key(f"email_{step}_{index}"),
                process_id=self._process_id,
                to=approver.email,
                template=f"approval_{step}",
                context={
                    "approver_name": approver.name,
                    "subject": self._request.subject,
                    "requester_id": requester,
                    "approval_id": self._process_id,
                    "decide_by": f"{due:%Y-%m-%d %H:%M} UTC",
                    "details": dict(self._request.details),
                    "previous_approver": previous.name if previous else "",
                    "delegate_id": approver.delegate_id or "",
                },
            ),
            within=timedelta(hours=1),
            summary=f"email approval_{step} to {approver.approver_id}",
            failure_record=f"email_failed:approval_{step}_{index}",
        )

    def _current(self) -> Approver | None:
        chain = self._request.chain
        return chain[self._step] if 0 <= self._step < len(chain) else None

    def _result_or_fail(self) -> ApprovalResult:
        if self._result is None:
            raise ApplicationError("approval ended undecided", type="InvalidState")
        return self._result


def _result_view(result: ApprovalResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {
        "outcome": result.outcome,
        "decided_by": result.decided_by,
        "on_behalf_of": result.on_behalf_of,
        "decided_at": result.decided_at.isoformat(),
        "comment": result.comment,
    }
