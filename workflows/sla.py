"""Support-ticket SLA (``sla-{ticket_id}``): assign the ticket, run its first-response and
resolution clocks in the customer's business time (``TicketClocks``), warn the assignee at
75 % of a target, escalate to the team lead at the breach (reassigning when the policy says
so) and to the manager at 150 %, and record the outcome. Its texts are ``sla_messages``."""

import asyncio
import contextlib
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import VersioningBehavior
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

from workflows import sla_messages as messages
from workflows.retries import RECORD_RETRY
from workflows.steps import ProcessSteps

with workflow.unsafe.imports_passed_through():
    from crm.domain.calendar import BusinessCalendar
    from crm.domain.sla import BREACH, MANAGER, WARNING, SlaClock
    from crm.domain.ticket_clocks import TicketClocks
    from workflows.common import SLA_STATE, TICKET_PRIORITY, ProcessEvent, ProcessState, event_data
    from workflows.contracts import (
        RECORD_SLA_OUTCOME,
        Assignment,
        SlaClockOutcome,
        SlaOutcomeRecord,
        StaffContact,
    )
    from workflows.sla_types import (
        EVENT_DATA,
        EVENT_TYPES,
        PriorityChanged,
        StatusChanged,
        TicketInput,
        TicketSlaResult,
    )

PROCESS_NAME = "sla"


@workflow.defn(versioning_behavior=VersioningBehavior.PINNED)
class TicketSlaWorkflow(ProcessSteps):
    """One ticket's SLA; see the module docstring for the process."""

    @workflow.init
    def __init__(self, ticket: TicketInput) -> None:
        super().__init__(process=PROCESS_NAME, customer_id=ticket.customer_id)
        self._ticket = ticket
        self._problems = ticket.problems()
        self._sla = TicketClocks(
            ticket.terms, ticket.priority, created_at=ticket.created_at, now=workflow.now()
        )
        self._changed = False
        self._assignee: Assignment | None = None
        self._lead: StaffContact | None = None
        self._reassigned = False
        self._events: list[ProcessEvent] = []
        self._events_recorded = 0
        self._shown_sla_state = ""
        self._shown_priority = ""

    @workflow.run
    async def run(self, ticket: TicketInput) -> TicketSlaResult:
        if self._problems:
            raise ApplicationError(
                "invalid ticket input: " + "; ".join(self._problems),
                type="InvalidInput",
                non_retryable=True,
            )
        self._publish_process(ticket.customer_id, "assigning")
        self._show_live_state()
        try:
            await self._assign_ticket()
            await self._watch_clocks_until_resolved()
        except (asyncio.CancelledError, ActivityError) as err:
            if not is_cancelled_exception(err):  # a cancel mid-activity is an ActivityError
                raise
            await self._close_as_cancelled()
            raise
        await self._finish()
        return TicketSlaResult(
            ticket_id=ticket.ticket_id,
            outcome=self._sla.outcome or "unknown",
            priority=self._sla.priority,
            sla_state=self._sla.state(workflow.now()),
            assignee_id=self._assignee.assignee_id if self._assignee else None,
            clocks=self._clock_outcomes(),
            escalations=list(self._sla.escalations),
        )

    @workflow.signal
    def event(self, event: ProcessEvent) -> None:
        """Apply a ticket event (``EVENT_DATA``) to the clocks at the moment it arrives; other
        events, data that does not fit and events after the end are noted and ignored."""
        ignored = self._apply(event, workflow.now())
        if ignored:
            workflow.logger.warning("ticket SLA ignores event %r: %s", event.type, ignored)
            self._show_step(f"ignored:{event.type}", ignored)
            return
        self._events.append(event)
        self._show_step(f"event:{event.type}", messages.event_note(event))
        self._changed = True

    @workflow.query
    def state(self) -> ProcessState:
        """Stage, what the ticket waits for, due times and the business time left per clock,
        as of the run's last activity (``details.as_of``); the due times are exact."""
        self._state.waiting_for = self._sla.waiting_for()
        self._state.due = self._sla.due_times()
        self._state.details = {
            "ticket_id": self._ticket.ticket_id,
            "subject": self._ticket.subject,
            "tier": self._ticket.tier,
            "assignee_id": self._assignee.assignee_id if self._assignee else None,
            **self._sla.details(workflow.now()),
        }
        return self._state

    # The steps of the process, in order.

    async def _assign_ticket(self) -> None:
        self._assignee = await self._assign("assign", self._ticket.terms.pool)
        self._show_step("assign", self._assignee.assignee_id)
        await self._audit_step("assign", {"assignee_id": self._assignee.assignee_id})

    async def _watch_clocks_until_resolved(self) -> None:
        while self._sla.outcome is None:
            self._changed = False
            self._show_live_state()
            await self._escalate_levels_reached()
            await self._record_new_events()
            self._show_live_state()
            deadline = self._sla.next_deadline()
            timeout = None if deadline is None else deadline[0] - workflow.now()
            if timeout is not None and timeout <= timedelta(0):
                continue
            with contextlib.suppress(TimeoutError):  # a deadline came: look at the clocks
                await workflow.wait_condition(
                    lambda: self._changed,
                    timeout=timeout,
                    timeout_summary=deadline[1] if deadline else None,
                )
        await self._record_new_events()

    async def _escalate_levels_reached(self) -> None:
        """Act on every level a clock has reached since the last look, lowest first."""
        now = workflow.now()
        for clock in self._sla.clocks.values():
            reached = self._sla.reach_levels(clock.name, now)
            if reached.warning_overtaken:
                self._show_step(f"{clock.name}_warning", "skipped: breached at the same time")
            for level in reached.levels:
                if level == WARNING:
                    await self._warn_assignee(clock)
                elif level == BREACH:
                    await self._escalate_to_team_lead(clock)
                elif level == MANAGER:
                    await self._escalate_to_manager(clock)

    async def _warn_assignee(self, clock: SlaClock) -> None:
        assignee = self._assignee_or_fail()
        step = f"{clock.name}_warning"
        alert = self._alert(clock, clock.due(1.0) or workflow.now())
        await self._send_email(step, messages.warning_email(alert, assignee))
        await self._notify_staff(step, assignee.assignee_id, messages.warning_notice(alert))
        self._sla.record_escalation(clock.name, WARNING, assignee.assignee_id)
        await self._emit(
            "ticket.warning",
            {
                "clock": clock.name,
                "due_at": (clock.due(1.0) or workflow.now()).isoformat(),
                "priority": self._sla.priority,
                "assignee_id": assignee.assignee_id,
            },
            step=step,
        )

    async def _escalate_to_team_lead(self, clock: SlaClock) -> None:
        lead = await self._team_lead()
        step = f"{clock.name}_breach"
        due = self._sla.breach_due(clock.name, workflow.now())
        reassigned_to = await self._reassign_if_policy_says(step)
        await self._send_email(
            step, messages.breach_email(self._alert(clock, due), lead, reassigned_to)
        )
        # Built after the email: a priority changed meanwhile shows in the task.
        await self._create_task(step, messages.breach_task(self._alert(clock, due), lead))
        self._sla.record_escalation(clock.name, BREACH, lead.staff_id)
        await self._offer_outcome(
            "breached", self._ticket.ticket_id, self._outcome_record(), step=step
        )

    async def _escalate_to_manager(self, clock: SlaClock) -> None:
        lead = await self._team_lead()
        step = f"{clock.name}_manager"
        if lead.manager_id is None:
            self._show_step(step, f"not sent: team lead {lead.staff_id} has no manager")
            return
        manager = await self._look_up_staff(lead.manager_id)
        alert = self._alert(clock, self._sla.breach_due(clock.name, workflow.now()))
        await self._send_email(step, messages.manager_email(alert, lead, manager))
        await self._create_task(step, messages.manager_task(alert, lead, manager))
        self._sla.record_escalation(clock.name, MANAGER, manager.staff_id)
        await self._emit(
            "ticket.escalated",
            {"clock": clock.name, "level": "manager", "escalated_to": manager.staff_id},
            step=step,
        )

    async def _reassign_if_policy_says(self, step: str) -> str | None:
        pool = self._ticket.terms.reassign_pool
        if pool is None or self._reassigned:
            return None
        self._reassigned = True
        previous = self._assignee_or_fail()
        await self._release(previous)
        self._assignee = new = await self._assign("reassign", pool)
        self._show_step("reassign", f"{previous.assignee_id} -> {new.assignee_id}")
        await self._audit_step(
            "reassign", {"from": previous.assignee_id, "to": new.assignee_id, "after": step}
        )
        notice = messages.reassigned_notice(self._ticket)
        await self._notify_staff("reassign", new.assignee_id, notice)
        return new.assignee_name

    async def _finish(self) -> None:
        outcome = self._sla.outcome or "unknown"
        self._state.outcome = outcome
        self._set_stage(outcome)
        self._show_live_state()
        await self._record_outcome(outcome)
        if self._assignee is not None:
            await self._release(self._assignee)
        await self._offer_outcome(outcome, self._ticket.ticket_id, self._outcome_record())
        await workflow.wait_condition(workflow.all_handlers_finished)

    async def _close_as_cancelled(self) -> None:
        self._sla.end("cancelled", workflow.now())
        self._state.outcome = "cancelled"
        self._set_stage("cancelled")
        await self._record_outcome("cancelled")
        if self._assignee is not None:
            await self._release(self._assignee)
        await self._offer_outcome("cancelled", self._ticket.ticket_id, self._outcome_record())

    def _outcome_record(self) -> dict[str, object]:
        """The ticket as automations on ``crmflow.ticket`` see it."""
        breached = [clock.name for clock in self._sla.clocks.values() if BREACH in clock.reached]
        return {
            "subject": self._ticket.subject,
            "priority": self._sla.priority,
            "tier": self._ticket.tier or "",
            "assignee_id": self._assignee.assignee_id if self._assignee else "",
            "breached": bool(breached),
            "breached_clocks": breached,
        }

    # Events and the visible state.

    def _apply(self, event: ProcessEvent, now: datetime) -> str:
        """Apply ``event`` at ``now``; the reason it was ignored, or "" if applied."""
        if self._sla.outcome is not None:
            return f"the ticket is already {self._sla.outcome}"
        if self._problems:
            return "the ticket input is invalid"
        if event.type not in EVENT_DATA:
            return f"not a ticket event; accepted: {list(EVENT_TYPES)}"
        data_type = EVENT_DATA[event.type]
        try:
            data = None if data_type is None else event_data(data_type, event)
        except (TypeError, ValueError) as err:
            cause = f" ({err.__cause__})" if err.__cause__ else ""
            return f"data does not fit {event.type}: {err}{cause}"
        try:
            if isinstance(data, StatusChanged):
                self._sla.set_status(data.status, now)
            elif isinstance(data, PriorityChanged):
                self._sla.change_priority(data.priority, now)
            elif event.type == "agent_replied":
                self._sla.reply(now)
            elif event.type in ("resolved", "closed"):
                self._sla.end(event.type, now)
        except ValueError as err:  # a priority the ticket's terms do not know
            return str(err)
        return ""

    def _show_live_state(self) -> None:
        """Keep the search attributes, stage and UI details in step with the clocks."""
        now = workflow.now()
        sla_state = self._sla.state(now)
        updates = []
        if sla_state != self._shown_sla_state:
            updates.append(SLA_STATE.value_set(sla_state))
            self._shown_sla_state = sla_state
        if self._sla.priority != self._shown_priority:
            updates.append(TICKET_PRIORITY.value_set(self._sla.priority))
            self._shown_priority = self._sla.priority
        if updates:
            workflow.upsert_search_attributes(updates)
        if self._sla.outcome is None and self._assignee is not None:
            self._set_stage(self._sla.stage())
        workflow.set_current_details(self._sla.summary(now))

    def _clock_outcomes(self) -> list[SlaClockOutcome]:
        return [SlaClockOutcome(**outcome) for outcome in self._sla.outcomes(workflow.now())]

    # Helpers: each a single activity call or a change of the visible state.

    async def _assign(self, step: str, pool: str) -> Assignment:
        self._set_stage("assigning")
        return await self._assign_owner(
            self._key(step),
            pool,
            self._ticket.ticket_id,
            summary=f"{step} ticket from {pool}",
            skills=self._ticket.skills,
        )

    async def _release(self, assignment: Assignment) -> None:
        await self._release_assignment(
            assignment.key, f"release ticket from {assignment.assignee_id}"
        )

    async def _team_lead(self) -> StaffContact:
        """The team lead of the assignee at the first breach (looked up once)."""
        if self._lead is None:
            assignee = self._assignee_or_fail()
            if assignee.manager_id is None:
                raise ApplicationError(
                    f"assignee {assignee.assignee_id} has no team lead (manager_id) to escalate to",
                    type="InvalidPolicy",
                    non_retryable=True,
                )
            self._lead = await self._look_up_staff(assignee.manager_id)
        return self._lead

    def _alert(self, clock: SlaClock, due: datetime) -> messages.ClockAlert:
        """What an escalation tells of ``clock``, due at ``due``, as of now."""
        facts = self._sla.email_facts(clock.name, due, workflow.now())
        return messages.ClockAlert(self._ticket, self._assignee_or_fail().assignee_name, facts)

    async def _send_email(self, step: str, email: messages.Email) -> None:
        request = email.request(self._key(f"email_{step}"), self._process_id)
        await self._email(step, request, within=timedelta(hours=1))

    async def _create_task(self, step: str, task: messages.Task) -> None:
        await self._task(
            step,
            customer_id=self._ticket.customer_id,
            assignee_id=task.assignee_id,
            kind=f"sla_{step}",
            title=task.title,
            due=BusinessCalendar.around_the_clock().add(workflow.now(), timedelta(hours=1)),
            detail=task.detail,
        )

    async def _record_new_events(self) -> None:
        while self._events_recorded < len(self._events):
            event = self._events[self._events_recorded]
            self._events_recorded += 1
            await self._audit_step(
                f"event_{self._events_recorded}:{event.type}", {"data": dict(event.data)}
            )

    async def _record_outcome(self, outcome: str) -> None:
        now = workflow.now()
        await workflow.execute_activity(
            RECORD_SLA_OUTCOME,
            SlaOutcomeRecord(
                key=self._key("sla_outcome"),
                process_id=self._process_id,
                ticket_id=self._ticket.ticket_id,
                customer_id=self._ticket.customer_id,
                priority=self._sla.priority,
                tier=self._ticket.tier,
                assignee_id=self._assignee.assignee_id if self._assignee else None,
                outcome=outcome,
                clocks=self._clock_outcomes(),
                escalations=list(self._sla.escalations),
                ended_at=now,
            ),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RECORD_RETRY,
            summary=f"SLA outcome: {outcome}, {self._sla.state(now)}",
        )
        self._show_step("sla_outcome", f"{outcome}: {self._sla.state(workflow.now())}")

    def _set_stage(self, stage: str, *, searchable: bool = True) -> None:
        if self._state.stage != stage:  # re-planning often lands on the same stage
            super()._set_stage(stage, searchable=searchable)

    def _assignee_or_fail(self) -> Assignment:
        if self._assignee is None:
            raise ApplicationError(
                "the ticket is not assigned yet", type="InvalidState", non_retryable=True
            )
        return self._assignee
