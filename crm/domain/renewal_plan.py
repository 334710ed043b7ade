"""When a renewal term takes each of its steps, and what the next term renews with.

A term reminds the customer at each of its schedule's days before the renewal
date, analyses usage once, and ends at the date. ``RenewalPlan`` says which of
these steps is due next; when the date moves, the steps still to take are
planned again against the new date, and a reminder already sent or skipped is
never planned again. Pure, like ``crm.domain.calendar``: the caller passes the
time in (the workflow passes ``workflow.now()``).
"""

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

#: The step that ends the term, due at its renewal date.
RENEWAL_DATE = "renewal_date"
#: The step that analyses the subscription's usage, ``usage_analysis_day`` days before the date.
USAGE_ANALYSIS = "usage_analysis"


def reminder_step(days: int) -> str:
    """The name of the reminder ``days`` before the renewal date (``reminder_30d``)."""
    return f"reminder_{days}d"


def reminder_days_problem(days: Sequence[int]) -> str | None:
    """Why ``days`` cannot be a term's reminder days, or None: each is 1 or more and
    smaller than the one before, as they count back from the date."""
    if any(later >= earlier for earlier, later in itertools.pairwise(days)) or any(
        day < 1 for day in days
    ):
        return f"schedule.reminder_days must be positive and decreasing, got {days}"
    return None


def one_year_after(date: datetime) -> datetime:
    """The same day and time a year after ``date``; 29 February becomes 28 February."""
    try:
        return date.replace(year=date.year + 1)
    except ValueError:  # 29 February
        return date.replace(year=date.year + 1, day=28)


@dataclass(frozen=True)
class Step:
    """A step of the term due ``at``; ``reminder_days`` is set for a reminder."""

    name: str
    at: datetime
    reminder_days: int | None = None


@dataclass(frozen=True)
class TermChanges:
    """What events set of the next term; None keeps what the term had (a year on, for the date)."""

    renewal_date: datetime | None = None
    plan: str | None = None
    annual_value: float | None = None

    def then(self, later: "TermChanges") -> "TermChanges":
        """These changes with what ``later`` sets on top: the last one received wins."""
        return TermChanges(
            renewal_date=self.renewal_date if later.renewal_date is None else later.renewal_date,
            plan=self.plan if later.plan is None else later.plan,
            annual_value=self.annual_value if later.annual_value is None else later.annual_value,
        )


@dataclass(frozen=True)
class NextTerm:
    """The terms the next term renews with."""

    renewal_date: datetime
    plan: str
    annual_value: float


@dataclass
class RenewalPlan:
    """The steps of one term against its renewal date, planned again whenever the date moves:
    ``reminder_days`` count back from the date, largest first (see
    ``reminder_days_problem``), and ``moves`` counts the moves, so a wait for a
    step can tell that the plan it waited on is gone. It also keeps what the next
    term renews with: the terms signed with the decision, and the changes that
    arrive after the term's outcome (``changed_late``)."""

    renewal_date: datetime
    reminder_days: Sequence[int]
    usage_analysis_day: int
    reminders_sent: list[int] = field(default_factory=list)
    reminders_skipped: list[int] = field(default_factory=list)
    usage_analysed: bool = False
    moves: int = 0
    next_term_changes: TermChanges = field(default_factory=TermChanges)
    changed_late: bool = False

    def pending(self) -> list[Step]:
        """The steps still to take, earliest first; a reminder goes before the analysis due
        with it, and the date step is always last among those due at once."""
        done = {*self.reminders_sent, *self.reminders_skipped}
        steps = [
            Step(reminder_step(days), self.renewal_date - timedelta(days=days), days)
            for days in self.reminder_days
            if days not in done
        ]
        if not self.usage_analysed:
            analysis_at = self.renewal_date - timedelta(days=self.usage_analysis_day)
            steps.append(Step(USAGE_ANALYSIS, analysis_at))
        steps.append(Step(RENEWAL_DATE, self.renewal_date))
        return sorted(steps, key=lambda step: step.at)

    def skip_overdue(self, now: datetime) -> list[int]:
        """Skip the reminders whose day is past at ``now`` but the latest of them, which is
        still sent: a customer gets one late reminder, not several at once. Returns the
        days skipped."""
        done = {*self.reminders_sent, *self.reminders_skipped}
        overdue = [
            days
            for days in self.reminder_days
            if days not in done and self.renewal_date - timedelta(days=days) <= now
        ]
        skipped = sorted(overdue, reverse=True)[:-1]
        self.reminders_skipped.extend(skipped)
        return skipped

    def next_step(self) -> Step:
        """The step to take next (call ``skip_overdue`` first)."""
        return self.pending()[0]

    def took(self, step: Step) -> None:
        """Count ``step`` as taken: its reminder sent, or the usage analysed."""
        if step.reminder_days is not None:
            self.reminders_sent.append(step.reminder_days)
        elif step.name == USAGE_ANALYSIS:
            self.usage_analysed = True

    def move_to(self, renewal_date: datetime) -> None:
        """Plan the steps still to take against ``renewal_date``."""
        self.renewal_date = renewal_date
        self.moves += 1

    def sign(self, changes: TermChanges) -> None:
        """Renew into a next term with what ``changes`` sets, as the customer signed."""
        self.next_term_changes = changes

    def change_late(self, changes: TermChanges) -> str | None:
        """Add ``changes`` arriving after the term's outcome to the next term's, the last
        one winning; unless the date they set is not after this term's: why not, or None."""
        date = changes.renewal_date
        if date is not None and date <= self.renewal_date:
            return (
                f"renewal_date must be after {self.renewal_date:%Y-%m-%d}, "
                "the date this term renewed on"
            )
        self.next_term_changes = self.next_term_changes.then(changes)
        self.changed_late = True
        return None

    def next_term(self, plan: str, annual_value: float) -> NextTerm:
        """The next term of a term on ``plan`` at ``annual_value``: what was signed or changed
        late, else the same plan and value, renewing a year after this term's date."""
        changes = self.next_term_changes
        return NextTerm(
            renewal_date=changes.renewal_date or one_year_after(self.renewal_date),
            plan=plan if changes.plan is None else changes.plan,
            annual_value=annual_value if changes.annual_value is None else changes.annual_value,
        )
