"""Subscription renewal: one term of a subscription, from its start to the renewal date.

At 90, 60, 30 and 7 days before the date the term reminds the customer (email)
and the owner (task); at 60 days it analyses usage and, above the plan's
threshold, offers the upsell, after an approval (a child ``ApprovalWorkflow``)
when its discount is above the limit. ``renewed`` or ``cancelled`` decides the
term; ``renewal_date_changed`` moves the date. At the date without a decision
it auto-renews when the contract says so, else it lapses: a churn-risk task and
an escalation to the owner's manager. A renewed term continues as new into the
next, whose run first confirms the renewal; what arrives as the term renews
goes to the next term. When each step is due, and what the next term renews
with, is ``crm.domain.renewal_plan.RenewalPlan``'s; the days are policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    is_cancelled_exception,
)

from workflows.approval import ApprovalWorkflow
from workflows.retries import RECORD_RETRY
from workflows.steps import ProcessSteps

with workflow.unsafe.imports_passed_through():
    from crm.domain.calendar import as_utc
    from crm.domain.renewal_plan import (
        RENEWAL_DATE,
        USAGE_ANALYSIS,
        RenewalPlan,
        Step,
        TermChanges,
        reminder_step,
    )
    from workflows.approval_types import ApprovalResult, approval_id
    from workflows.common import (
        APPROVAL_ASSIGNEE,
        CUSTOMER_ID,
        PROCESS,
        STAGE,
        ProcessEvent,
        ProcessState,
        event_data,
    )
    from workflows.contracts import ANALYSE_USAGE, EmailRequest, TaskRef, UsageRequest, UsageSummary
    from workflows.renewal_types import (
        EVENTS,
        Cancelled,
        EventDataError,
        RenewalDateChanged,
        RenewalInput,
        RenewalResult,
        Renewed,
        RenewedTerm,
        StaffRef,
        UpsellTerms,
    )

PROCESS_NAME = "renewal"

#: From this patch on, an event that arrives after the term has its outcome is
#: carried into the next term (a cancellation, a new date) or noted as a repeat;
#: before, a cancellation in that moment was taken by the ending term and lost.
CARRY_LATE_EVENTS = "carry-late-events"

#: From this patch on, a ``renewed`` whose new plan or annual value the next
#: term could not use is refused (noted, ignored); before, it was taken, and one
#: float() could not read failed the workflow task.
REFUSE_UNUSABLE_TERMS = "refuse-unusable-terms"


@workflow.defn
class RenewalWorkflow(ProcessSteps):
    """One subscription term; see the module docstring for the schedule."""

    @workflow.init
    def __init__(self, term: RenewalInput) -> None:
        super().__init__(
            process=PROCESS_NAME, customer_id=term.customer_id, step_prefix=f"term{term.term}_"
        )
        self._term = term
        schedule = term.schedule
        self._plan = RenewalPlan(
            as_utc(term.renewal_date), schedule.reminder_days, schedule.usage_analysis_day
        )
        self._usage: UsageSummary | None = None
        self._upsell: str | None = None
        self._upsell_task: asyncio.Task[None] | None = None
        self._approval_id: str | None = None
        self._decision: str | None = None
        self._outcome: str | None = None  # set once the term has ended, by a decision or the date
        self._carried: list[ProcessEvent] = []
        self._events = 0

    @workflow.run
    async def run(self, term: RenewalInput) -> RenewalResult:
        if problems := term.problems():
            message = "invalid renewal input: " + "; ".join(problems)
            raise ApplicationError(message, type="InvalidInput", non_retryable=True)
        self._publish_process(term.customer_id, "active")
        try:
            for event in term.carried_events:
                await self.event(event)
            if term.renewed_from is not None and self._decision != "cancelled":
                await self._confirm_renewal_unless_cancelled(term.renewed_from)
            outcome = await self._follow_term()
            if outcome == RENEWAL_DATE:  # nobody decided before the date
                outcome = "auto_renewed" if term.auto_renew else "lapsed"
            self._outcome = outcome
            await self._withdraw_upsell()
        except (asyncio.CancelledError, ActivityError) as err:
            if not is_cancelled_exception(err):  # a cancel mid-activity is an ActivityError
                raise
            await self._withdraw_upsell()
            await self._finish("cancelled")
            raise
        if outcome in ("renewed", "auto_renewed"):
            await self._start_next_term(outcome)
        if outcome == "lapsed":
            await self._escalate_lapse()
        await self._finish(outcome)
        return RenewalResult(
            subscription_id=term.subscription_id,
            term=term.term,
            outcome=outcome,
            renewal_date=self._plan.renewal_date,
            reminders_sent=list(self._plan.reminders_sent),
            upsell=self._upsell,
        )

    @workflow.signal
    async def event(self, event: ProcessEvent) -> None:
        """``renewed``, ``cancelled`` or ``renewal_date_changed``; others are noted and ignored."""
        self._events += 1
        ended_as = self._outcome or self._decision
        if ended_as is not None and workflow.patched(CARRY_LATE_EVENTS):
            await self._late_event(event, ended_as)
            return
        data = self._read(event, decided=self._decision)
        if isinstance(data, str):
            self._ignore(event, data)
            return
        if isinstance(data, RenewalDateChanged):
            previous = self._plan.renewal_date
            self._plan.move_to(data.renewal_date)
            self._show_step(
                "renewal_date_changed", f"{previous:%Y-%m-%d} -> {data.renewal_date:%Y-%m-%d}"
            )
        else:
            self._decision = event.type
            if isinstance(data, Renewed):
                self._plan.sign(data.changes())
            self._show_step(f"event:{event.type}")
        await self._audit_step(f"event_{self._events}_{event.type}", {"data": event.data})

    async def _late_event(self, event: ProcessEvent, ended_as: str) -> None:
        """An event after the term's outcome, while a renewed term turns into the next one: a
        cancellation is carried into the next term; a new date, or a ``renewed`` with terms,
        sets the next term's terms, the last one received winning. Anything else, or after a
        lapse or a cancellation, is noted and ignored."""
        next_term = self._term.term + 1
        renewing = ended_as in ("renewed", "auto_renewed")
        data = self._read(event) if renewing else f"the term is already {ended_as}"
        if isinstance(data, Cancelled):
            self._carried.append(event)
            self._show_step("carried:cancelled", f"to term {next_term}")
            return
        if isinstance(data, Renewed | RenewalDateChanged):
            changes = data.changes()
            if changes == TermChanges():  # a repeated ``renewed``
                data = f"the term is already {ended_as}"
            elif problem := self._plan.change_late(changes):
                data = f"data.{problem}"
            else:
                self._show_step(f"next_term:{event.type}", f"term {next_term}")
                await self._audit_step(f"event_{self._events}_{event.type}", {"data": event.data})
                return
        self._ignore(event, data)

    async def _confirm_renewal_unless_cancelled(self, renewed: RenewedTerm) -> None:
        """Confirm the renewal, unless the customer cancels while the email is tried."""
        email = asyncio.create_task(self._confirm_renewal(renewed))
        try:
            await workflow.wait_condition(lambda: email.done() or self._decision == "cancelled")
        finally:
            if not email.done():
                email.cancel()
        # Not ``await email``: a cancellation of the run itself must not be taken for the email's.
        await workflow.wait([email])

    @workflow.query
    def state(self) -> ProcessState:
        """Stage, what the term waits for, the due times to come and the steps taken."""
        self._state.waiting_for = [] if self._decision else list(EVENTS)
        if self._upsell == "awaiting_approval" and self._approval_id:
            self._state.waiting_for.append(f"approval:{self._approval_id}")
        self._state.due = {step.name: step.at for step in self._plan.pending()}
        term, plan, usage = self._term, self._plan, self._usage
        self._state.details = {
            "subscription_id": term.subscription_id,
            "term": term.term,
            "renewal_date": plan.renewal_date.isoformat(),
            "plan": term.plan,
            "annual_value": term.annual_value,
            "auto_renew": term.auto_renew,
            "owner_id": term.owner.staff_id,
            "reminders_sent": list(plan.reminders_sent),
            "reminders_skipped": list(plan.reminders_skipped),
            "usage": dataclasses.asdict(usage) if usage else None,
            "upsell": self._upsell,
            "approval_id": self._approval_id,
        }
        return self._state

    # The steps of the process, in order.

    async def _follow_term(self) -> str:
        """Take each step when it is due; return the decision, or ``renewal_date`` if none."""
        self._set_stage("active")
        while True:
            for days in self._plan.skip_overdue(workflow.now()):
                late = "skipped: its day had passed before it was planned"
                self._show_step(reminder_step(days), late)
            step = self._plan.next_step()
            if not await self._wait_until(step):
                if self._decision is not None:
                    return self._decision
                continue  # the date moved: plan again
            if step.name == RENEWAL_DATE:
                return RENEWAL_DATE
            self._plan.took(step)
            if step.reminder_days is not None:
                await self._send_reminder(step.reminder_days)
            else:
                await self._analyse_usage()

    async def _confirm_renewal(self, renewed: RenewedTerm) -> None:
        """Tell the customer the term they start is renewed, signed or automatically."""
        await self._send_email(
            "renewal_confirmation",
            "renewal_confirmation",
            {
                "auto_renewed": renewed.outcome == "auto_renewed",
                "renewal_date": f"{renewed.renewal_date:%Y-%m-%d}",
                "next_renewal_date": f"{self._plan.renewal_date:%Y-%m-%d}",
            },
        )

    async def _send_reminder(self, days: int) -> None:
        term, date = self._term, f"{self._plan.renewal_date:%Y-%m-%d}"
        await self._send_email(
            reminder_step(days),
            "renewal_reminder",
            {"days": days, "renewal_date": date, "auto_renew": term.auto_renew},
        )
        await self._create_task(
            term.owner,
            reminder_step(days),
            f"Renewal of {term.company_name} in {days} days ({date})",
            min(workflow.now() + timedelta(days=3), self._plan.renewal_date),
            f"Plan {term.plan}, annual value {term.annual_value:,.2f}; "
            f"{'renews automatically' if term.auto_renew else 'lapses'} without a decision.",
        )

    async def _analyse_usage(self) -> None:
        self._usage = usage = await workflow.execute_activity(
            ANALYSE_USAGE,
            UsageRequest(
                subscription_id=self._term.subscription_id,
                since=self._plan.renewal_date - timedelta(days=365),
                tenant=self._tenant(),
            ),
            result_type=UsageSummary,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RECORD_RETRY,
            summary="analyse usage",
        )
        detail = f"{usage.metric or 'no usage reported'}: {usage.utilisation:.0%} of the plan"
        self._show_step(USAGE_ANALYSIS, detail)
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
        await self._send_email(
            "upsell_offer",
            "renewal_upsell_offer",
            {
                "offered_plan": offer.offered_plan,
                "discount_percent": f"{offer.discount_percent:g}",
                "renewal_date": f"{self._plan.renewal_date:%Y-%m-%d}",
                "metric": usage.metric or "usage",
                "utilisation_percent": round(usage.utilisation * 100),
            },
        )
        await self._create_task(
            self._term.owner,
            "upsell_follow_up",
            f"Follow up the {offer.offered_plan} offer to {self._term.company_name}",
            min(workflow.now() + timedelta(days=7), self._plan.renewal_date),
            f"{offer.discount_percent:g}% discount offered at "
            f"{usage.utilisation:.0%} {usage.metric} usage.",
        )
        self._upsell = "offered"
        await self._audit_step("upsell", {"outcome": "offered", "plan": offer.offered_plan})

    async def _approve_discount(
        self, offer: UpsellTerms, usage: UsageSummary
    ) -> ApprovalResult | None:
        request = self._term.discount_approval(offer, usage.utilisation, self._process_id)
        self._approval_id = approval_id(request.subject_id)
        self._upsell = "awaiting_approval"
        approver_id = request.chain[0].approver_id
        self._show_step("approval_requested", f"{self._approval_id} from {approver_id}")
        customer_id, subscription_id = self._term.customer_id, self._term.subscription_id
        try:
            return await workflow.execute_child_workflow(
                ApprovalWorkflow.run,
                request,
                id=self._approval_id,
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(PROCESS, "approval"),
                        SearchAttributePair(CUSTOMER_ID, customer_id),
                        SearchAttributePair(STAGE, "awaiting_decision"),
                        SearchAttributePair(APPROVAL_ASSIGNEE, approver_id),
                    ]
                ),
                static_summary=f"Discount approval for subscription {subscription_id}",
                memo={"tenant": tenant} if (tenant := self._tenant()) else None,
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

    async def _start_next_term(self, outcome: str) -> None:
        next_term = self._next_term(outcome)
        self._set_stage(outcome)
        self._show_step(outcome, f"next renewal {next_term.renewal_date:%Y-%m-%d}")
        await self._audit_step(
            "outcome",
            {
                "outcome": outcome,
                "next_renewal_date": next_term.renewal_date.isoformat(),
                "plan": next_term.plan,
                "annual_value": next_term.annual_value,
            },
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self._plan.changed_late:  # by events after the outcome (see _late_event)
            next_term = self._next_term(outcome)
        workflow.continue_as_new(dataclasses.replace(next_term, carried_events=self._carried))

    async def _escalate_lapse(self) -> None:
        self._set_stage("lapsed")
        term, owner = self._term, self._term.owner
        escalate_to = term.manager or owner
        date = f"{self._plan.renewal_date:%Y-%m-%d}"
        await self._create_task(
            owner,
            "churn_risk",
            f"Churn risk: {term.company_name} lapsed on {date}",
            workflow.now() + timedelta(days=2),
            f"Plan {term.plan}, annual value {term.annual_value:,.2f}; "
            "no renewal and no auto-renewal.",
        )
        await self._create_task(
            escalate_to,
            "lapse_escalation",
            f"Escalation: {term.company_name} did not renew ({owner.name}'s account)",
            workflow.now() + timedelta(days=1),
            f"Subscription {term.subscription_id} lapsed on {date}.",
        )
        await self._send_email(
            "lapse_escalation",
            "renewal_lapse_escalation",
            {
                "manager_name": escalate_to.name,
                "owner_name": owner.name,
                "renewal_date": date,
                "subscription_id": term.subscription_id,
            },
            to=escalate_to.email,
        )

    async def _finish(self, outcome: str) -> None:
        self._set_stage(outcome)
        self._state.outcome = outcome
        renewal_date = self._plan.renewal_date
        await self._audit_step("outcome", {"outcome": outcome, "renewal_date": renewal_date})
        await workflow.wait_condition(workflow.all_handlers_finished)

    # Waiting, reading events, and the helpers: each a single activity call.

    async def _wait_until(self, step: Step) -> bool:
        """Wait until ``step`` is due; False when an event decided the term or moved the date."""
        moves = self._plan.moves

        def interrupted() -> bool:
            return self._decision is not None or self._plan.moves != moves

        remaining = step.at - workflow.now()
        if remaining <= timedelta(0):
            return not interrupted()
        workflow.set_current_details(
            f"Term {self._term.term}: next step {step.name} at {step.at:%Y-%m-%d %H:%M} UTC; "
            f"renewal date {self._plan.renewal_date:%Y-%m-%d}."
        )
        try:
            await workflow.wait_condition(interrupted, timeout=remaining, timeout_summary=step.name)
        except TimeoutError:
            return not interrupted()
        return False

    def _read(
        self, event: ProcessEvent, decided: str | None = None
    ) -> Renewed | RenewalDateChanged | Cancelled | str:
        """``event``'s data, decoded, or why the term ignores the event: not a renewal's, the
        term ``decided`` already, or data it cannot use. A cancellation is taken whatever its
        data says: nothing in it changes what the term does."""
        if event.type not in EVENTS:
            return "not a renewal event"
        if decided is not None:
            return f"the term is already {decided}"
        if event.type == "cancelled":
            return Cancelled()
        if event.type == "renewal_date_changed":
            try:
                return event_data(RenewalDateChanged, event)
            except (TypeError, ValueError) as err:
                return str(err)
        try:
            return event_data(Renewed, event)
        except EventDataError as err:
            # The patch is about the plan and the value, as it was when it was made.
            if err.field == "renewal_date" or workflow.patched(REFUSE_UNUSABLE_TERMS):
                return str(err)
        # A run from before the patch takes the event, without the terms it cannot use.
        try:
            return Renewed(renewal_date=event.data.get("renewal_date"))
        except EventDataError as err:
            return str(err)

    def _ignore(self, event: ProcessEvent, problem: str) -> None:
        workflow.logger.warning("renewal ignores event %r: %s", event.type, problem)
        self._show_step(f"ignored:{event.type}", problem)

    def _next_term(self, outcome: str) -> RenewalInput:
        terms = self._plan.next_term(self._term.plan, self._term.annual_value)
        return self._term.followed_by(terms, RenewedTerm(outcome, self._plan.renewal_date))

    async def _send_email(
        self, step: str, template: str, context: dict[str, object], to: str | None = None
    ) -> None:
        await self._email(
            step,
            EmailRequest(
                key=self._key(f"email_{step}"),
                process_id=self._process_id,
                to=to or self._term.contact_email,
                template=template,
                context={**self._term.email_context(), **context},
            ),
            within=timedelta(days=1),
            failure_record=f"email_failed_{step}",
        )

    async def _create_task(
        self, assignee: StaffRef, kind: str, title: str, due: datetime, detail: str
    ) -> TaskRef:
        return await self._task(
            kind,
            customer_id=self._term.customer_id,
            assignee_id=assignee.staff_id,
            kind=kind,
            title=title,
            due=due,
            detail=detail,
            summary=f"task {kind} for {assignee.staff_id}",
        )
