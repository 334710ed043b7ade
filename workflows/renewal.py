"""Subscription renewal: one term of a subscription, from its start to the renewal date.

The process an account team runs for every subscription term:

1. At 90, 60, 30 and 7 days before the renewal date: remind the customer
   (email) and the account owner (task).
2. At 60 days: analyse the subscription's usage. Above the plan's usage
   threshold, offer the upsell of the policy; an offer whose discount is above
   ``max_discount_without_approval`` is sent only once an approval (a child
   ``ApprovalWorkflow``: the owner's manager, then finance) approves it.
3. Meanwhile wait for events:
   - ``renewed``: the customer signed; the next term starts.
   - ``cancelled``: the customer cancelled; the process ends.
   - ``renewal_date_changed`` (``data.renewal_date``): the reminders still
     to come are re-planned against the new date; none is sent twice.
   Once the term has its outcome, a ``cancelled`` or ``renewal_date_changed``
   that arrives before the next term starts is carried into it; a repeated
   ``renewed`` is noted and ignored.
4. At the renewal date with no decision: renew automatically when the
   contract says so, else the subscription lapses: a churn-risk task for the
   owner and an escalation (email + task) to the owner's manager.
5. A renewed term, signed or automatic, continues as new; the next term's
   run first confirms the renewal to the customer by email.

A renewed subscription continues as new with the next term's input (renewal
date one year later), so a subscription's process lives for years with a
history as short as one term's. Every email, task and audit entry is keyed by
the term and the step (``term2_reminder_30d``), so re-planning or retrying
never repeats one. The days are policy (``RenewalSchedule``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
from datetime import datetime, timedelta
from typing import Any

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
    from workflows.approval_types import ApprovalInput, ApprovalResult, approval_id
    from workflows.common import (
        APPROVAL_ASSIGNEE,
        CUSTOMER_ID,
        PROCESS,
        STAGE,
        ProcessEvent,
        ProcessState,
    )
    from workflows.contracts import (
        ANALYSE_USAGE,
        EmailRequest,
        TaskRef,
        UsageRequest,
        UsageSummary,
    )
    from workflows.renewal_types import (
        EVENTS,
        RenewalInput,
        RenewalResult,
        RenewedTerm,
        StaffRef,
        UpsellTerms,
        parse_renewal_date,
        renewed_terms_problem,
    )

PROCESS_NAME = "renewal"
RENEWAL_DATE = "renewal_date"

#: From this patch on, an event that arrives after the term has its outcome is
#: carried into the next term (a cancellation, a new date) or noted as a repeat;
#: before, a cancellation in that moment was taken by the ending term and lost.
CARRY_LATE_EVENTS = "carry-late-events"

#: From this patch on, a ``renewed`` whose new plan or annual value the next
#: term could not use is refused (noted, ignored); before, it was taken, and one
#: float() could not read failed the workflow task.
REFUSE_UNUSABLE_TERMS = "refuse-unusable-terms"

#: What an event may set of the next term when it arrives after this term's outcome.
NEXT_TERMS = (RENEWAL_DATE, "plan", "annual_value")
USAGE_ANALYSIS = "usage_analysis"


@workflow.defn
class RenewalWorkflow(ProcessSteps):
    """One subscription term; see the module docstring for the schedule."""

    @workflow.init
    def __init__(self, term: RenewalInput) -> None:
        super().__init__(
            process=PROCESS_NAME, customer_id=term.customer_id, step_prefix=f"term{term.term}_"
        )
        self._term = term
        self._schedule = term.schedule
        self._renewal_date = as_utc(term.renewal_date)
        self._plan_version = 0
        self._reminders_sent: list[int] = []
        self._reminders_skipped: list[int] = []
        self._usage_analysed = False
        self._usage: UsageSummary | None = None
        self._upsell: str | None = None
        self._upsell_task: asyncio.Task[None] | None = None
        self._approval_id: str | None = None
        self._decision: str | None = None
        self._decision_data: dict[str, Any] = {}
        self._outcome: str | None = None  # set once the term has ended, by a decision or the date
        self._carried: list[ProcessEvent] = []
        self._next_terms_changed = False  # by events after the outcome
        self._events = 0

    @workflow.run
    async def run(self, term: RenewalInput) -> RenewalResult:
        _validate(term)
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
            renewal_date=self._renewal_date,
            reminders_sent=list(self._reminders_sent),
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
        problem = self._refusal(event)
        if problem:
            workflow.logger.warning("renewal ignores event %r: %s", event.type, problem)
            self._show_step(f"ignored:{event.type}", problem)
            return
        if event.type == "renewal_date_changed":
            previous = self._renewal_date
            self._renewal_date = parse_renewal_date(event.data[RENEWAL_DATE])
            self._plan_version += 1
            moved = f"{previous:%Y-%m-%d} -> {self._renewal_date:%Y-%m-%d}"
            self._show_step("renewal_date_changed", moved)
        else:
            self._decision = event.type
            self._decision_data = dict(event.data)
            self._show_step(f"event:{event.type}")
        await self._audit_step(f"event_{self._events}_{event.type}", {"data": event.data})

    async def _late_event(self, event: ProcessEvent, ended_as: str) -> None:
        """An event after the term's outcome, while a renewed term turns into the next one.

        A cancellation is the next term's: carried into it. A new date, or a
        ``renewed`` with terms (plan, value, date), sets the next term's terms,
        the last one received winning. Anything else, or after a lapse or a
        cancellation, is noted and ignored.
        """
        next_term = self._term.term + 1
        problem = (
            self._refusal(event, ignore_decision=True)
            if ended_as in ("renewed", "auto_renewed")
            else f"the term is already {ended_as}"
        )
        if problem is None and event.type == "cancelled":
            self._carried.append(event)
            self._show_step("carried:cancelled", f"to term {next_term}")
            return
        terms = {key: event.data[key] for key in NEXT_TERMS if key in event.data}
        if problem is None and event.type == "renewed" and not terms:
            problem = f"the term is already {ended_as}"  # a repeat
        if (
            problem is None
            and RENEWAL_DATE in terms
            and parse_renewal_date(terms[RENEWAL_DATE]) <= self._renewal_date
        ):
            problem = (
                f"data.renewal_date must be after {self._renewal_date:%Y-%m-%d}, "
                "the date this term renewed on"
            )
        if problem is not None:
            workflow.logger.warning("renewal ignores event %r: %s", event.type, problem)
            self._show_step(f"ignored:{event.type}", problem)
            return
        self._decision_data.update(terms)
        self._next_terms_changed = True
        self._show_step(f"next_term:{event.type}", f"term {next_term}")
        await self._audit_step(f"event_{self._events}_{event.type}", {"data": event.data})

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
        self._state.due = {step: at for at, step in self._pending_steps()}
        usage = self._usage
        self._state.details = {
            "subscription_id": self._term.subscription_id,
            "term": self._term.term,
            "renewal_date": self._renewal_date.isoformat(),
            "plan": self._term.plan,
            "annual_value": self._term.annual_value,
            "auto_renew": self._term.auto_renew,
            "owner_id": self._term.owner.staff_id,
            "reminders_sent": list(self._reminders_sent),
            "reminders_skipped": list(self._reminders_skipped),
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
            at, step = self._next_step()
            if not await self._wait_until(at, step):
                if self._decision is not None:
                    return self._decision
                continue  # the date moved: plan again
            if step == RENEWAL_DATE:
                return RENEWAL_DATE
            if step == USAGE_ANALYSIS:
                await self._analyse_usage()
            else:
                await self._send_reminder(int(step.removeprefix("reminder_").removesuffix("d")))

    async def _confirm_renewal(self, renewed: RenewedTerm) -> None:
        """Tell the customer the term they start is renewed, signed or automatically."""
        await self._send_email(
            "renewal_confirmation",
            "renewal_confirmation",
            {
                "auto_renewed": renewed.outcome == "auto_renewed",
                "renewal_date": f"{renewed.renewal_date:%Y-%m-%d}",
                "next_renewal_date": f"{self._renewal_date:%Y-%m-%d}",
            },
        )

    async def _send_reminder(self, days: int) -> None:
        self._reminders_sent.append(days)
        date = f"{self._renewal_date:%Y-%m-%d}"
        await self._send_email(
            f"reminder_{days}d",
            "renewal_reminder",
            {"days": days, "renewal_date": date, "auto_renew": self._term.auto_renew},
        )
        await self._create_task(
            self._term.owner,
            f"reminder_{days}d",
            f"Renewal of {self._term.company_name} in {days} days ({date})",
            min(workflow.now() + timedelta(days=3), self._renewal_date),
            f"Plan {self._term.plan}, annual value {self._term.annual_value:,.2f}; "
            f"{'renews automatically' if self._term.auto_renew else 'lapses'} without a decision.",
        )

    async def _analyse_usage(self) -> None:
        self._usage_analysed = True
        usage = await workflow.execute_activity(
            ANALYSE_USAGE,
            UsageRequest(
                subscription_id=self._term.subscription_id,
                since=self._renewal_date - timedelta(days=365),
                tenant=self._tenant(),
            ),
            result_type=UsageSummary,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RECORD_RETRY,
            summary="analyse usage",
        )
        self._usage = usage
        offer = self._schedule.upsell.get(self._term.plan)
        detail = f"{usage.metric or 'no usage reported'}: {usage.utilisation:.0%} of the plan"
        self._show_step(USAGE_ANALYSIS, detail)
        eligible = offer is not None and usage.utilisation > offer.usage_threshold
        self._upsell = "eligible" if eligible else "not_eligible"
        await self._audit_step(
            USAGE_ANALYSIS,
            {"usage": dataclasses.asdict(usage), "upsell": self._upsell},
        )
        if offer is not None and eligible:
            self._upsell_task = asyncio.create_task(self._offer_upsell(offer, usage))

    async def _offer_upsell(self, offer: UpsellTerms, usage: UsageSummary) -> None:
        """Send the upsell offer, after an approval when its discount is above the limit."""
        if offer.discount_percent > self._schedule.max_discount_without_approval:
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
                "renewal_date": f"{self._renewal_date:%Y-%m-%d}",
                "metric": usage.metric or "usage",
                "utilisation_percent": round(usage.utilisation * 100),
            },
        )
        await self._create_task(
            self._term.owner,
            "upsell_follow_up",
            f"Follow up the {offer.offered_plan} offer to {self._term.company_name}",
            min(workflow.now() + timedelta(days=7), self._renewal_date),
            f"{offer.discount_percent:g}% discount offered at "
            f"{usage.utilisation:.0%} {usage.metric} usage.",
        )
        self._upsell = "offered"
        await self._audit_step("upsell", {"outcome": "offered", "plan": offer.offered_plan})

    async def _approve_discount(
        self, offer: UpsellTerms, usage: UsageSummary
    ) -> ApprovalResult | None:
        subject_id = f"{self._term.subscription_id}-term{self._term.term}-discount"
        self._approval_id = approval_id(subject_id)
        self._upsell = "awaiting_approval"
        chain = self._schedule.discount_approvers
        self._show_step("approval_requested", f"{self._approval_id} from {chain[0].approver_id}")
        try:
            return await workflow.execute_child_workflow(
                ApprovalWorkflow.run,
                ApprovalInput(
                    subject_id=subject_id,
                    subject=f"{offer.discount_percent:g}% discount for {self._term.company_name} "
                    f"upgrading {self._term.plan} -> {offer.offered_plan}",
                    requester_id=self._term.owner.staff_id,
                    chain=list(chain),
                    customer_id=self._term.customer_id,
                    details={
                        "subscription_id": self._term.subscription_id,
                        "renewal_process": self._process_id,
                        "plan": self._term.plan,
                        "offered_plan": offer.offered_plan,
                        "discount_percent": offer.discount_percent,
                        "annual_value": self._term.annual_value,
                        "utilisation": usage.utilisation,
                    },
                ),
                id=self._approval_id,
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(PROCESS, "approval"),
                        SearchAttributePair(CUSTOMER_ID, self._term.customer_id),
                        SearchAttributePair(STAGE, "awaiting_decision"),
                        SearchAttributePair(APPROVAL_ASSIGNEE, chain[0].approver_id),
                    ]
                ),
                static_summary=f"Discount approval for subscription {self._term.subscription_id}",
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
        if self._next_terms_changed:  # by events after the outcome (see _late_event)
            next_term = self._next_term(outcome)
        workflow.continue_as_new(dataclasses.replace(next_term, carried_events=self._carried))

    async def _escalate_lapse(self) -> None:
        self._set_stage("lapsed")
        owner, manager = self._term.owner, self._term.manager
        date = f"{self._renewal_date:%Y-%m-%d}"
        await self._create_task(
            owner,
            "churn_risk",
            f"Churn risk: {self._term.company_name} lapsed on {date}",
            workflow.now() + timedelta(days=2),
            f"Plan {self._term.plan}, annual value {self._term.annual_value:,.2f}; "
            "no renewal and no auto-renewal.",
        )
        escalate_to = manager or owner
        await self._create_task(
            escalate_to,
            "lapse_escalation",
            f"Escalation: {self._term.company_name} did not renew ({owner.name}'s account)",
            workflow.now() + timedelta(days=1),
            f"Subscription {self._term.subscription_id} lapsed on {date}.",
        )
        await self._send_email(
            "lapse_escalation",
            "renewal_lapse_escalation",
            {
                "manager_name": escalate_to.name,
                "owner_name": owner.name,
                "renewal_date": date,
                "subscription_id": self._term.subscription_id,
            },
            to=escalate_to.email,
        )

    async def _finish(self, outcome: str) -> None:
        self._set_stage(outcome)
        self._state.outcome = outcome
        await self._audit_step("outcome", {"outcome": outcome, "renewal_date": self._renewal_date})
        await workflow.wait_condition(workflow.all_handlers_finished)

    # Planning: which step is due next, re-planned whenever the date moves.

    def _pending_steps(self) -> list[tuple[datetime, str]]:
        """The steps still to take this term, earliest first (reminders before analysis)."""
        done = {*self._reminders_sent, *self._reminders_skipped}
        steps = [
            (self._renewal_date - timedelta(days=days), f"reminder_{days}d")
            for days in self._schedule.reminder_days
            if days not in done
        ]
        if not self._usage_analysed:
            analysis_at = self._renewal_date - timedelta(days=self._schedule.usage_analysis_day)
            steps.append((analysis_at, USAGE_ANALYSIS))
        steps.append((self._renewal_date, RENEWAL_DATE))
        return sorted(steps, key=lambda step: step[0])

    def _next_step(self) -> tuple[datetime, str]:
        """The next step; of several reminders already overdue only the latest is sent."""
        now = workflow.now()
        overdue = [
            days
            for days in self._schedule.reminder_days
            if days not in self._reminders_sent
            and days not in self._reminders_skipped
            and self._renewal_date - timedelta(days=days) <= now
        ]
        for days in sorted(overdue, reverse=True)[:-1]:
            self._reminders_skipped.append(days)
            self._show_step(
                f"reminder_{days}d", "skipped: its day had passed before it was planned"
            )
        return self._pending_steps()[0]

    async def _wait_until(self, at: datetime, step: str) -> bool:
        """Wait until ``at``; False when an event decided the term or moved the date first."""
        version = self._plan_version

        def interrupted() -> bool:
            return self._decision is not None or self._plan_version != version

        remaining = at - workflow.now()
        if remaining <= timedelta(0):
            return not interrupted()
        workflow.set_current_details(
            f"Term {self._term.term}: next step {step} at {at:%Y-%m-%d %H:%M} UTC; "
            f"renewal date {self._renewal_date:%Y-%m-%d}."
        )
        try:
            await workflow.wait_condition(interrupted, timeout=remaining, timeout_summary=step)
        except TimeoutError:
            return not interrupted()
        return False

    def _next_term(self, outcome: str) -> RenewalInput:
        data = self._decision_data
        if RENEWAL_DATE in data:
            next_date = parse_renewal_date(data[RENEWAL_DATE])
        else:
            next_date = _one_year_after(self._renewal_date)
        return dataclasses.replace(
            self._term,
            renewal_date=next_date,
            plan=str(data.get("plan", self._term.plan)),
            annual_value=float(data.get("annual_value", self._term.annual_value)),
            term=self._term.term + 1,
            renewed_from=RenewedTerm(outcome, self._renewal_date),
        )

    def _refusal(self, event: ProcessEvent, *, ignore_decision: bool = False) -> str | None:
        if event.type not in EVENTS:
            return "not a renewal event"
        if self._decision is not None and not ignore_decision:
            return f"the term is already {self._decision}"
        if (
            event.type == "renewed"
            and (problem := renewed_terms_problem(event.data))
            and workflow.patched(REFUSE_UNUSABLE_TERMS)
        ):
            return problem
        if event.type == "renewal_date_changed" or (
            event.type == "renewed" and RENEWAL_DATE in event.data
        ):
            try:
                parse_renewal_date(event.data.get(RENEWAL_DATE))
            except (TypeError, ValueError) as err:
                return f"data.renewal_date: {err}"
        return None

    # Helpers: each a single activity call or a change of the visible state.

    async def _send_email(
        self, step: str, template: str, context: dict[str, object], to: str | None = None
    ) -> None:
        owner = self._term.owner
        await self._email(
            step,
            EmailRequest(
                key=self._key(f"email_{step}"),
                process_id=self._process_id,
                to=to or self._term.contact_email,
                template=template,
                context={
                    "company_name": self._term.company_name,
                    "contact_name": self._term.contact_name,
                    "plan": self._term.plan,
                    "annual_value": f"{self._term.annual_value:,.2f}",
                    "owner_name": owner.name,
                    "owner_email": owner.email,
                    **context,
                },
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


def _one_year_after(date: datetime) -> datetime:
    try:
        return date.replace(year=date.year + 1)
    except ValueError:  # 29 February
        return date.replace(year=date.year + 1, day=28)


def _validate(term: RenewalInput) -> None:
    problems = [
        f"{name} is required"
        for name in ("subscription_id", "customer_id", "company_name", "contact_email", "plan")
        if not str(getattr(term, name)).strip()
    ]
    if term.annual_value < 0:
        problems.append("annual_value must not be negative")
    days = term.schedule.reminder_days
    if any(later >= earlier for earlier, later in itertools.pairwise(days)) or any(
        d < 1 for d in days
    ):
        problems.append(f"schedule.reminder_days must be positive and decreasing, got {days}")
    needs_approval = any(
        offer.discount_percent > term.schedule.max_discount_without_approval
        for offer in term.schedule.upsell.values()
    )
    if needs_approval and not term.schedule.discount_approvers:
        problems.append("schedule.discount_approvers is empty but some discounts need approval")
    if problems:
        raise ApplicationError(
            "invalid renewal input: " + "; ".join(problems),
            type="InvalidInput",
            non_retryable=True,
        )
