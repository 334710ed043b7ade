"""The ``leads:`` section of the policy file: scoring rules, follow-ups, quiet hours, territories.

Defaults (the section may override any part)::

    leads:
      scoring:
        thresholds: {high: 60, medium: 30}
        rules:                  # each counts once; negative points penalise
          - {name: decision_maker, fact: title, any_of: [vp, director, head, chief], points: 25}
          - {name: mid_market, fact: employees, min: 51, max: 1000, points: 15}
          - {name: target_industry, fact: industry, any_of: [Software], points: 10}
          - {name: demo_request, fact: source, any_of: [demo_request], points: 25}
          - {name: replied, fact: event, any_of: [replied], points: 30}
          # ... see crm.domain.lead_scoring.DEFAULT_RULES for the whole default list
      follow_up_days: [2, 5, 10]   # after the form, while no answer came
      unresponsive_day: 14         # no answer by then: the lead is unresponsive
      quiet_hours:
        send_window: "08:00-18:00" # every day, in the lead's time zone
        default_timezone: UTC      # leads that give no time zone
      territories:                 # by the lead's (or its company's) country
        emea: {pool: sales-emea, countries: [GB, DE, ...], timezone: Europe/Berlin}
        americas: {pool: sales-americas, countries: [US, CA, BR], timezone: America/New_York}
        apac: {pool: sales-apac, countries: [JP, IN, SG, AU], timezone: Asia/Singapore}
      fallback_territory: emea     # unknown country or none of the above
      rep_task_hours: 1            # business hours of the territory
      marketing_list: nurture      # where low-scoring leads go

A rule's ``fact`` is one of ``title``, ``industry``, ``source``, ``country``,
``event`` (matched against ``any_of``) or ``employees`` (``min``/``max``).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from crm.domain.calendar import BusinessCalendar, CalendarError, CalendarSpec
from crm.domain.lead_scoring import (
    DEFAULT_HIGH,
    DEFAULT_MEDIUM,
    DEFAULT_RULES,
    ScoringError,
    ScoringModel,
    ScoringRule,
    validate_model,
    validate_rule,
)
from crm.domain.leads import LeadTerms, Territory, quiet_hours_calendar
from crm.domain.schedules import schedule_days_problem

Fact = Literal["title", "industry", "source", "country", "event", "employees"]


class ScoringRulePolicy(BaseModel):
    """One scoring rule in the policy file; see ``crm.domain.lead_scoring``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    fact: Fact
    points: int
    any_of: tuple[str, ...] = ()
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _can_match(self) -> ScoringRulePolicy:
        try:
            validate_rule(self.rule())
        except ScoringError as err:
            raise ValueError(str(err)) from err
        return self

    def rule(self) -> ScoringRule:
        """The plain-data rule workflows receive."""
        return ScoringRule(
            name=self.name,
            fact=self.fact,
            points=self.points,
            any_of=list(self.any_of),
            min=self.min,
            max=self.max,
        )


class ScoringThresholds(BaseModel):
    """A score of ``high`` or more goes to sales; ``medium`` or more gets follow-ups."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    high: int = DEFAULT_HIGH
    medium: int = DEFAULT_MEDIUM


def _default_rules() -> tuple[ScoringRulePolicy, ...]:
    return tuple(ScoringRulePolicy.model_validate(asdict(rule)) for rule in DEFAULT_RULES)


class LeadScoringPolicy(BaseModel):
    """The scoring rules and thresholds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: tuple[ScoringRulePolicy, ...] = Field(default_factory=_default_rules)
    thresholds: ScoringThresholds = Field(default_factory=ScoringThresholds)

    @model_validator(mode="after")
    def _consistent(self) -> LeadScoringPolicy:
        try:
            validate_model(self.model())
        except ScoringError as err:
            raise ValueError(str(err)) from err
        return self

    def model(self) -> ScoringModel:
        """The plain-data scoring model workflows receive."""
        return ScoringModel(
            rules=[rule.rule() for rule in self.rules],
            high=self.thresholds.high,
            medium=self.thresholds.medium,
        )


class QuietHoursPolicy(BaseModel):
    """When leads may be emailed: ``send_window`` every day in the lead's time zone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    send_window: str = "08:00-18:00"
    default_timezone: str = "UTC"

    @model_validator(mode="after")
    def _is_a_calendar(self) -> QuietHoursPolicy:
        try:
            BusinessCalendar.from_spec(
                quiet_hours_calendar(self.default_timezone, self.send_window)
            )
        except CalendarError as err:
            raise ValueError(f"send_window {self.send_window!r}: {err}") from err
        return self


class TerritoryPolicy(BaseModel):
    """A sales territory: its countries (ISO 3166 alpha-2), rep pool and business hours."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pool: str = Field(min_length=1)
    countries: tuple[str, ...] = ()
    timezone: str = "UTC"
    hours: dict[str, str] = Field(
        default_factory=lambda: {d: "09:00-17:00" for d in ("mon", "tue", "wed", "thu", "fri")}
    )
    holidays: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _valid(self) -> TerritoryPolicy:
        bad = [c for c in self.countries if len(c) != 2 or not c.isalpha() or not c.isupper()]
        if bad:
            raise ValueError(f"countries must be ISO 3166 alpha-2 codes like 'DE', got {bad}")
        try:
            BusinessCalendar.from_spec(self.calendar())
        except CalendarError as err:
            raise ValueError(str(err)) from err
        return self

    def calendar(self) -> CalendarSpec:
        """The reps' business calendar."""
        return CalendarSpec(
            timezone=self.timezone, hours=dict(self.hours), holidays=list(self.holidays)
        )


_EMEA = ("GB", "IE", "DE", "FR", "NL", "SE", "DK", "ES", "IT", "CH", "PL")


def _default_territories() -> dict[str, TerritoryPolicy]:
    return {
        "emea": TerritoryPolicy(pool="sales-emea", countries=_EMEA, timezone="Europe/Berlin"),
        "americas": TerritoryPolicy(
            pool="sales-americas", countries=("US", "CA", "BR"), timezone="America/New_York"
        ),
        "apac": TerritoryPolicy(
            pool="sales-apac", countries=("JP", "IN", "SG", "AU"), timezone="Asia/Singapore"
        ),
    }


class LeadPolicy(BaseModel):
    """The ``leads:`` section: how leads are scored, followed up and routed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scoring: LeadScoringPolicy = Field(default_factory=LeadScoringPolicy)
    follow_up_days: tuple[int, ...] = (2, 5, 10)
    unresponsive_day: int = Field(default=14, ge=1)
    quiet_hours: QuietHoursPolicy = Field(default_factory=QuietHoursPolicy)
    territories: dict[str, TerritoryPolicy] = Field(default_factory=_default_territories)
    fallback_territory: str = "emea"
    rep_task_hours: float = Field(default=1.0, gt=0)
    marketing_list: str = Field(default="nurture", min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> LeadPolicy:
        days = [*self.follow_up_days, self.unresponsive_day]
        if problem := schedule_days_problem(days, "follow_up_days and unresponsive_day"):
            raise ValueError(problem)
        if self.fallback_territory not in self.territories:
            raise ValueError(
                f"fallback_territory {self.fallback_territory!r} is not one of the "
                f"territories {sorted(self.territories)}"
            )
        seen: dict[str, str] = {}
        for name, territory in self.territories.items():
            for country in territory.countries:
                if country in seen:
                    raise ValueError(
                        f"country {country!r} is in territories {seen[country]!r} and {name!r}"
                    )
                seen[country] = name
        return self

    def pools(self) -> set[str]:
        """Every assignment pool leads are routed to."""
        return {territory.pool for territory in self.territories.values()}

    def terms(self, timezone: str | None = None) -> LeadTerms:
        """The terms a lead's workflow runs with, for a lead in ``timezone``.

        A lead without a time zone gets ``quiet_hours.default_timezone``. Raises
        ``CalendarError`` for an unknown time zone.
        """
        send_calendar = quiet_hours_calendar(
            timezone or self.quiet_hours.default_timezone, self.quiet_hours.send_window
        )
        BusinessCalendar.from_spec(send_calendar)
        return LeadTerms(
            scoring=self.scoring.model(),
            follow_up_days=list(self.follow_up_days),
            unresponsive_day=self.unresponsive_day,
            send_calendar=send_calendar,
            territories=[
                Territory(
                    name=name,
                    pool=territory.pool,
                    countries=list(territory.countries),
                    calendar=territory.calendar(),
                )
                for name, territory in self.territories.items()
            ],
            fallback_territory=self.fallback_territory,
            rep_task_hours=self.rep_task_hours,
            marketing_list=self.marketing_list,
        )
