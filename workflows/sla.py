"""Support-ticket SLA: assign a ticket, watch its clocks, escalate before and after breaches.

The process a support team runs for every ticket (``sla-{ticket_id}``):

1. Assign the ticket to an agent of the SLA pool: agents with the ticket's
   skills first, then the fewest open tickets, round-robin on ties.
2. Run two clocks in business time of the customer's calendar (urgent tickets
   around the clock), each against its priority's target:
   - first response: stops at ``agent_replied``;
   - resolution: stops at ``resolved`` or ``closed``, which end the process.
   ``status_changed`` to ``pending_customer`` pauses both, back to ``open``
   resumes them; ``priority_changed`` swaps the targets and keeps the time used.
3. For each clock, at 75 % of its target warn the assignee (email and in-app
   notification); at 100 % the clock has breached: email the team lead, create a
   task for them and, when the policy names a ``reassign_pool``, move the
   ticket; at 150 % escalate to the manager (email and task).
4. At the end record the outcome: met or breached per clock, the business time
   used and every escalation.

The run sleeps until the next of those deadlines, computed from the business
time used so far, and plans again whenever an event arrives. The thresholds
and targets are policy (``crm.domain.sla.SlaTerms``), resolved per customer tier
before the run starts.
"""

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

from workflows.retries import RECORD_RETRY
from workflows.steps import ProcessSteps

with workflow.unsafe.imports_passed_through():
    from crm.domain.calendar import BusinessCalendar, CalendarError
    from crm.domain.sla import (
        BREACH,
        CLOCKS,
        FIRST_RESPONSE,
        LEVELS,
        MANAGER,
        WARNING,
        SlaClock,
        SlaTerms,
        format_business_time,
        format_local_time,
    )
    from workflows.common import (
        SLA_STATE,
        TICKET_PRIORITY,
        ProcessEvent,
        ProcessState,
    )
    from workflows.contracts import (
        ASSIGN_OWNER,
        LOOK_UP_STAFF,
        NOTIFY_STAFF,
        RECORD_SLA_OUTCOME,
        Assignment,
        AssignmentRequest,
        EmailRequest,
        NotificationRequest,
        SlaClockOutcome,
        SlaOutcomeRecord,
        StaffContact,
        StaffLookup,
    )

PROCESS_NAME = "sla"

#: Events a ticket SLA accepts; ``status_changed`` and ``priority_changed`` carry data.
EVENT_TYPES: tuple[str, ...] = (
    "agent_replied",
    "status_changed",
    "priority_changed",
    "resolved",
    "closed",
)
PENDING_CUSTOMER = "pending_customer"
OPEN = "open"

CLOCK_LABELS = {FIRST_RESPONSE: "first response", "resolution": "resolution"}

#: Staff look-ups read the policy: an unknown id will not appear on retry.
LOOKUP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=["InvalidInput"],
)


@dataclass
class TicketInput:
    """A ticket that was opened; ``terms`` are the SLA terms of the customer's tier.

    ``created_at`` is when the helpdesk opened it (default: when the run
    starts); the clocks count from then.
    """

    ticket_id: str
    customer_id: str
    subject: str
    priority: str
    terms: SlaTerms
    created_at: datetime | None = None
    tier: str | None = None
    skills: list[str] = field(default_factory=list)


@dataclass
class TicketSlaResult:
    """How the ticket's SLA ended (``resolved``, ``closed``) and what it took."""

    ticket_id: str
    outcome: str
    priority: str
    sla_state: str
    assignee_id: str | None
    clocks: list[SlaClockOutcome]
    escalations: list[dict[str, Any]]


def sla_id(ticket_id: str) -> str:
    """The workflow id of a ticket's SLA process, its business key."""
    return f"sla-{ticket_id}"


@workflow.defn
class TicketSlaWorkflow(ProcessSteps):
    """One ticket's SLA; see the module docstring for the process."""

    @workflow.init
    def __init__(self, ticket: TicketInput) -> None:
        super().__init__(process=PROCESS_NAME, customer_id=ticket.customer_id)
        self._ticket = ticket
        self._terms = ticket.terms
        self._priority = ticket.priority
        self._problems = _problems_with(ticket)
        self._status = OPEN
        self._outcome: str | None = None
        self._changed = False
        self._assignee: Assignment | None = None
        self._lead: StaffContact | None = None
        self._reassigned = False
        self._escalations: list[dict[str, Any]] = []
        self._events: list[ProcessEvent] = []
        self._events_recorded = 0
        self._breach_due: dict[str, datetime] = {}
        self._shown_sla_state = ""
        self._shown_priority = ""
        now = workflow.now()
        opened = _aware(ticket.created_at) if ticket.created_at else now
        self._opened = min(opened, now)
        self._clocks: dict[str, SlaClock] = {}
        if not self._problems:
            calendar = self._terms.calendar_for(self._priority)
            targets = self._terms.targets[self._priority]
            self._clocks = {
                name: SlaClock(name, targets.target(name), calendar, self._opened)
                for name in CLOCKS
            }

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
            outcome=self._outcome or "unknown",
            priority=self._priority,
            sla_state=self._sla_state(),
            assignee_id=self._assignee.assignee_id if self._assignee else None,
            clocks=self._clock_outcomes(),
            escalations=list(self._escalations),
        )

    @workflow.signal
    def event(self, event: ProcessEvent) -> None:
        """Apply a ticket event to the clocks at the moment it arrives.

        ``agent_replied`` stops the first-response clock; ``status_changed``
        (``data.status``: ``pending_customer`` or ``open``) pauses or resumes
        both; ``priority_changed`` (``data.priority``) swaps the targets;
        ``resolved`` and ``closed`` stop both and end the process. Other
        events, and events after the end, are noted and ignored.
        """
        now = workflow.now()
        ignored = self._apply(event, now)
        if ignored:
            workflow.logger.warning("ticket SLA ignores event %r: %s", event.type, ignored)
            self._show_step(f"ignored:{event.type}", ignored)
            return
        self._events.append(event)
        self._show_step(f"event:{event.type}", _describe_event(event))
        self._changed = True

    @workflow.query
    def state(self) -> ProcessState:
        """Stage, what the ticket waits for, due times and the business time left per clock.

        Business time used and remaining is as of the run's last activity
        (``details.as_of``); the due times are exact.
        """
        now = workflow.now()
        self._state.waiting_for = self._waiting_for()
        self._state.due = self._due_times()
        self._state.details = {
            "ticket_id": self._ticket.ticket_id,
            "subject": self._ticket.subject,
            "priority": self._priority,
            "tier": self._ticket.tier,
            "timezone": self._terms.calendar.timezone,
            "status": self._outcome or self._status,
            "sla_state": self._sla_state(),
            "assignee_id": self._assignee.assignee_id if self._assignee else None,
            "opened_at": self._opened.isoformat(),
            "as_of": now.isoformat(),
            "clocks": {
                name: self._describe_clock(clock, now) for name, clock in self._clocks.items()
            },
            "escalations": list(self._escalations),
        }
        return self._state

    # The steps of the process, in order.

    async def _assign_ticket(self) -> None:
        self._assignee = await self._assign("assign", self._terms.pool)
        self._show_step("assign", self._assignee.assignee_id)
        await self._audit_step("assign", {"assignee_id": self._assignee.assignee_id})

    async def _watch_clocks_until_resolved(self) -> None:
        while self._outcome is None:
            self._changed = False
            self._show_live_state()
            await self._escalate_levels_reached()
            await self._record_new_events()
            self._show_live_state()
            deadline = self._next_deadline()
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
        """Act on every level a clock has reached since the last look, lowest first.

        A warning that is overtaken by the breach in the same instant (a raised
        priority, a ticket opened long ago) is marked reached but not sent.
        """
        now = workflow.now()
        for clock in self._clocks.values():
            if clock.stopped:
                continue
            reached = [
                level
                for level in LEVELS
                if level not in clock.reached and clock.reached_at(self._terms.fraction(level), now)
            ]
            for level in reached:
                clock.reached[level] = now
            if BREACH in reached and WARNING in reached:
                reached.remove(WARNING)
                self._show_step(f"{clock.name}_warning", "skipped: breached at the same time")
            for level in reached:
                await self._escalate(clock, level)

    async def _escalate(self, clock: SlaClock, level: str) -> None:
        if level == WARNING:
            await self._warn_assignee(clock)
        elif level == BREACH:
            await self._escalate_to_team_lead(clock)
        elif level == MANAGER:
            await self._escalate_to_manager(clock)

    async def _warn_assignee(self, clock: SlaClock) -> None:
        assignee = self._assignee_or_fail()
        step = f"{clock.name}_warning"
        due = clock.due(1.0) or workflow.now()
        await self._send_email(
            step,
            "sla_warning",
            assignee.assignee_email,
            clock,
            due,
            {
                "recipient_name": assignee.assignee_name,
            },
        )
        await self._notify(
            step,
            assignee.assignee_id,
            f"Ticket {self._ticket.ticket_id}: {CLOCK_LABELS[clock.name]} due "
            f"{format_local_time(due, self._terms.calendar.timezone)}",
        )
        self._escalations.append(self._escalation(clock, WARNING, assignee.assignee_id))

    async def _escalate_to_team_lead(self, clock: SlaClock) -> None:
        lead = await self._team_lead()
        step = f"{clock.name}_breach"
        due = self._breach_due.get(clock.name, workflow.now())
        reassigned_to = await self._reassign_if_policy_says(step)
        await self._send_email(
            step,
            "sla_breach",
            lead.email,
            clock,
            due,
            {
                "recipient_name": lead.name,
                "reassigned_to": reassigned_to,
            },
        )
        await self._create_task(
            step,
            lead.staff_id,
            f"SLA breached: ticket {self._ticket.ticket_id} {CLOCK_LABELS[clock.name]}",
            detail=f'{self._priority} ticket "{self._ticket.subject}" was due '
            f"{format_local_time(due, self._terms.calendar.timezone)}.",
        )
        self._escalations.append(self._escalation(clock, BREACH, lead.staff_id))

    async def _escalate_to_manager(self, clock: SlaClock) -> None:
        lead = await self._team_lead()
        step = f"{clock.name}_manager"
        if lead.manager_id is None:
            self._show_step(step, f"not sent: team lead {lead.staff_id} has no manager")
            return
        manager = await self._look_up(lead.manager_id)
        due = self._breach_due.get(clock.name, workflow.now())
        await self._send_email(
            step,
            "sla_escalation",
            manager.email,
            clock,
            due,
            {
                "recipient_name": manager.name,
                "lead_name": lead.name,
            },
        )
        await self._create_task(
            step,
            manager.staff_id,
            f"SLA escalation: ticket {self._ticket.ticket_id} {CLOCK_LABELS[clock.name]} at "
            f"{round(self._terms.manager_at * 100)}%",
            detail=f"Team lead {lead.name} was notified at the breach.",
        )
        self._escalations.append(self._escalation(clock, MANAGER, manager.staff_id))

    async def _reassign_if_policy_says(self, step: str) -> str | None:
        pool = self._terms.reassign_pool
        if pool is None or self._reassigned:
            return None
        self._reassigned = True
        previous = self._assignee_or_fail()
        await self._release(previous)
        self._assignee = await self._assign("reassign", pool)
        self._show_step("reassign", f"{previous.assignee_id} -> {self._assignee.assignee_id}")
        await self._audit_step(
            "reassign",
            {"from": previous.assignee_id, "to": self._assignee.assignee_id, "after": step},
        )
        await self._notify(
            "reassign",
            self._assignee.assignee_id,
            f"Ticket {self._ticket.ticket_id} was reassigned to you after an SLA breach.",
        )
        return self._assignee.assignee_name

    async def _finish(self) -> None:
        outcome = self._outcome or "unknown"
        self._state.outcome = outcome
        self._set_stage(outcome)
        self._show_live_state()
        await self._record_outcome(outcome)
        if self._assignee is not None:
            await self._release(self._assignee)
        await workflow.wait_condition(workflow.all_handlers_finished)

    async def _close_as_cancelled(self) -> None:
        now = workflow.now()
        for clock in self._clocks.values():
            clock.stop(now)
        self._outcome = "cancelled"
        self._state.outcome = "cancelled"
        self._set_stage("cancelled")
        await self._record_outcome("cancelled")
        if self._assignee is not None:
            await self._release(self._assignee)

    # Clock bookkeeping: pure updates of the workflow's fields.

    def _apply(self, event: ProcessEvent, now: datetime) -> str:
        """Apply ``event`` at ``now``; the reason it was ignored, or "" if applied."""
        if self._outcome is not None:
            return f"the ticket is already {self._outcome}"
        if not self._clocks:
            return "the ticket input is invalid"
        if event.type == "agent_replied":
            self._clocks[FIRST_RESPONSE].stop(now)
        elif event.type == "status_changed":
            status = event.data.get("status")
            if status == PENDING_CUSTOMER:
                for clock in self._clocks.values():
                    clock.pause(now)
            elif status == OPEN:
                for clock in self._clocks.values():
                    clock.resume(now)
            else:
                return f"status must be {PENDING_CUSTOMER!r} or {OPEN!r}, got {status!r}"
            self._status = status
        elif event.type == "priority_changed":
            priority = event.data.get("priority")
            if priority not in self._terms.targets:
                return f"unknown priority {priority!r}; known: {list(self._terms.targets)}"
            self._priority = priority
            calendar = self._terms.calendar_for(priority)
            for clock in self._clocks.values():
                if not clock.stopped:
                    clock.retarget(self._terms.targets[priority].target(clock.name), calendar, now)
        elif event.type in ("resolved", "closed"):
            for clock in self._clocks.values():
                clock.stop(now)
            self._outcome = event.type
        else:
            return f"not a ticket event; accepted: {list(EVENT_TYPES)}"
        return ""

    def _next_deadline(self) -> tuple[datetime, str] | None:
        """The next level any running clock reaches, and what it is."""
        deadlines: list[tuple[datetime, str]] = []
        for clock in self._clocks.values():
            breach = clock.due(1.0)
            if breach is not None and BREACH not in clock.reached:
                self._breach_due[clock.name] = breach
            for level in LEVELS:
                due = clock.due(self._terms.fraction(level))
                if due is not None and level not in clock.reached:
                    deadlines.append((due, f"{CLOCK_LABELS[clock.name]} {level}"))
                    break
        return min(deadlines) if deadlines else None

    def _sla_state(self) -> str:
        """``met`` or ``breached`` once ended; else breached, paused, warning or on_track.

        A breach sticks: a ticket that breached a clock stays ``breached``
        even while paused.
        """
        now = workflow.now()
        if self._outcome is not None:
            met = all(clock.met(now) for clock in self._clocks.values())
            return "met" if met else "breached"
        if any(BREACH in clock.reached for clock in self._clocks.values()):
            return "breached"
        if self._status == PENDING_CUSTOMER:
            return "paused"
        warned = any(
            WARNING in clock.reached
            and not clock.stopped
            and clock.reached_at(self._terms.warning_at, now)
            for clock in self._clocks.values()
        )
        return "warning" if warned else "on_track"

    def _show_live_state(self) -> None:
        """Keep the search attributes, stage and UI details in step with the clocks."""
        sla_state = self._sla_state()
        updates = []
        if sla_state != self._shown_sla_state:
            updates.append(SLA_STATE.value_set(sla_state))
            self._shown_sla_state = sla_state
        if self._priority != self._shown_priority:
            updates.append(TICKET_PRIORITY.value_set(self._priority))
            self._shown_priority = self._priority
        if updates:
            workflow.upsert_search_attributes(updates)
        if self._outcome is None:
            if self._status == PENDING_CUSTOMER:
                stage = "pending_customer"
            elif not self._clocks[FIRST_RESPONSE].stopped:
                stage = "awaiting_first_response"
            else:
                stage = "awaiting_resolution"
            if self._state.stage != stage and self._assignee is not None:
                self._set_stage(stage)
        due = self._due_times()
        timezone = self._terms.calendar.timezone
        workflow.set_current_details(
            f"{self._priority} ticket, SLA {sla_state}. "
            + (
                " ".join(
                    f"{name.replace('_', ' ')} due {format_local_time(at, timezone)}."
                    for name, at in due.items()
                    if name.endswith("_breach")
                )
                or "Clocks paused or stopped."
            )
        )

    def _due_times(self) -> dict[str, datetime]:
        due: dict[str, datetime] = {}
        for clock in self._clocks.values():
            for level in LEVELS:
                at = clock.due(self._terms.fraction(level))
                if at is not None and level not in clock.reached:
                    due[f"{clock.name}_{level}"] = at
        return due

    def _waiting_for(self) -> list[str]:
        if self._outcome is not None:
            return []
        if self._status == PENDING_CUSTOMER:
            return ["status_changed:open", "resolved", "closed"]
        first = [] if self._clocks[FIRST_RESPONSE].stopped else ["agent_replied"]
        return [*first, "resolved", "closed"]

    def _describe_clock(self, clock: SlaClock, now: datetime) -> dict[str, Any]:
        used = clock.used_at(now)
        remaining = clock.target - used
        due = clock.due(1.0)
        return {
            "state": "stopped" if clock.stopped else "running" if clock.running else "paused",
            "status": "met" if clock.met(now) else "breached",
            "target": format_business_time(clock.target),
            "target_seconds": clock.target.total_seconds(),
            "used": format_business_time(used),
            "used_seconds": used.total_seconds(),
            "remaining": format_business_time(max(remaining, timedelta(0))),
            "remaining_seconds": max(remaining, timedelta(0)).total_seconds(),
            "overdue_seconds": max(-remaining, timedelta(0)).total_seconds(),
            "due": due.isoformat() if due and BREACH not in clock.reached else None,
            "levels_reached": {level: at.isoformat() for level, at in clock.reached.items()},
        }

    def _clock_outcomes(self) -> list[SlaClockOutcome]:
        now = workflow.now()
        return [
            SlaClockOutcome(
                clock=clock.name,
                status="met" if clock.met(now) else "breached",
                target_seconds=clock.target.total_seconds(),
                used_seconds=clock.used_at(now).total_seconds(),
                levels_reached=[level for level in LEVELS if level in clock.reached],
            )
            for clock in self._clocks.values()
        ]

    def _escalation(self, clock: SlaClock, level: str, to: str) -> dict[str, Any]:
        reached = clock.reached.get(level, workflow.now())
        return {
            "clock": clock.name,
            "level": level,
            "to": to,
            "at": reached.isoformat(),
            "used_seconds": clock.used_at(reached).total_seconds(),
        }

    # Helpers: each a single activity call or a change of the visible state.

    async def _assign(self, step: str, pool: str) -> Assignment:
        self._set_stage("assigning")
        assignment: Assignment = await workflow.execute_activity(
            ASSIGN_OWNER,
            AssignmentRequest(
                key=self._key(step),
                process_id=self._process_id,
                pool=pool,
                subject_id=self._ticket.ticket_id,
                skills=list(self._ticket.skills),
            ),
            result_type=Assignment,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RECORD_RETRY,
            summary=f"{step} ticket from {pool}",
        )
        return assignment

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
            self._lead = await self._look_up(assignee.manager_id)
        return self._lead

    async def _look_up(self, staff_id: str) -> StaffContact:
        contact: StaffContact = await workflow.execute_activity(
            LOOK_UP_STAFF,
            StaffLookup(staff_id=staff_id),
            result_type=StaffContact,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=LOOKUP_RETRY,
            summary=f"look up {staff_id}",
        )
        return contact

    async def _send_email(
        self,
        step: str,
        template: str,
        to: str,
        clock: SlaClock,
        due: datetime,
        context: dict[str, object],
    ) -> None:
        now = workflow.now()
        used = clock.used_at(now)
        assignee = self._assignee_or_fail()
        await self._email(
            step,
            EmailRequest(
                key=self._key(f"email_{step}"),
                process_id=self._process_id,
                to=to,
                template=template,
                context={
                    "ticket_id": self._ticket.ticket_id,
                    "customer_id": self._ticket.customer_id,
                    "subject": self._ticket.subject,
                    "priority": self._priority,
                    "clock_label": CLOCK_LABELS[clock.name],
                    "target": format_business_time(clock.target),
                    "used": format_business_time(used),
                    "percent_used": round(100 * used / clock.target),
                    "due_local": format_local_time(due, self._terms.calendar.timezone),
                    "timezone": self._terms.calendar.timezone,
                    "assignee_name": assignee.assignee_name,
                    **context,
                },
            ),
            within=timedelta(hours=1),
        )

    async def _notify(self, step: str, staff_id: str, message: str) -> None:
        await workflow.execute_activity(
            NOTIFY_STAFF,
            NotificationRequest(
                key=self._key(f"notify_{step}"),
                process_id=self._process_id,
                staff_id=staff_id,
                kind=f"sla_{step}",
                message=message,
            ),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RECORD_RETRY,
            summary=f"notify {staff_id}: {step}",
        )
        self._show_step(f"notify:{step}", staff_id)

    async def _create_task(self, step: str, assignee_id: str, title: str, detail: str) -> None:
        await self._task(
            step,
            customer_id=self._ticket.customer_id,
            assignee_id=assignee_id,
            kind=f"sla_{step}",
            title=title,
            due=BusinessCalendar.around_the_clock().add(workflow.now(), timedelta(hours=1)),
            detail=detail,
        )

    async def _record_new_events(self) -> None:
        while self._events_recorded < len(self._events):
            event = self._events[self._events_recorded]
            self._events_recorded += 1
            await self._audit_step(
                f"event_{self._events_recorded}:{event.type}", {"data": dict(event.data)}
            )

    async def _record_outcome(self, outcome: str) -> None:
        await workflow.execute_activity(
            RECORD_SLA_OUTCOME,
            SlaOutcomeRecord(
                key=self._key("sla_outcome"),
                process_id=self._process_id,
                ticket_id=self._ticket.ticket_id,
                customer_id=self._ticket.customer_id,
                priority=self._priority,
                tier=self._ticket.tier,
                assignee_id=self._assignee.assignee_id if self._assignee else None,
                outcome=outcome,
                clocks=self._clock_outcomes(),
                escalations=list(self._escalations),
                ended_at=workflow.now(),
            ),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RECORD_RETRY,
            summary=f"SLA outcome: {outcome}, {self._sla_state()}",
        )
        self._show_step("sla_outcome", f"{outcome}: {self._sla_state()}")

    def _set_stage(self, stage: str, *, searchable: bool = True) -> None:
        if self._state.stage != stage:  # re-planning often lands on the same stage
            super()._set_stage(stage, searchable=searchable)

    def _assignee_or_fail(self) -> Assignment:
        if self._assignee is None:
            raise ApplicationError(
                "the ticket is not assigned yet", type="InvalidState", non_retryable=True
            )
        return self._assignee


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _describe_event(event: ProcessEvent) -> str:
    return ", ".join(f"{name}={value}" for name, value in sorted(event.data.items()))


def _problems_with(ticket: TicketInput) -> list[str]:
    problems = [
        f"{name} is required"
        for name in ("ticket_id", "customer_id", "priority")
        if not str(getattr(ticket, name)).strip()
    ]
    terms = ticket.terms
    if ticket.priority not in terms.targets:
        problems.append(f"unknown priority {ticket.priority!r}; known: {list(terms.targets)}")
    if not 0 < terms.warning_at < 1 < terms.manager_at:
        problems.append("terms must satisfy 0 < warning_at < 1 < manager_at")
    if any(
        t.first_response_seconds <= 0 or t.resolution_seconds <= 0 for t in terms.targets.values()
    ):
        problems.append("targets must be positive")
    try:
        BusinessCalendar.from_spec(terms.calendar)
    except CalendarError as err:
        problems.append(f"calendar: {err}")
    return problems
