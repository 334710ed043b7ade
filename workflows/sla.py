"""Support-ticket SLA (``sla-{ticket_id}``): assign the ticket, run the clocks its SLA policy
names (first response, next reply, periodic update, resolution; ``PolicyClocks``) in the
business time of its group or customer, act on each level of each clock's escalation ladder
(notify the assignee, notify and task a role, reassign), and record the outcome per clock.
Runs begun before SLA policies (``SLA_POLICIES``) keep the two clocks and the 75 / 100 / 150 %
ladder of their terms (``TicketClocks``). Acting on a level is ``sla_levels``; its texts are
``sla_messages``."""

import asyncio
import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import VersioningBehavior
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

from workflows import sla_messages as messages
from workflows.retries import RECORD_RETRY
from workflows.sla_levels import SlaLevelSteps

with workflow.unsafe.imports_passed_through():
    from crm.domain.policy_clocks import PolicyClocks
    from crm.domain.ticket_clocks import TicketClocks
    from workflows.common import SLA_STATE, TICKET_PRIORITY, ProcessEvent, ProcessState
    from workflows.contracts import (
        RECORD_SLA_OUTCOME,
        Assignment,
        SlaClockOutcome,
        SlaOutcomeRecord,
        StaffContact,
    )
    from workflows.sla_events import apply_event, event_instant
    from workflows.sla_types import TicketInput, TicketSlaResult

PROCESS_NAME = "sla"

#: Tickets started with SLA policies run them; runs begun before keep their terms' two clocks.
SLA_POLICIES = "sla-policies"

#: Tickets started with it take their steps as local activities (``ProcessSteps._execute``):
#: a level's email, notice, task and milestone in the workflow task that reached it.
SLA_LOCAL_STEPS = "sla-local-steps"

#: Tickets started with it apply an event at its ``occurred_at`` (``event_instant``); runs begun
#: before apply each when they get to its signal.
SLA_EVENT_TIMES = "sla-event-times"

#: Tickets started with it start a level's steps together (``_tell_at_once``); runs begun
#: before take them one after another.
SLA_LEVEL_AT_ONCE = "sla-level-at-once"

#: Tickets started with it keep the clocks' floor (``_clocks_at``) at the last event or level
#: acted on, so an event delivered late counts from its ``occurred_at`` however often the
#: run looked at the clocks meanwhile; runs begun before raise the floor at every look.
SLA_FLOOR_AT_LEVELS = "sla-floor-at-levels"

#: Tickets started with it write a level's notice or task and milestone in one local
#: activity and one transaction (``_record_level``), beside its email; runs begun before
#: take one local activity for each.
SLA_LEVEL_RECORDS = "sla-level-records"


#: Tickets started with it wake ``REARM_MARGIN`` before their first deadline and set its
#: timer again: a timer counts from when the server records it, at the end of the workflow
#: task that set it, not from ``workflow.now()``, and a run's first task (its opening, with
#: the assignment) can end seconds after its ``now`` on a busy worker, so a timer set there
#: fires that much late. The timer set again comes from a task that does nothing else.
SLA_FIRST_WAIT_REARMED = "sla-first-wait-rearmed"
REARM_MARGIN = timedelta(seconds=10)

#: Tickets started with it emit ``ticket.met`` for each clock's cycle that a reply or the
#: resolution ended within its target; runs begun before emit none.
SLA_MET_EVENTS = "sla-met-events"


@workflow.defn(versioning_behavior=VersioningBehavior.PINNED)
class TicketSlaWorkflow(SlaLevelSteps):
    """One ticket's SLA; see the module docstring for the process."""

    @workflow.init
    def __init__(self, ticket: TicketInput) -> None:
        super().__init__(process=PROCESS_NAME, customer_id=ticket.customer_id)
        self._ticket = ticket
        self._problems = ticket.problems()
        self._sla: TicketClocks | PolicyClocks = TicketClocks(
            ticket.terms, ticket.priority, created_at=ticket.created_at, now=workflow.now()
        )
        if ticket.policies and not self._problems and workflow.patched(SLA_POLICIES):
            self._sla = PolicyClocks(
                ticket.policies, ticket.fields(), created_at=ticket.created_at, now=workflow.now()
            )
        self._local_steps = workflow.patched(SLA_LOCAL_STEPS)
        self._event_times = workflow.patched(SLA_EVENT_TIMES)
        self._level_at_once = workflow.patched(SLA_LEVEL_AT_ONCE)
        self._level_records = workflow.patched(SLA_LEVEL_RECORDS)
        self._floor_at_levels = workflow.patched(SLA_FLOOR_AT_LEVELS)
        self._rearm_first_wait = workflow.patched(SLA_FIRST_WAIT_REARMED)
        self._met_events = workflow.patched(SLA_MET_EVENTS)
        self._met_emitted = 0
        #: The floor of an event's instant: the latest event's, or the latest look that
        #: reached a level (any look, for runs begun before ``SLA_FLOOR_AT_LEVELS``).
        self._clocks_at = workflow.now()
        self._changed = False
        self._assignee: Assignment | None = None
        self._lead: StaffContact | None = None
        self._moved_to: set[str] = set()
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
        """Apply a ticket event (``EVENT_DATA``) to the clocks at the instant it happened
        (``event_instant``); other events, data that does not fit and events after the end are
        noted and ignored."""
        now = workflow.now()
        at = event_instant(event.occurred_at, self._clocks_at, now) if self._event_times else now
        ignored = (
            "the ticket input is invalid" if self._problems else apply_event(self._sla, event, at)
        )
        self._clocks_at = at
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
        rearm = self._rearm_first_wait
        while self._sla.outcome is None:
            self._changed = False
            self._show_live_state()
            await self._escalate_levels_reached()
            await self._emit_clocks_met()
            await self._record_new_events()
            self._show_live_state()
            deadline = self._sla.next_deadline()
            timeout = None if deadline is None else deadline[0] - workflow.now()
            if timeout is not None and timeout <= timedelta(0):
                continue
            summary = deadline[1] if deadline else None
            if rearm and timeout is not None and timeout > 2 * REARM_MARGIN:
                timeout -= REARM_MARGIN  # then set again, from a task that does nothing else
                summary = f"{summary}, set again {REARM_MARGIN.seconds} s before"
            rearm = False
            with contextlib.suppress(TimeoutError):  # a deadline came: look at the clocks
                await workflow.wait_condition(
                    lambda: self._changed, timeout=timeout, timeout_summary=summary
                )
        await self._emit_clocks_met()
        await self._record_new_events()

    async def _escalate_levels_reached(self) -> None:
        """Act on every level a clock has reached since the last look, lowest first; what
        is acted on stays acted on (the floor rises to now)."""
        now = workflow.now()
        if not self._floor_at_levels:
            self._clocks_at = now
        for clock in self._sla.clock_names():
            actions = self._sla.due_actions(clock, now)
            if actions:
                self._clocks_at = now
            for action in actions:
                await self._take(action)

    async def _emit_clocks_met(self) -> None:
        """Emit ``ticket.met`` for each cycle met since the last look, in the order they
        ended (runs begun before ``SLA_MET_EVENTS`` emit none)."""
        if not self._met_events:
            return
        met = self._sla.met()
        assignee_id = self._assignee.assignee_id if self._assignee else ""
        while self._met_emitted < len(met):
            cycle = met[self._met_emitted]
            self._met_emitted += 1
            data = messages.met_milestone(cycle, self._sla.priority, assignee_id)
            await self._emit("ticket.met", data, step=cycle.step)

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

    # Events and the visible state.

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

    async def _record_new_events(self) -> None:
        while self._events_recorded < len(self._events):
            event = self._events[self._events_recorded]
            self._events_recorded += 1
            detail: dict[str, object] = {"data": dict(event.data)}
            if event.occurred_at is not None:
                detail["occurred_at"] = event.occurred_at.isoformat()
            await self._audit_step(f"event_{self._events_recorded}:{event.type}", detail)

    async def _record_outcome(self, outcome: str) -> None:
        now = workflow.now()
        await self._execute(
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
