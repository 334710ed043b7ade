"""Schedules of days: onboarding's, and the rule every process's days obey.

Plain data like ``crm.domain.leads``: ``OnboardingSchedule`` travels in the
onboarding workflow's input, so a run keeps the days it started with, and
``crm.policy`` builds it from the policy file. The policy and the workflows
check their days with ``schedule_days_problem``.
"""

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from crm.domain.calendar import CalendarSpec


def schedule_days_problem(
    days: Sequence[int], name: str, *, counting_down: bool = False
) -> str | None:
    """Why ``days`` cannot be a schedule's days, or None when they can.

    Each day must be 1 or more and later than the one before: greater, as
    days count from the start of a run, or with ``counting_down`` smaller, as
    days count back to a date (a renewal's reminders). ``name`` names the days
    in the answer, e.g. ``"schedule days"``.
    """
    listed = list(days)
    if any(day < 1 for day in listed):
        return f"{name} must be positive day counts, got {listed}"
    in_order = (
        later < earlier if counting_down else later > earlier
        for earlier, later in itertools.pairwise(listed)
    )
    if not all(in_order):
        direction = "decreasing" if counting_down else "increasing"
        return f"{name} must be strictly {direction}, got {listed}"
    return None


@dataclass
class OnboardingSchedule:
    """When onboarding nudges, flags risk and gives up (days from the start), and what activates.

    These defaults are the policy's too: ``crm.policy.OnboardingPolicy`` takes
    its defaults from here and builds the schedule a run receives.
    """

    kickoff_business_days: int = 2
    nudge_days: list[int] = field(default_factory=lambda: [3, 7])
    at_risk_day: int = 10
    stall_day: int = 30
    milestones: list[str] = field(default_factory=lambda: ["account_configured", "first_value"])
    calendar: CalendarSpec = field(default_factory=CalendarSpec)

    def days(self) -> list[int]:
        """The days the run acts on, in order: the nudges, at risk, stalled."""
        return [*self.nudge_days, self.at_risk_day, self.stall_day]
