"""What a lead's qualification runs with and decides by: plain data, pure functions.

Pure and deterministic like ``crm.domain.calendar`` and ``crm.domain.lead_scoring``, so the
lead workflow uses it directly (passed through the sandbox). ``LeadTerms``
travels in the workflow's input, so a run keeps the rules, schedule and
territories it started with; ``crm.policy.leads`` builds it from the policy file.
The workflow asks this module where a lead goes (``territory_for``, ``call_due``),
when it follows up (``follow_ups``), when an email may go out (``send_time``) and
what the lead's events mean (``LeadEvents``).
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from crm.domain.calendar import BusinessCalendar, CalendarError, CalendarSpec
from crm.domain.lead_scoring import (
    DEFAULT_HIGH,
    DEFAULT_MEDIUM,
    DEFAULT_RULES,
    ScoringError,
    ScoringModel,
    validate_model,
)
from crm.domain.schedules import schedule_days_problem

#: Business events a lead's process reacts to: two kinds of engagement, two stops.
ENGAGEMENT_EVENTS: tuple[str, ...] = ("replied", "meeting_booked")
STOP_EVENTS: tuple[str, ...] = ("unsubscribed", "bounced")
LEAD_EVENTS: tuple[str, ...] = (*ENGAGEMENT_EVENTS, *STOP_EVENTS)


def _every_day(window: str) -> dict[str, str]:
    return {day: window for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def quiet_hours_calendar(timezone: str, send_window: str = "08:00-18:00") -> CalendarSpec:
    """The calendar in which a lead may be emailed: ``send_window`` every day, local time."""
    return CalendarSpec(timezone=timezone, hours=_every_day(send_window))


@dataclass
class Territory:
    """Countries whose leads go to a pool of sales reps, and the reps' business hours."""

    name: str
    pool: str
    countries: list[str]
    calendar: CalendarSpec = field(default_factory=CalendarSpec)


@dataclass
class LeadTerms:
    """Everything a lead's process depends on.

    ``follow_up_days`` count from the start of the run; the run gives up on a
    lead that has not answered by ``unresponsive_day``. ``send_calendar`` holds
    the hours in the lead's time zone in which email may go out.
    ``rep_task_hours`` is the business time, in the territory's calendar, in
    which the rep must act on a routed lead.
    """

    scoring: ScoringModel = field(
        default_factory=lambda: ScoringModel(list(DEFAULT_RULES), DEFAULT_HIGH, DEFAULT_MEDIUM)
    )
    follow_up_days: list[int] = field(default_factory=lambda: [2, 5, 10])
    unresponsive_day: int = 14
    send_calendar: CalendarSpec = field(default_factory=lambda: quiet_hours_calendar("UTC"))
    territories: list[Territory] = field(
        default_factory=lambda: [Territory(name="world", pool="sales", countries=[])]
    )
    fallback_territory: str = "world"
    rep_task_hours: float = 1.0
    marketing_list: str = "nurture"


def territory_for(terms: LeadTerms, country: str | None) -> Territory:
    """The territory whose countries include ``country``, else the fallback territory.

    Raises KeyError when the fallback territory is not among ``terms.territories``.
    """
    code = (country or "").strip().upper()
    for territory in terms.territories:
        if code and code in territory.countries:
            return territory
    for territory in terms.territories:
        if territory.name == terms.fallback_territory:
            return territory
    raise KeyError(terms.fallback_territory)


def local_time_text(instant: datetime, timezone: str) -> str:
    """``instant`` as wall-clock text in ``timezone``, e.g. ``2026-03-02 10:00 CET``.

    Raises ``zoneinfo.ZoneInfoNotFoundError`` for an unknown time zone.
    """
    return instant.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M %Z")


def call_due(terms: LeadTerms, territory: Territory, routed_at: datetime) -> datetime:
    """When the rep must have acted on a lead routed at ``routed_at``, in UTC.

    ``rep_task_hours`` of business time in the territory's calendar. Raises
    CalendarError for a calendar that is invalid or has no business time.
    """
    calendar = BusinessCalendar.from_spec(territory.calendar)
    return calendar.add(routed_at, timedelta(hours=terms.rep_task_hours))


def send_time(terms: LeadTerms, now: datetime) -> datetime:
    """The first moment from ``now`` on at which the lead may be emailed, in UTC.

    ``now`` itself inside the send window of ``terms.send_calendar``, else the
    window's next opening: quiet hours hold an email, they never drop it.
    Raises CalendarError for a calendar that is invalid or never open and
    ValueError for a naive ``now``.
    """
    return BusinessCalendar.from_spec(terms.send_calendar).next_open(now)


@dataclass(frozen=True)
class FollowUp:
    """One follow-up email of the sequence: number ``number`` of ``total``, due on ``day``."""

    number: int
    day: int
    total: int

    @property
    def step(self) -> str:
        """The step's name in the workflow, the audit trail and the email's idempotency key."""
        return f"follow_up_{self.number}"

    def context(self) -> dict[str, object]:
        """What the follow-up email's template is told of its place in the sequence."""
        return {"number": self.number, "total": self.total, "final": self.number == self.total}


def follow_ups(terms: LeadTerms) -> list[FollowUp]:
    """The follow-up emails of the sequence, in order: one per day of ``follow_up_days``."""
    total = len(terms.follow_up_days)
    return [
        FollowUp(number=number, day=day, total=total)
        for number, day in enumerate(terms.follow_up_days, start=1)
    ]


@dataclass
class LeadEvents:
    """What the lead did: each event type at the time it first came.

    ``stopped_by`` is the first stop event (``STOP_EVENTS``) that came; it
    ends the sequence, whatever comes after it.
    """

    at: dict[str, datetime] = field(default_factory=dict)
    stopped_by: str | None = None

    def record(self, event_type: str, at: datetime) -> bool:
        """Note that ``event_type`` came at ``at``; False, changing nothing, if it came before."""
        if event_type in self.at:
            return False
        self.at[event_type] = at
        if event_type in STOP_EVENTS and self.stopped_by is None:
            self.stopped_by = event_type
        return True

    def heard_back(self) -> bool:
        """Whether any event came: an answer or a stop ends the wait for one."""
        return bool(self.at)

    def engagement(self) -> list[str]:
        """The engagement events that came, in the order they came: what scoring counts."""
        return [event for event in self.at if event in ENGAGEMENT_EVENTS]


def terms_problems(terms: LeadTerms) -> list[str]:
    """What makes ``terms`` unusable for a run, one message each; empty when they are usable."""
    problems: list[str] = []
    days = [*terms.follow_up_days, terms.unresponsive_day]
    if problem := schedule_days_problem(days, "follow-up days"):
        problems.append(problem)
    try:
        validate_model(terms.scoring)
    except ScoringError as err:
        problems.append(str(err))
    try:
        BusinessCalendar.from_spec(terms.send_calendar)
        for territory in terms.territories:
            BusinessCalendar.from_spec(territory.calendar)
    except CalendarError as err:
        problems.append(str(err))
    if terms.fallback_territory not in {territory.name for territory in terms.territories}:
        problems.append(f"fallback territory {terms.fallback_territory!r} is not a territory")
    return problems
