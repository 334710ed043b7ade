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
import dataclasses
from datetime import timedelta

from temporalio import workflow
from temporalio.common import VersioningBehavior
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    is_cancelled_exception,
)

from workflows.renewal_upsell import RenewalUpsell

with workflow.unsafe.imports_passed_through():
    from crm.domain.renewal_plan import (
        RENEWAL_DATE,
        Step,
        TermChanges,
        reminder_step,
    )
    from workflows import renewal_messages as messages
    from workflows.common import ProcessEvent, ProcessState
    from workflows.contracts import UsageSummary
    from workflows.renewal_types import (
        EVENTS,
        Cancelled,
        RenewalDateChanged,
        RenewalEvent,
        RenewalInput,
        RenewalResult,
        Renewed,
        RenewedTerm,
        read_event,
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


@workflow.defn(versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class RenewalWorkflow(RenewalUpsell):
    """One subscription term; see the module docstring for the schedule."""

    @workflow.init
    def __init__(self, term: RenewalInput) -> None:
        super().__init__(
            process=PROCESS_NAME, customer_id=term.customer_id, step_prefix=f"term{term.term}_"
        )
        self._term = term
        self._plan = term.renewal_plan()
        self._usage: UsageSummary | None = None
        self._upsell: str | None = None
        self._offered_plan: str | None = None
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
            await self._emit_term("renewal.term_started", "term_started")
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
        return term.result(outcome, self._plan, self._upsell)

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
            detail = messages.date_moved_detail(previous, data.renewal_date)
            self._show_step("renewal_date_changed", detail)
        else:
            self._decision = event.type
            if isinstance(data, Renewed):
                self._plan.sign(data.changes())
            self._show_step(f"event:{event.type}")
        step = f"event_{self._events}_{event.type}"
        await self._audit_step(step, {"data": event.data})
        if isinstance(data, RenewalDateChanged):
            await self._emit_term("renewal.date_changed", step, previous_date=previous.isoformat())
        elif isinstance(data, Renewed) and data.plan and data.plan == self._offered_plan:
            await self._emit_term("renewal.upsell_accepted", step, offered_plan=data.plan)

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
        self._state.details = messages.term_details(
            self._term, self._plan, self._usage, self._upsell, self._approval_id
        )
        return self._state

    # The steps of the process, in order.

    async def _follow_term(self) -> str:
        """Take each step when it is due; return the decision, or ``renewal_date`` if none."""
        self._set_stage("active")
        while True:
            for days in self._plan.skip_overdue(workflow.now()):
                self._show_step(reminder_step(days), messages.SKIPPED)
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
        # The next date is read once the email task runs: events taken before it count.
        await self._send_email(messages.renewal_confirmation(renewed, self._plan.renewal_date))

    async def _send_reminder(self, days: int) -> None:
        term, date = self._term, self._plan.renewal_date
        await self._send_email(messages.reminder_email(term, days, date))
        task = messages.reminder_task(term, days, date, workflow.now(), self._plan.renewal_date)
        await self._create_task(task)
        await self._emit(
            "renewal.reminded",
            {"days_before": days, "renewal_date": date.isoformat(), "term": term.term},
            step=f"reminded_{days}",
        )

    async def _start_next_term(self, outcome: str) -> None:
        next_term = self._next_term(outcome)
        self._set_stage(outcome)
        self._show_step(outcome, f"next renewal {next_term.renewal_date:%Y-%m-%d}")
        await self._audit_step("outcome", messages.next_term_record(outcome, next_term))
        await self._offer_outcome(outcome, self._term.subscription_id, self._outcome_record())
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self._plan.changed_late:  # by events after the outcome (see _late_event)
            next_term = self._next_term(outcome)
        workflow.continue_as_new(dataclasses.replace(next_term, carried_events=self._carried))

    async def _escalate_lapse(self) -> None:
        """A churn-risk task for the owner, then a task and an email for their manager."""
        self._set_stage("lapsed")
        term, date = self._term, self._plan.renewal_date
        await self._create_task(messages.churn_risk_task(term, date, workflow.now()))
        await self._create_task(messages.lapse_escalation_task(term, date, workflow.now()))
        await self._send_email(messages.lapse_escalation_email(term, date))

    async def _finish(self, outcome: str) -> None:
        self._set_stage(outcome)
        self._state.outcome = outcome
        renewal_date = self._plan.renewal_date
        await self._audit_step("outcome", {"outcome": outcome, "renewal_date": renewal_date})
        await self._offer_outcome(outcome, self._term.subscription_id, self._outcome_record())
        await workflow.wait_condition(workflow.all_handlers_finished)

    def _outcome_record(self) -> dict[str, object]:
        return messages.outcome_record(self._term, self._plan)

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
            messages.waiting_detail(self._term, step, self._plan.renewal_date)
        )
        try:
            await workflow.wait_condition(interrupted, timeout=remaining, timeout_summary=step.name)
        except TimeoutError:
            return not interrupted()
        return False

    def _read(self, event: ProcessEvent, decided: str | None = None) -> RenewalEvent | str:
        """``read_event``'s answer; the patch is about the plan and the value, as it was made."""
        return read_event(event, decided, lambda: workflow.patched(REFUSE_UNUSABLE_TERMS))

    def _ignore(self, event: ProcessEvent, problem: str) -> None:
        workflow.logger.warning("renewal ignores event %r: %s", event.type, problem)
        self._show_step(f"ignored:{event.type}", problem)

    def _next_term(self, outcome: str) -> RenewalInput:
        terms = self._plan.next_term(self._term.plan, self._term.annual_value)
        return self._term.followed_by(terms, RenewedTerm(outcome, self._plan.renewal_date))
