"""What a lead's qualification process runs with: plain data built from the policy.

Pure and deterministic like ``crm.domain.calendar`` and ``crm.domain.lead_scoring``, so the
lead workflow uses it directly (passed through the sandbox). ``LeadTerms``
travels in the workflow's input, so a run keeps the rules, schedule and
territories it started with; ``crm.policy.leads`` builds it from the policy file.
"""

from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from crm.domain.calendar import CalendarSpec
from crm.domain.lead_scoring import DEFAULT_HIGH, DEFAULT_MEDIUM, DEFAULT_RULES, ScoringModel

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
