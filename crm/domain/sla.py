"""SLA clocks: business time owed to a ticket, counted while the clock runs.

Pure and deterministic like ``crm.domain.calendar``, so the ticket SLA workflow uses it
directly (passed through the sandbox). The terms are plain dataclasses that
travel in the workflow's input; ``crm.policy.sla`` builds them from the policy
file.

A clock counts business time of its calendar from when it starts until it
stops, leaving out every span in which it was paused. Its escalation levels are
fractions of its target: a warning at 75 %, the breach at 100 % and the
escalation to the manager at 150 % by default. A priority change swaps the
target and the calendar; the time already used stays used.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from crm.domain.calendar import BusinessCalendar, CalendarError, CalendarSpec

__all__ = [
    "BREACH",
    "CLOCKS",
    "CLOCK_LABELS",
    "FIRST_RESPONSE",
    "LEVELS",
    "MANAGER",
    "RESOLUTION",
    "WARNING",
    "ClockMet",
    "SlaClock",
    "SlaTargets",
    "SlaTerms",
]

FIRST_RESPONSE = "first_response"
RESOLUTION = "resolution"
CLOCKS: tuple[str, ...] = (FIRST_RESPONSE, RESOLUTION)
#: The clocks as emails, tasks and timer summaries name them.
CLOCK_LABELS = {
    FIRST_RESPONSE: "first response",
    "next_reply": "next reply",
    "periodic_update": "periodic update",
    RESOLUTION: "resolution",
}

#: The outcome that ends a ticket's clocks without fulfilling them.
CANCELLED = "cancelled"
WARNING = "warning"
BREACH = "breach"
MANAGER = "manager"
#: Escalation levels in the order a running clock reaches them.
LEVELS: tuple[str, ...] = (WARNING, BREACH, MANAGER)

_ZERO = timedelta(0)


@dataclass(frozen=True)
class ClockMet:
    """A clock's cycle that ended within its target (``ticket.met``): the clock, which
    cycle, the step that names it (``first_response_met``, ``next_reply_2_met``), when the
    cycle started and ended, and the business time it used of its target."""

    clock: str
    cycle: int
    step: str
    started_at: datetime
    ended_at: datetime
    used: timedelta
    target: timedelta


@dataclass
class SlaTargets:
    """First-response and resolution targets of one priority, in business seconds.

    ``around_the_clock`` counts every hour of the week instead of business hours.
    """

    first_response_seconds: float
    resolution_seconds: float
    around_the_clock: bool = False

    def target(self, clock: str) -> timedelta:
        """The target of ``clock`` (``first_response`` or ``resolution``)."""
        seconds = (
            self.first_response_seconds if clock == FIRST_RESPONSE else self.resolution_seconds
        )
        return timedelta(seconds=seconds)


@dataclass
class SlaTerms:
    """Everything a ticket's SLA depends on: targets per priority, thresholds, calendar.

    ``calendar`` holds the business hours in the customer's time zone; a priority
    whose targets run around the clock ignores its hours. ``warning_at`` and
    ``manager_at`` are fractions of a target. ``pool`` is the assignment pool;
    when ``reassign_pool`` is set, a breach moves the ticket to a member of it.
    """

    targets: dict[str, SlaTargets]
    calendar: CalendarSpec = field(default_factory=CalendarSpec)
    warning_at: float = 0.75
    manager_at: float = 1.5
    pool: str = "support"
    reassign_pool: str | None = None

    def fraction(self, level: str) -> float:
        """The fraction of a target at which ``level`` is reached."""
        return {WARNING: self.warning_at, BREACH: 1.0, MANAGER: self.manager_at}[level]

    def calendar_for(self, priority: str) -> BusinessCalendar:
        """The calendar the clocks of a ``priority`` ticket count in.

        Raises ``KeyError`` for an unknown priority and ``CalendarError`` for an
        invalid calendar spec.
        """
        if self.targets[priority].around_the_clock:
            return BusinessCalendar.around_the_clock()
        return BusinessCalendar.from_spec(self.calendar)

    def problems_for(self, priority: str) -> list[str]:
        """Why these terms cannot time a ``priority`` ticket; empty when they can."""
        problems = []
        if priority not in self.targets:
            problems.append(f"unknown priority {priority!r}; known: {list(self.targets)}")
        if not 0 < self.warning_at < 1 < self.manager_at:
            problems.append("terms must satisfy 0 < warning_at < 1 < manager_at")
        if any(
            t.first_response_seconds <= 0 or t.resolution_seconds <= 0
            for t in self.targets.values()
        ):
            problems.append("targets must be positive")
        try:
            BusinessCalendar.from_spec(self.calendar)
        except CalendarError as err:
            problems.append(f"calendar: {err}")
        return problems


class SlaClock:
    """One SLA clock of a ticket: its target, the business time used, and its state.

    ``used_at(now)`` is the business time counted up to ``now``: what was used
    before the clock last started, resumed or changed target, plus the business
    time of ``calendar`` since then if the clock is running. Paused and stopped
    clocks do not count. Every method takes timezone-aware datetimes and expects
    them in non-decreasing order, as a workflow's ``now()`` is.
    """

    def __init__(
        self, name: str, target: timedelta, calendar: BusinessCalendar, started: datetime
    ) -> None:
        self.name = name
        self.target = target
        self.calendar = calendar
        self.used = _ZERO
        self.running_since: datetime | None = started
        self.stopped_at: datetime | None = None
        self.reached: dict[str, datetime] = {}

    @property
    def running(self) -> bool:
        """Whether the clock counts business time now."""
        return self.running_since is not None

    @property
    def stopped(self) -> bool:
        """Whether the clock has stopped for good (response given, ticket resolved)."""
        return self.stopped_at is not None

    def used_at(self, now: datetime) -> timedelta:
        """The business time used up to ``now``."""
        if self.running_since is None:
            return self.used
        return self.used + self.calendar.between(self.running_since, now)

    def pause(self, now: datetime) -> None:
        """Stop counting until ``resume``; no effect unless running."""
        if self.running_since is not None:
            self.used = self.used_at(now)
            self.running_since = None

    def resume(self, now: datetime) -> None:
        """Count again from ``now``; no effect on a running or stopped clock."""
        if self.running_since is None and self.stopped_at is None:
            self.running_since = now

    def stop(self, now: datetime) -> None:
        """Stop the clock for good; no effect when already stopped."""
        if self.stopped_at is None:
            self.pause(now)
            self.stopped_at = now

    def retarget(self, target: timedelta, calendar: BusinessCalendar, now: datetime) -> None:
        """Measure from ``now`` on against ``target`` in ``calendar``, keeping the time used."""
        if self.running_since is not None:
            self.used = self.used_at(now)
            self.running_since = now
        self.target = target
        self.calendar = calendar

    def threshold(self, fraction: float) -> timedelta:
        """The business time at which ``fraction`` of the target is used."""
        return self.target * fraction

    def due(self, fraction: float) -> datetime | None:
        """When ``fraction`` of the target will be used, if the clock keeps running.

        None for a paused or stopped clock. For a fraction already used, the
        instant the clock last (re)started.
        """
        return self.due_after(self.threshold(fraction))

    def due_after(self, used: timedelta) -> datetime | None:
        """When the clock will have used ``used`` of business time, if it keeps running.

        None for a paused or stopped clock; for time already used, the instant
        the clock last (re)started.
        """
        if self.running_since is None:
            return None
        left = max(used - self.used, _ZERO)
        return self.calendar.add(self.running_since, left)

    def reached_at(self, fraction: float, now: datetime) -> bool:
        """Whether ``fraction`` of the target is used at ``now``."""
        return self.used_at(now) >= self.threshold(fraction)

    def met(self, now: datetime) -> bool:
        """Whether the clock has stayed within its target up to ``now`` (or its stop)."""
        return self.used_at(now) <= self.target and BREACH not in self.reached

    def status(self, now: datetime) -> str:
        """``met`` while the clock is within its target up to ``now``, else ``breached``."""
        return "met" if self.met(now) else "breached"

    @property
    def levels_reached(self) -> list[str]:
        """The levels the clock has reached, lowest first."""
        return [level for level in LEVELS if level in self.reached]


def format_business_time(duration: timedelta) -> str:
    """``duration`` as people read it: ``7h 30m``, ``45m``, ``12s``; ``-1h`` when overdue."""
    seconds = round(duration.total_seconds())
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    if seconds or not (hours or minutes):
        parts.append(f"{seconds}s")
    return sign + " ".join(part for part in parts if part)


def format_local_time(instant: datetime, timezone: str) -> str:
    """``instant`` as a wall-clock time in ``timezone``: ``Mon 2026-03-30 16:30 CEST``.

    Lives here rather than in workflow code because zoneinfo objects must be
    created outside the workflow sandbox.
    """
    return instant.astimezone(ZoneInfo(timezone)).strftime("%a %Y-%m-%d %H:%M %Z")
