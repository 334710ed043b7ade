"""The upsell of a renewal term, and the one-activity helpers a term's steps share.

At the usage analysis (60 days before the date) the term reads the customer's
utilisation; above the plan's threshold it offers the upsell the schedule names,
after a discount approval (a child ``ApprovalWorkflow``) when the discount is
above the limit, and withdraws an offer still waiting for its approval once the
term is decided. ``RenewalWorkflow`` is the term itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ChildWorkflowError

from workflows.activity_steps import ActivitySteps
from workflows.approval import ApprovalWorkflow
from workflows.publishing_steps import REPORT_MILESTONES
from workflows.retries import RECORD_RETRY

with workflow.unsafe.imports_passed_through():
    from crm.domain.renewal_plan import USAGE_ANALYSIS, RenewalPlan
    from workflows import renewal_messages as messages
    from workflows.approval_types import ApprovalResult, approval_id
    from workflows.contracts import ANALYSE_USAGE, TaskRef, UsageSummary
    from workflows.renewal_types import RenewalInput, UpsellTerms

#: From this patch on, a tenant's run asks for its discount approval under an id of the
#: tenant's own (``...-discount@acme``); before, two tenants' subscriptions of one id
#: asked under the same child id.
TENANT_APPROVAL_IDS = "tenant-approval-ids"


class RenewalUpsell(ActivitySteps):
    """The upsell steps of one term (``RenewalWorkflow`` sets the state they share)."""

    _term: RenewalInput
    _plan: RenewalPlan
    _usage: UsageSummary | None
    _upsell: str | None
    _offered_plan: str | None
    _upsell_task: asyncio.Task[None] | None
    _approval_id: str | None

    async def _analyse_usage(self) -> None:
        self._usage = usage = await workflow.execute_activity(
            ANALYSE_USAGE,
            messages.usage_request(self._term, self._plan.renewal_date, self._tenant()),
            result_type=UsageSummary,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RECORD_RETRY,
            summary="analyse usage",
        )
        self._show_step(USAGE_ANALYSIS, messages.usage_detail(usage))
        offer = self._term.schedule.upsell_for(self._term.plan, usage.utilisation)
        self._upsell = "eligible" if offer else "not_eligible"
        record: dict[str, object] = {"usage": dataclasses.asdict(usage), "upsell": self._upsell}
        await self._audit_step(USAGE_ANALYSIS, record)
        if offer is not None:
            self._upsell_task = asyncio.create_task(self._offer_upsell(offer, usage))

    async def _offer_upsell(self, offer: UpsellTerms, usage: UsageSummary) -> None:
        """Send the upsell offer, after an approval when its discount is above the limit."""
        if self._term.schedule.needs_approval(offer):
            approval = await self._approve_discount(offer, usage)
            if approval is None or approval.outcome != "approved":
                self._upsell = f"discount_{approval.outcome if approval else 'failed'}"
                await self._audit_step("upsell", {"outcome": self._upsell})
                return
        await self._send_email(messages.upsell_offer_email(offer, usage, self._plan.renewal_date))
        follow_up = messages.upsell_follow_up_task(
            self._term, offer, usage, workflow.now(), self._plan.renewal_date
        )
        await self._create_task(follow_up)
        self._upsell, self._offered_plan = "offered", offer.offered_plan
        await self._audit_step("upsell", {"outcome": "offered", "plan": offer.offered_plan})
        details = {"offered_plan": offer.offered_plan, "discount_percent": offer.discount_percent}
        await self._emit_term("renewal.upsell_offered", "upsell_offered", **details)

    async def _approve_discount(
        self, offer: UpsellTerms, usage: UsageSummary
    ) -> ApprovalResult | None:
        """Ask the schedule's approvers for ``offer``'s discount (a child workflow): its result,
        or None when the child failed. A tenant's run asks under an id of the tenant's own."""
        request = self._term.discount_approval(offer, usage.utilisation, self._process_id)
        tenant = self._tenant()
        own_id = tenant is not None and workflow.patched(TENANT_APPROVAL_IDS)
        self._approval_id = approval_id(request.subject_id, tenant if own_id else None)
        self._upsell = "awaiting_approval"
        approver_id = request.chain[0].approver_id
        self._show_step("approval_requested", f"{self._approval_id} from {approver_id}")
        try:
            return await workflow.execute_child_workflow(
                ApprovalWorkflow.run,
                request,
                id=self._approval_id,
                search_attributes=messages.approval_search_attributes(self._term, approver_id),
                static_summary=messages.approval_summary(self._term),
                memo={"tenant": tenant} if tenant else None,
            )
        except ChildWorkflowError as err:
            self._show_step("approval_failed", str(err.cause or err))
            return None

    async def _withdraw_upsell(self) -> None:
        """Cancel an upsell still waiting for its approval: the term is decided."""
        task = self._upsell_task
        if task is None or task.done():
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ChildWorkflowError):
            await task
        self._upsell = "withdrawn"
        self._show_step("upsell_withdrawn", "the term ended before the approval")

    # The term's milestones, emails and tasks: each a single activity call.

    async def _emit_term(self, kind: str, step: str, **extra: object) -> None:
        """Emit the term's milestone ``kind`` for the reports (REPORT_MILESTONES)."""
        data = messages.term_event(self._term, self._plan, **extra)
        await self._emit(kind, data, step=step, since=REPORT_MILESTONES)

    async def _send_email(self, email: messages.Email) -> None:
        step = email.step
        await self._email(
            step,
            email.request(self._term, self._key(f"email_{step}"), self._process_id),
            within=timedelta(days=1),
            failure_record=f"email_failed_{step}",
        )

    async def _create_task(self, task: messages.Task) -> TaskRef:
        assignee_id = task.assignee.staff_id
        request = self._task_request(
            task.kind,
            customer_id=self._term.customer_id,
            assignee_id=assignee_id,
            kind=task.kind,
            title=task.title,
            due=task.due,
            detail=task.detail,
        )
        return await self._task(task.kind, request, summary=f"task {task.kind} for {assignee_id}")
