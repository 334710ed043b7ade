"""A ticket's SLA under a policy book: its clocks in cycles, their ladders and their breaches.

Pure and deterministic like ``crm.domain.ticket_clocks``, whose interface it
shares, so the ticket SLA workflow runs either: ``PolicyClocks`` for tickets
started with a ``SlaPolicyBook``, ``TicketClocks`` for runs begun before.
Every method takes the time as an argument, in non-decreasing order; none
reads a clock.

A clock runs in cycles: first response and resolution once, next reply once
per customer reply the agents have not answered, periodic update from every
public agent reply to the next. Each cycle counts business time of the
ticket's calendar (its group's), pauses in the statuses its policy names,
reaches its ladder's levels and breaches at most once; the clock's outcome
adds its cycles up. A change of the ticket's fields re-matches the policy:
clocks both policies run keep the time used and take the new targets and
calendar; a clock only the new policy runs starts then, one only the old ran
stops.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from crm.domain.cycle_clock import CycleClock
from crm.domain.sla import (
    CANCELLED,
    CLOCK_LABELS,
    FIRST_RESPONSE,
    RESOLUTION,
    ClockMet,
    format_business_time,
    format_local_time,
)
from crm.domain.sla_policies import (
    CLOCK_KINDS,
    NEXT_REPLY,
    PERIODIC_UPDATE,
    LevelAction,
    SlaPolicyBook,
    TicketFields,
    TicketSlaPolicy,
)

__all__ = ["CycleClock", "PolicyClocks"]

_ZERO = timedelta(0)
_STATUS_ALIASES = {"pending_customer": "pending"}


class PolicyClocks:
    """A ticket's SLA under ``book``: the policy its ``fields`` match, that policy's clocks,
    the ticket's status, the escalations made and, once it ends, the outcome. ``created_at``
    is when the ticket was opened; one in the future, or none, counts from ``now``."""

    def __init__(
        self,
        book: SlaPolicyBook,
        fields: TicketFields,
        *,
        created_at: datetime | None,
        now: datetime,
    ) -> None:
        self.book = book
        self.fields = fields
        self.status = "open"
        self.outcome: str | None = None
        self.escalations: list[dict[str, Any]] = []
        self.replied = False
        if created_at is not None and created_at.tzinfo is None:
            created_at = created_at.replace(tzinfo=UTC)
        self.opened = min(created_at or now, now)
        self.policy = book.match(fields)
        self.calendar = book.calendar_for(fields, self.policy)
        self.clocks: dict[str, CycleClock] = {}
        self._build(self.policy, self.opened)

    @property
    def priority(self) -> str:
        return self.fields.priority

    @property
    def timezone(self) -> str:
        """The time zone people read due times in: the group's, else the customer's."""
        return self.book.calendars.get(self.fields.group or "", self.book.calendar).timezone

    # Events.

    def customer_replied(self, now: datetime) -> None:
        """A customer reply after the first agent reply starts a next-reply cycle, unless
        one already waits (the clock measures from the oldest unanswered reply)."""
        clock = self.clocks.get(NEXT_REPLY)
        if clock is not None and self.replied and not clock.active:
            clock.start(now, paused=self._pauses(clock))

    def agent_replied(self, public: bool, now: datetime) -> None:
        """A public reply stops the first-response and next-reply cycles and restarts the
        periodic update; an internal note changes no clock."""
        if not public:
            return
        self.replied = True
        for name in (FIRST_RESPONSE, NEXT_REPLY):
            if name in self.clocks:
                self.clocks[name].end(now)
        update = self.clocks.get(PERIODIC_UPDATE)
        if update is not None:
            update.start(now, paused=self._pauses(update))

    def set_status(self, status: str, now: datetime) -> None:
        """Pause or resume each clock by its policy's pause rules; ``solved`` ends the SLA.
        Raises ValueError for an unknown status."""
        status = _STATUS_ALIASES.get(status, status)
        if status not in ("open", "pending", "on_hold", "solved"):
            raise ValueError(f"unknown status {status!r}")
        if status == "solved":
            self.end("solved", now)
            return
        self.status = status
        for clock in self.clocks.values():
            if self._pauses(clock):
                clock.pause(now)
            else:
                clock.resume(now)

    def change_fields(self, changes: dict[str, Any], now: datetime) -> None:
        """Apply changed ticket fields, re-match the policy and retime the clocks from the
        business time already used. Raises ValueError for a priority no clock times."""
        fields = TicketFields(**{**vars(self.fields), **changes})
        policy = self.book.match(fields)
        known = {p for c in policy.clocks for p in c.targets}
        if fields.priority not in known:
            raise ValueError(f"unknown priority {fields.priority!r}; known: {sorted(known)}")
        self.fields, self.policy = fields, policy
        self.calendar = self.book.calendar_for(fields, policy)
        for name, clock in list(self.clocks.items()):
            rule = policy.clock(name)
            target = rule.target(fields.priority) if rule else None
            if rule is None or target is None:
                clock.end(now, fulfilled=False)
                clock.dropped = True
                continue
            clock.policy = rule
            clock.dropped = False
            clock.retarget(target, self.calendar, now)
        self._build(policy, now)

    def end(self, outcome: str, now: datetime) -> None:
        """Stop every clock for good: the ticket ended with ``outcome``; a resolution
        fulfils the cycles in progress, a cancellation does not."""
        for clock in self.clocks.values():
            clock.end(now, fulfilled=outcome != CANCELLED)
        self.outcome = outcome

    # What the clocks reached, and what to do.

    def clock_names(self) -> list[str]:
        return list(self.clocks)

    def due_actions(self, clock: str, now: datetime) -> list[LevelAction]:
        """What ``clock`` reached by ``now`` since the last look, to act on in order."""
        return self.clocks[clock].reach(now)

    def record_action(self, action: LevelAction, to: str) -> None:
        """Note that ``to`` was told (or given the ticket) for ``action``."""
        self.escalations.append(
            {
                "clock": action.clock,
                "level": action.level,
                "to": to,
                "at": (action.at or action.due).isoformat(),
                "used_seconds": action.used_seconds,
                "cycle": action.cycle,
            }
        )

    def next_deadline(self) -> tuple[datetime, str] | None:
        """The next level or breach any running clock reaches, and its label."""
        deadlines = [due for clock in self.clocks.values() if (due := clock.next_due())]
        return min(deadlines) if deadlines else None

    def breached_clocks(self) -> list[str]:
        return [name for name, clock in self.clocks.items() if clock.breaches]

    def met(self) -> list[ClockMet]:
        """The cycles that ended within their target, clock by clock in the order they ended."""
        return sorted(
            (met for clock in self.clocks.values() for met in clock.met),
            key=lambda met: (met.ended_at, CLOCK_KINDS.index(met.clock)),
        )

    # What people see.

    def due_times(self) -> dict[str, datetime]:
        """When each running clock breaches: ``{"next_reply_breach": at}``, and its next level."""
        due: dict[str, datetime] = {}
        for clock in self.clocks.values():
            breach = clock.breach_due()
            if clock.running and clock.breached_at is None and breach is not None:
                due[f"{clock.name}_breach"] = breach
            upcoming = clock.next_due()
            if upcoming is not None and not upcoming[1].endswith(" breach"):
                due[f"{clock.name}_{upcoming[1].rsplit(' ', 1)[1]}"] = upcoming[0]
        return due

    def state(self, now: datetime) -> str:
        """``met``/``breached`` once ended, else ``breached`` (sticky), ``paused``, ``warning``
        or ``on_track``."""
        if self.outcome is not None:
            return "breached" if self.breached_clocks() or self._over(now) else "met"
        if self.breached_clocks():
            return "breached"
        if self.status != "open" and not any(clock.running for clock in self.clocks.values()):
            return "paused"
        warned = any(
            clock.running and clock.current is not None and clock.current.reached
            for clock in self.clocks.values()
        )
        return "warning" if warned else "on_track"

    def stage(self) -> str:
        """The outcome, the pausing status, or the reply or resolution it awaits."""
        if self.outcome is not None:
            return self.outcome
        if self.status != "open":
            return self.status
        for name, stage in (
            (FIRST_RESPONSE, "awaiting_first_response"),
            (NEXT_REPLY, "awaiting_reply"),
        ):
            if name in self.clocks and self.clocks[name].active:
                return stage
        return "awaiting_resolution"

    def waiting_for(self) -> list[str]:
        """The events that would change the clocks now; none once ended."""
        if self.outcome is not None:
            return []
        waits = ["agent_replied", "customer_replied", "fields_changed"]
        if self.status != "open":
            waits.append("status_changed:open")
        return [*waits, "resolved", "closed"]

    def email_facts(self, clock: str, due: datetime, now: datetime) -> dict[str, object]:
        """What an escalation email tells of ``clock``'s cycle at ``now``."""
        timed = self.clocks[clock]
        used = timed.cycle_used(now)
        return {
            "priority": self.priority,
            "clock_label": CLOCK_LABELS[clock],
            "target": format_business_time(timed.target),
            "used": format_business_time(used),
            "percent_used": round(100 * used / timed.target),
            "due_local": self.local_time(due),
            "timezone": self.timezone,
        }

    def local_time(self, instant: datetime) -> str:
        return format_local_time(instant, self.timezone)

    def summary(self, now: datetime) -> str:
        """One line for people: priority, policy, SLA state and the breach due times."""
        due = " ".join(
            f"{name.replace('_', ' ')} due {self.local_time(at)}."
            for name, at in self.due_times().items()
            if name.endswith("_breach")
        )
        return f"{self.priority} ticket ({self.policy.name} SLA), {self.state(now)}. " + (
            due or "Clocks paused or stopped."
        )

    def details(self, now: datetime) -> dict[str, Any]:
        """What a ticket's ``state`` shows of its SLA as of ``now``."""
        return {
            "priority": self.priority,
            "policy": self.policy.name,
            "group": self.fields.group,
            "timezone": self.timezone,
            "status": self.outcome or self.status,
            "sla_state": self.state(now),
            "opened_at": self.opened.isoformat(),
            "as_of": now.isoformat(),
            "clocks": {name: _describe(clock, now) for name, clock in self.clocks.items()},
            "escalations": list(self.escalations),
        }

    def outcomes(self, now: datetime) -> list[dict[str, Any]]:
        """Each clock for the outcome record: status, target and business time used in
        seconds (over all cycles), levels reached, breaches and cycles."""
        return [
            {
                "clock": clock.name,
                "status": clock.status(now),
                "target_seconds": clock.target.total_seconds(),
                "used_seconds": clock.used_at(now).total_seconds(),
                "levels_reached": list(clock.levels_reached),
                "breaches": clock.breaches,
                "cycles": clock.cycles,
            }
            for clock in self.clocks.values()
        ]

    def _build(self, policy: TicketSlaPolicy, now: datetime) -> None:
        """Add the clocks ``policy`` runs for the ticket's priority that it has not yet; the
        ones that run from the start (first response, resolution) start at ``now``."""
        for rule in sorted(policy.clocks, key=lambda rule: CLOCK_KINDS.index(rule.name)):
            target = rule.target(self.fields.priority)
            if rule.name in self.clocks or target is None:
                continue
            clock = CycleClock(rule, target, self.calendar)
            self.clocks[rule.name] = clock
            starts = {RESOLUTION: True, FIRST_RESPONSE: not self.replied}
            starts[PERIODIC_UPDATE] = self.replied
            if starts.get(rule.name, False):
                clock.start(now, paused=self._pauses(clock))

    def _pauses(self, clock: CycleClock) -> bool:
        return self.status in clock.policy.pause_on

    def _over(self, now: datetime) -> bool:
        return any(clock.status(now) == "breached" for clock in self.clocks.values())


def _describe(clock: CycleClock, now: datetime) -> dict[str, Any]:
    used = clock.cycle_used(now)
    remaining = clock.target - used
    current = clock.current
    state = "stopped" if not clock.active else "running" if clock.running else "paused"
    breach = clock.breach_due()
    return {
        "state": "dropped" if clock.dropped else state,
        "status": clock.status(now),
        "cycle": clock.cycles,
        "breaches": clock.breaches,
        "target": format_business_time(clock.target),
        "target_seconds": clock.target.total_seconds(),
        "used": format_business_time(used),
        "used_seconds": used.total_seconds(),
        "total_used_seconds": clock.used_at(now).total_seconds(),
        "remaining": format_business_time(max(remaining, _ZERO)),
        "remaining_seconds": max(remaining, _ZERO).total_seconds(),
        "due": breach.isoformat() if breach and clock.running and not clock.breached_at else None,
        "levels_reached": {
            level: at.isoformat() for level, at in (current.reached if current else {}).items()
        },
    }
