"""SLA policies as data: which clocks a ticket runs, their targets, pauses and escalation ladders.

Plain dataclasses, so a ``SlaPolicyBook`` travels in the ticket SLA
workflow's input and replays unchanged; ``crm.policy.sla`` builds one from the
policy file. A book holds ordered policies, each matched by conditions on the
ticket (first match wins) with a default for the rest, and the business
calendars of the support groups. ``crm.domain.policy_clocks`` runs them.

A policy names up to four clocks: ``first_response`` (stopped by the first
public agent reply), ``next_reply`` (started by a customer reply the agents
have not answered, stopped by the next public agent reply), ``periodic_update``
(restarted by every public agent reply) and ``resolution``. Each has a target
per priority (a priority without one does not run that clock), the statuses
that pause it and a ladder of levels, each at a percentage of the target or at
an offset in business time before (negative) or after the target, with its
action.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from crm.domain.calendar import BusinessCalendar, CalendarError, CalendarSpec
from crm.domain.sla import FIRST_RESPONSE, RESOLUTION, SlaTerms

__all__ = [
    "ACTIONS",
    "BREACHED",
    "CLOCK_KINDS",
    "NEXT_REPLY",
    "NOTIFY_ASSIGNEE",
    "NOTIFY_ROLE",
    "PAUSING_STATUSES",
    "PERIODIC_UPDATE",
    "REASSIGN",
    "ROLES",
    "SKIPPED",
    "STATUSES",
    "ClockPolicy",
    "EscalationLevel",
    "LevelAction",
    "SlaPolicyBook",
    "TicketConditions",
    "TicketFields",
    "TicketSlaPolicy",
    "terms_policy",
]

NEXT_REPLY = "next_reply"
PERIODIC_UPDATE = "periodic_update"
#: The clocks a policy may run, in the order they are looked at.
CLOCK_KINDS: tuple[str, ...] = (FIRST_RESPONSE, NEXT_REPLY, PERIODIC_UPDATE, RESOLUTION)

#: A ticket's statuses; ``solved`` ends its SLA. ``pending_customer`` is read as ``pending``.
STATUSES: tuple[str, ...] = ("open", "pending", "on_hold", "solved")
PAUSING_STATUSES: tuple[str, ...] = ("pending", "on_hold")

NOTIFY_ASSIGNEE = "notify_assignee"
NOTIFY_ROLE = "notify_role"
REASSIGN = "reassign"
ACTIONS: tuple[str, ...] = (NOTIFY_ASSIGNEE, NOTIFY_ROLE, REASSIGN)
#: What a clock's look reports besides its ladder's actions: a breach, a level passed over.
BREACHED = "breached"
SKIPPED = "skipped"
#: Whom ``notify_role`` tells: the assignee's team lead (their manager_id) or the lead's manager.
ROLES: tuple[str, ...] = ("team_lead", "manager")


@dataclass
class EscalationLevel:
    """One rung of a clock's ladder: reached at ``percent`` of the target, or at
    ``offset_seconds`` of business time after the target (negative: before it, a
    reminder), whichever is set. ``action`` is ``notify_assignee``, ``notify_role``
    (``role`` is told by email, with a task when ``task``) or ``reassign`` (to the
    pool ``group``); a notification with a ``group`` also moves the ticket there."""

    name: str
    action: str = NOTIFY_ASSIGNEE
    percent: float | None = None
    offset_seconds: float | None = None
    role: str | None = None
    task: bool = True
    group: str | None = None

    def threshold(self, target: timedelta) -> timedelta:
        """The business time used at which the level is reached, never below zero."""
        if self.percent is not None:
            return target * (self.percent / 100)
        return max(target + timedelta(seconds=self.offset_seconds or 0), timedelta(0))

    def problems(self) -> list[str]:
        """Why the level cannot run; empty when it can."""
        where = f"level {self.name!r}"
        problems = []
        if (self.percent is None) == (self.offset_seconds is None):
            problems.append(f"{where}: give exactly one of percent and offset")
        if self.percent is not None and self.percent <= 0:
            problems.append(f"{where}: percent must be positive")
        if self.action not in ACTIONS:
            problems.append(f"{where}: action must be one of {list(ACTIONS)}")
        if self.action == NOTIFY_ROLE and self.role not in ROLES:
            problems.append(f"{where}: notify_role needs a role, one of {list(ROLES)}")
        if self.action == REASSIGN and not self.group:
            problems.append(f"{where}: reassign needs a group (a pool)")
        return problems


@dataclass(frozen=True)
class LevelAction:
    """What the ticket's workflow does because a clock reached a level: ``action`` is a
    ladder action, ``breached`` (offer the breach to automations) or ``skipped`` (a level
    before the breach reached with it, only noted). ``step`` names it everywhere (keys,
    audit, email); ``due`` is when the clock's cycle breaches or breached; ``emit`` is the
    milestone event to emit, if any; ``reassign_step`` keys a move of the ticket; ``at``
    and ``used_seconds`` say when the level was seen reached and the cycle's time then."""

    clock: str
    level: str
    step: str
    action: str
    due: datetime
    role: str | None = None
    task: bool = False
    group: str | None = None
    before_breach: bool = False
    percent: int = 100
    emit: str | None = None
    reassign_step: str = "reassign"
    cycle: int = 1
    at: datetime | None = None
    used_seconds: float = 0.0


@dataclass
class ClockPolicy:
    """One clock of a policy: its targets per priority in business seconds, the statuses
    that pause it and its escalation ladder."""

    name: str
    targets: dict[str, float]
    pause_on: list[str] = field(default_factory=lambda: list(PAUSING_STATUSES))
    ladder: list[EscalationLevel] = field(default_factory=list)

    def target(self, priority: str) -> timedelta | None:
        """The target for a ``priority`` ticket; None when the clock does not run for it."""
        seconds = self.targets.get(priority)
        return None if seconds is None else timedelta(seconds=seconds)

    def problems(self) -> list[str]:
        """Why the clock cannot run; empty when it can."""
        problems = []
        if self.name not in CLOCK_KINDS:
            problems.append(f"clock {self.name!r}: not one of {list(CLOCK_KINDS)}")
        if any(seconds <= 0 for seconds in self.targets.values()):
            problems.append(f"clock {self.name!r}: targets must be positive")
        unknown = sorted(set(self.pause_on) - set(PAUSING_STATUSES))
        if unknown:
            problems.append(f"clock {self.name!r}: cannot pause on {unknown}")
        names = [level.name for level in self.ladder]
        if len(set(names)) != len(names):
            problems.append(f"clock {self.name!r}: ladder level names must be unique")
        return problems + [
            f"clock {self.name!r} {problem}"
            for level in self.ladder
            for problem in level.problems()
        ]


@dataclass
class TicketFields:
    """The fields of a ticket that policies match on and calendars are chosen by."""

    priority: str
    tier: str | None = None
    group: str | None = None
    type: str | None = None
    tags: list[str] = field(default_factory=list)
    organization: str | None = None


@dataclass
class TicketConditions:
    """What a ticket must be for a policy to apply: each non-empty list names the values a
    field may have (for ``tags``: the ticket has at least one of them); all must hold."""

    priority: list[str] = field(default_factory=list)
    tier: list[str] = field(default_factory=list)
    group: list[str] = field(default_factory=list)
    type: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    organization: list[str] = field(default_factory=list)

    def match(self, ticket: TicketFields) -> bool:
        """Whether ``ticket`` meets every condition."""
        singles = {
            "priority": ticket.priority,
            "tier": ticket.tier,
            "group": ticket.group,
            "type": ticket.type,
            "organization": ticket.organization,
        }
        if any(
            getattr(self, name) and value not in getattr(self, name)
            for name, value in singles.items()
        ):
            return False
        return not self.tags or bool(set(self.tags) & set(ticket.tags))


@dataclass
class TicketSlaPolicy:
    """A named SLA policy: when it applies, its clocks, and the priorities whose clocks
    count around the clock instead of in the group's business hours."""

    name: str
    clocks: list[ClockPolicy]
    conditions: TicketConditions = field(default_factory=TicketConditions)
    around_the_clock: list[str] = field(default_factory=list)

    def clock(self, name: str) -> ClockPolicy | None:
        """The policy's clock of kind ``name``, if it runs one."""
        return next((clock for clock in self.clocks if clock.name == name), None)

    def problems(self) -> list[str]:
        """Why the policy cannot run; empty when it can."""
        names = [clock.name for clock in self.clocks]
        problems = [problem for clock in self.clocks for problem in clock.problems()]
        if len(set(names)) != len(names):
            problems.append("two clocks of one kind")
        return [f"policy {self.name!r}: {problem}" for problem in problems]


@dataclass
class SlaPolicyBook:
    """Every SLA policy of a ticket's tenant: ``policies`` in order (first match wins),
    ``default`` for a ticket none matches, the business ``calendars`` of the support
    groups and the ``calendar`` of a ticket whose group has none (the customer's)."""

    default: TicketSlaPolicy
    policies: list[TicketSlaPolicy] = field(default_factory=list)
    calendars: dict[str, CalendarSpec] = field(default_factory=dict)
    calendar: CalendarSpec = field(default_factory=CalendarSpec)

    def match(self, ticket: TicketFields) -> TicketSlaPolicy:
        """The first policy whose conditions ``ticket`` meets, else the default."""
        return next((p for p in self.policies if p.conditions.match(ticket)), self.default)

    def calendar_for(self, ticket: TicketFields, policy: TicketSlaPolicy) -> BusinessCalendar:
        """The calendar ``ticket``'s clocks count in under ``policy``: around the clock for
        its priority if the policy says so, else its group's, else the customer's."""
        if ticket.priority in policy.around_the_clock:
            return BusinessCalendar.around_the_clock()
        spec = self.calendars.get(ticket.group or "", self.calendar)
        return BusinessCalendar.from_spec(spec)

    def problems(self) -> list[str]:
        """Why the book cannot time tickets; empty when it can."""
        problems = [p for policy in (*self.policies, self.default) for p in policy.problems()]
        for name, spec in {**self.calendars, "": self.calendar}.items():
            try:
                BusinessCalendar.from_spec(spec)
            except CalendarError as err:
                problems.append(f"calendar {name or '(customer)'}: {err}")
        return problems


def terms_policy(terms: SlaTerms) -> TicketSlaPolicy:
    """The policy ``terms`` amount to, the default of a book: first-response and resolution
    clocks with their targets, paused while pending or on hold, warning the assignee at
    ``warning_at``, telling the team lead at the breach (moving the ticket to
    ``reassign_pool``) and the manager at ``manager_at``."""
    ladder = [
        EscalationLevel("warning", NOTIFY_ASSIGNEE, percent=terms.warning_at * 100),
        EscalationLevel(
            "breach", NOTIFY_ROLE, percent=100, role="team_lead", group=terms.reassign_pool
        ),
        EscalationLevel("manager", NOTIFY_ROLE, percent=terms.manager_at * 100, role="manager"),
    ]
    clocks = [
        ClockPolicy(
            name,
            {priority: t.target(name).total_seconds() for priority, t in terms.targets.items()},
            ladder=list(ladder),
        )
        for name in (FIRST_RESPONSE, RESOLUTION)
    ]
    around = [priority for priority, t in terms.targets.items() if t.around_the_clock]
    return TicketSlaPolicy("default", clocks, around_the_clock=around)
