"""A ticket's SLA clocks: what its events do to them and what they have reached.

Pure and deterministic like ``crm.domain.sla``, whose ``SlaClock`` and
``SlaTerms`` it builds on, so the ticket SLA workflow keeps its clocks in a
``TicketClocks`` (passed through the sandbox): it applies the ticket's events
to it, sleeps until the deadline it names and acts on the levels it reports.
Every method takes the time as an argument; none reads a clock.
"""

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from crm.domain.sla import (
    BREACH,
    CANCELLED,
    CLOCK_LABELS,
    CLOCKS,
    FIRST_RESPONSE,
    LEVELS,
    MANAGER,
    WARNING,
    ClockMet,
    SlaClock,
    SlaTerms,
    format_business_time,
    format_local_time,
)
from crm.domain.sla_policies import (
    BREACHED,
    NOTIFY_ASSIGNEE,
    NOTIFY_ROLE,
    SKIPPED,
    LevelAction,
)

__all__ = ["OPEN", "PENDING_CUSTOMER", "LevelsReached", "TicketClocks"]

#: A ticket's statuses: waiting for the customer pauses both clocks, open runs them.
OPEN = "open"
PENDING_CUSTOMER = "pending_customer"

_ZERO = timedelta(0)


@dataclass(frozen=True)
class LevelsReached:
    """The levels one look at a clock found reached, to act on lowest first.
    ``warning_overtaken`` says the warning came in the same instant as the
    breach (a raised priority, a ticket opened long ago): it counts as reached,
    but only the breach is acted on.
    """

    levels: list[str]
    warning_overtaken: bool = False


class TicketClocks:
    """A ticket's first-response and resolution clocks under its SLA terms, with the
    ticket's priority, its status (``open``, or ``pending_customer``, which pauses
    both clocks), the levels each clock reached, the escalations made and, once the
    ticket ends, its outcome. ``created_at`` is when the ticket was opened; one in
    the future, or none, counts from ``now``. Every method takes timezone-aware
    datetimes in non-decreasing order, as a workflow's ``now()`` is. Terms that
    cannot time the priority (``SlaTerms.problems_for``) give a ticket without
    clocks: nothing runs and nothing falls due.
    """

    def __init__(
        self, terms: SlaTerms, priority: str, *, created_at: datetime | None, now: datetime
    ) -> None:
        self.terms = terms
        self.priority = priority
        self.status = OPEN
        self.outcome: str | None = None
        self.escalations: list[dict[str, Any]] = []
        if created_at is not None and created_at.tzinfo is None:
            created_at = created_at.replace(tzinfo=UTC)  # a naive time from a helpdesk is UTC
        self.opened = min(created_at or now, now)
        self.clocks: dict[str, SlaClock] = {}
        if not terms.problems_for(priority):
            calendar = terms.calendar_for(priority)
            self.clocks = {
                name: SlaClock(name, terms.targets[priority].target(name), calendar, self.opened)
                for name in CLOCKS
            }
        self._breach_due: dict[str, datetime] = {}
        self._met: list[ClockMet] = []

    def reply(self, now: datetime) -> None:
        """An agent replied: the first-response clock stops, met if within its target."""
        clock = self.clocks.get(FIRST_RESPONSE)
        if clock is not None:
            self._stop(clock, now, fulfilled=True)

    def set_status(self, status: str, now: datetime) -> None:
        """``pending_customer`` pauses both clocks, ``open`` resumes them; ValueError for others."""
        if status not in (OPEN, PENDING_CUSTOMER):
            raise ValueError(f"status must be {PENDING_CUSTOMER!r} or {OPEN!r}, got {status!r}")
        for clock in self.clocks.values():
            if status == PENDING_CUSTOMER:
                clock.pause(now)
            else:
                clock.resume(now)
        self.status = status

    def change_priority(self, priority: str, now: datetime) -> None:
        """Time the running clocks against ``priority``'s targets from ``now``, keeping the
        time used; raises ValueError for a priority the terms do not know."""
        if priority not in self.terms.targets:
            raise ValueError(f"unknown priority {priority!r}; known: {list(self.terms.targets)}")
        self.priority = priority
        calendar = self.terms.calendar_for(priority)
        for clock in self.clocks.values():
            if not clock.stopped:
                clock.retarget(self.terms.targets[priority].target(clock.name), calendar, now)

    def end(self, outcome: str, now: datetime) -> None:
        """Stop both clocks for good: the ticket ended with ``outcome`` (``resolved``,
        ``closed``, ``cancelled``). A later end, a run cancelled after the resolution,
        replaces the outcome."""
        for clock in self.clocks.values():
            self._stop(clock, now, fulfilled=outcome != CANCELLED)
        self.outcome = outcome

    def met(self) -> list[ClockMet]:
        """The clocks that stopped within their target, in the order they stopped."""
        return list(self._met)

    def _stop(self, clock: SlaClock, now: datetime, *, fulfilled: bool) -> None:
        """Stop ``clock``; one a reply or the resolution ``fulfilled`` within its target
        is met."""
        if clock.stopped:
            return
        clock.stop(now)
        if fulfilled and clock.met(now):
            step = f"{clock.name}_met"
            self._met.append(
                ClockMet(clock.name, 1, step, self.opened, now, clock.used, clock.target)
            )

    def reach_levels(self, clock: str, now: datetime) -> LevelsReached:
        """Mark the levels ``clock`` has reached by ``now`` since the last look, and return
        them; a stopped clock reaches none. Raises KeyError for a clock the ticket does
        not have."""
        timed = self.clocks[clock]
        if timed.stopped:
            return LevelsReached([])
        reached = [
            level
            for level in LEVELS
            if level not in timed.reached and timed.reached_at(self.terms.fraction(level), now)
        ]
        for level in reached:
            timed.reached[level] = now
        if BREACH in reached and WARNING in reached:
            reached.remove(WARNING)
            return LevelsReached(reached, warning_overtaken=True)
        return LevelsReached(reached)

    def clock_names(self) -> list[str]:
        return list(self.clocks)

    def due_actions(self, clock: str, now: datetime) -> list[LevelAction]:
        """The levels ``clock`` reached by ``now`` (``reach_levels``) as the actions these
        terms take: warn the assignee; at the breach tell the team lead with a task (moving
        the ticket to ``reassign_pool``) and offer the breach; tell the manager with a task.
        Raises KeyError for a clock the ticket does not have."""
        reached = self.reach_levels(clock, now)
        timed = self.clocks[clock]
        actions = []
        if reached.warning_overtaken:
            actions.append(LevelAction(clock, WARNING, f"{clock}_warning", SKIPPED, now))
        for level in reached.levels:
            step = f"{clock}_{level}"
            if level == WARNING:
                due = timed.due(1.0) or now
                warn = LevelAction(clock, level, step, NOTIFY_ASSIGNEE, due, before_breach=True)
                actions.append(replace(warn, emit="ticket.warning"))
                continue
            due = self.breach_due(clock, now)
            if level == BREACH:
                group = self.terms.reassign_pool
                lead = LevelAction(clock, level, step, NOTIFY_ROLE, due, "team_lead", True, group)
                actions += [lead, LevelAction(clock, level, step, BREACHED, due)]
            elif level == MANAGER:
                percent = round(self.terms.manager_at * 100)
                manager = LevelAction(clock, level, step, NOTIFY_ROLE, due, "manager", True)
                actions.append(replace(manager, percent=percent, emit="ticket.escalated"))
        return actions

    def record_action(self, action: LevelAction, to: str) -> None:
        """``record_escalation`` of the level ``action`` acted on."""
        self.record_escalation(action.clock, action.level, to)

    def breached_clocks(self) -> list[str]:
        return [clock.name for clock in self.clocks.values() if BREACH in clock.reached]

    @property
    def timezone(self) -> str:
        return self.terms.calendar.timezone

    def record_escalation(self, clock: str, level: str, to: str) -> None:
        """Note that ``to`` was told ``clock`` reached ``level``, as of when it did; raises
        KeyError for a clock the ticket does not have or a level it has not reached."""
        timed = self.clocks[clock]
        reached = timed.reached[level]
        self.escalations.append(
            {
                "clock": clock,
                "level": level,
                "to": to,
                "at": reached.isoformat(),
                "used_seconds": timed.used_at(reached).total_seconds(),
            }
        )

    def next_deadline(self) -> tuple[datetime, str] | None:
        """The next level any running clock reaches, and its label; None while none runs.
        Notes when each running clock is due to breach, for ``breach_due``."""
        deadlines: list[tuple[datetime, str]] = []
        for clock in self.clocks.values():
            breach = clock.due(1.0)
            if breach is not None and BREACH not in clock.reached:
                self._breach_due[clock.name] = breach
            for level in LEVELS:
                due = clock.due(self.terms.fraction(level))
                if due is not None and level not in clock.reached:
                    deadlines.append((due, f"{CLOCK_LABELS[clock.name]} {level}"))
                    break
        return min(deadlines) if deadlines else None

    def breach_due(self, clock: str, now: datetime) -> datetime:
        """When ``clock`` was due to breach, as ``next_deadline`` last planned; ``now`` for a
        breach found before any plan (a ticket opened long before its run)."""
        return self._breach_due.get(clock, now)

    def due_times(self) -> dict[str, datetime]:
        """When each running clock reaches each level it has not: ``{"resolution_breach": at}``."""
        due: dict[str, datetime] = {}
        for clock in self.clocks.values():
            for level in LEVELS:
                at = clock.due(self.terms.fraction(level))
                if at is not None and level not in clock.reached:
                    due[f"{clock.name}_{level}"] = at
        return due

    def state(self, now: datetime) -> str:
        """The SLA state: ``met`` or ``breached`` once ended, else ``breached``, ``paused``,
        ``warning`` or ``on_track``. A breach sticks: a ticket that breached a clock stays
        ``breached`` even while paused."""
        if self.outcome is not None:
            return "met" if all(clock.met(now) for clock in self.clocks.values()) else "breached"
        if any(BREACH in clock.reached for clock in self.clocks.values()):
            return "breached"
        if self.status == PENDING_CUSTOMER:
            return "paused"
        warned = any(
            WARNING in clock.reached
            and not clock.stopped
            and clock.reached_at(self.terms.warning_at, now)
            for clock in self.clocks.values()
        )
        return "warning" if warned else "on_track"

    def stage(self) -> str:
        """The outcome once ended, else ``pending_customer``, ``awaiting_first_response`` or
        ``awaiting_resolution``."""
        if self.outcome is not None:
            return self.outcome
        if self.status == PENDING_CUSTOMER:
            return "pending_customer"
        if self._awaiting_first_response():
            return "awaiting_first_response"
        return "awaiting_resolution"

    def waiting_for(self) -> list[str]:
        """The events that would change the clocks now; none once ended."""
        if self.outcome is not None:
            return []
        if self.status == PENDING_CUSTOMER:
            return ["status_changed:open", "resolved", "closed"]
        first = ["agent_replied"] if self._awaiting_first_response() else []
        return [*first, "resolved", "closed"]

    def email_facts(self, clock: str, due: datetime, now: datetime) -> dict[str, object]:
        """What an escalation email tells of ``clock`` at ``now``: the priority, target, time
        used and ``due`` in the customer's time; raises KeyError for a clock the ticket does
        not have."""
        timed = self.clocks[clock]
        used = timed.used_at(now)
        return {
            "priority": self.priority,
            "clock_label": CLOCK_LABELS[clock],
            "target": format_business_time(timed.target),
            "used": format_business_time(used),
            "percent_used": round(100 * used / timed.target),
            "due_local": self.local_time(due),
            "timezone": self.terms.calendar.timezone,
        }

    def local_time(self, instant: datetime) -> str:
        """``instant`` as a wall-clock time in the customer's time zone."""
        return format_local_time(instant, self.terms.calendar.timezone)

    def summary(self, now: datetime) -> str:
        """One line for people: priority, SLA state and the breach due times."""
        due = " ".join(
            f"{name.replace('_', ' ')} due {self.local_time(at)}."
            for name, at in self.due_times().items()
            if name.endswith("_breach")
        )
        return f"{self.priority} ticket, SLA {self.state(now)}. " + (
            due or "Clocks paused or stopped."
        )

    def details(self, now: datetime) -> dict[str, Any]:
        """What a ticket's ``state`` shows of its SLA as of ``now``: priority, time zone,
        status (the outcome once ended), SLA state, when opened, the clocks and escalations."""
        return {
            "priority": self.priority,
            "timezone": self.terms.calendar.timezone,
            "status": self.outcome or self.status,
            "sla_state": self.state(now),
            "opened_at": self.opened.isoformat(),
            "as_of": now.isoformat(),
            "clocks": self.describe(now),
            "escalations": list(self.escalations),
        }

    def outcomes(self, now: datetime) -> list[dict[str, Any]]:
        """How each clock stands at ``now`` for the outcome record: status, target and
        business time used in seconds, and the levels it reached."""
        return [
            {
                "clock": clock.name,
                "status": clock.status(now),
                "target_seconds": clock.target.total_seconds(),
                "used_seconds": clock.used_at(now).total_seconds(),
                "levels_reached": clock.levels_reached,
            }
            for clock in self.clocks.values()
        ]

    def describe(self, now: datetime) -> dict[str, dict[str, Any]]:
        """Each clock's state, target, business time used and left, due time and levels reached."""
        return {name: _describe(clock, now) for name, clock in self.clocks.items()}

    def _awaiting_first_response(self) -> bool:
        clock = self.clocks.get(FIRST_RESPONSE)
        return clock is not None and not clock.stopped


def _describe(clock: SlaClock, now: datetime) -> dict[str, Any]:
    used = clock.used_at(now)
    remaining = clock.target - used
    due = clock.due(1.0)
    return {
        "state": "stopped" if clock.stopped else "running" if clock.running else "paused",
        "status": clock.status(now),
        "target": format_business_time(clock.target),
        "target_seconds": clock.target.total_seconds(),
        "used": format_business_time(used),
        "used_seconds": used.total_seconds(),
        "remaining": format_business_time(max(remaining, _ZERO)),
        "remaining_seconds": max(remaining, _ZERO).total_seconds(),
        "overdue_seconds": max(-remaining, _ZERO).total_seconds(),
        "due": due.isoformat() if due and BREACH not in clock.reached else None,
        "levels_reached": {level: at.isoformat() for level, at in clock.reached.items()},
    }
