"""The SLA section of the policy file: targets per priority, thresholds, overrides per tier.

Defaults (the ``sla:`` section may override any of them)::

    sla:
      timezone: UTC            # customers without a time zone of their own
      hours: {mon: "09:00-17:00", ..., fri: "09:00-17:00"}
      holidays: []
      warning_at: 0.75         # warn the assignee at 75 % of a target
      manager_at: 1.5          # escalate to the manager at 150 %
      pool: support            # who tickets are assigned to
      reassign_pool: null      # a pool to move breached tickets to
      targets:
        urgent: {first_response: 1h, resolution: 4h, around_the_clock: true}
        high:   {first_response: 4h, resolution: 8h}
        normal: {first_response: 8h, resolution: 24h}
        low:    {first_response: 12h, resolution: 48h}
      tiers:                   # per customer tier, only what differs
        enterprise:
          reassign_pool: support-senior
          targets: {normal: {first_response: 4h}}
      calendars:               # business hours of support groups (default: the customer's)
        manila: {timezone: Asia/Manila, hours: {mon: "08:00-18:00", ...}, holidays: []}
      policies:                # in order, first match wins; none matched: the rules above
        - name: vip
          when: {tags: [vip]}  # priority, tier, group, type, tags (any of), organization
          around_the_clock: [urgent]
          clocks:              # first_response, next_reply, periodic_update, resolution
            next_reply:
              targets: {urgent: 30m, high: 2h}   # priorities left out run no such clock
              pause_on: [pending, on_hold]       # the default
              ladder:
                - {name: reminder, at: -10m, action: notify_assignee}
                - {name: breach, at: 100%, action: notify_role, role: team_lead}
                - {name: senior, at: +1h, action: reassign, group: support-senior}

Durations are business time, written ``90m``, ``4h``, ``1h30m``, ``45s`` or as
a number of seconds. A ladder level is ``at`` a percentage of the target or an
offset of business time before (``-``) or after (``+``) it.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from crm.domain.calendar import BusinessCalendar, CalendarError, CalendarSpec
from crm.domain.sla import SlaTargets, SlaTerms
from crm.domain.sla_policies import (
    ClockPolicy,
    EscalationLevel,
    SlaPolicyBook,
    TicketConditions,
    TicketSlaPolicy,
    terms_policy,
)

PRIORITIES: tuple[str, ...] = ("urgent", "high", "normal", "low")

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_duration(value: object) -> object:
    """Read ``"1h30m"``, ``"90m"``, ``"45s"`` or a number of seconds as a timedelta.

    Anything else is returned unchanged for pydantic to reject (or accept, as a
    timedelta or an ISO 8601 duration).
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION.match(value.replace(" ", ""))
        if match and any(match.groups()):
            hours, minutes, seconds = (float(part or 0) for part in match.groups())
            return timedelta(hours=hours, minutes=minutes, seconds=seconds)
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _weekday_hours() -> dict[str, str]:
    return {day: "09:00-17:00" for day in ("mon", "tue", "wed", "thu", "fri")}


class PriorityTargets(BaseModel):
    """First-response and resolution targets of one priority."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    first_response: Duration
    resolution: Duration
    around_the_clock: bool = False

    @model_validator(mode="after")
    def _positive_and_ordered(self) -> PriorityTargets:
        if self.first_response <= timedelta(0) or self.resolution <= timedelta(0):
            raise ValueError("first_response and resolution must be positive durations")
        if self.resolution < self.first_response:
            raise ValueError(
                f"resolution ({self.resolution}) must not be shorter than "
                f"first_response ({self.first_response})"
            )
        return self


class PriorityTargetsOverride(BaseModel):
    """What a tier changes in one priority's targets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    first_response: Duration | None = None
    resolution: Duration | None = None
    around_the_clock: bool | None = None


def _default_targets() -> dict[str, PriorityTargets]:
    hour = timedelta(hours=1)
    return {
        "urgent": PriorityTargets(
            first_response=1 * hour, resolution=4 * hour, around_the_clock=True
        ),
        "high": PriorityTargets(first_response=4 * hour, resolution=8 * hour),
        "normal": PriorityTargets(first_response=8 * hour, resolution=24 * hour),
        "low": PriorityTargets(first_response=12 * hour, resolution=48 * hour),
    }


class SlaTierOverride(BaseModel):
    """What one customer tier changes in the SLA; anything left out is inherited."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    targets: dict[str, PriorityTargetsOverride] = Field(default_factory=dict)
    hours: dict[str, str] | None = None
    holidays: list[str] | None = None
    warning_at: float | None = None
    manager_at: float | None = None
    pool: str | None = None
    reassign_pool: str | None = None


class SlaRules(BaseModel):
    """The SLA terms of one tier (or the defaults), validated as a whole."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    targets: dict[str, PriorityTargets] = Field(default_factory=_default_targets)
    hours: dict[str, str] = Field(default_factory=_weekday_hours)
    holidays: list[str] = Field(default_factory=list)
    warning_at: float = 0.75
    manager_at: float = 1.5
    pool: str = "support"
    reassign_pool: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> SlaRules:
        if not self.targets:
            raise ValueError("targets must name at least one priority")
        if not 0 < self.warning_at < 1 < self.manager_at:
            raise ValueError(
                "thresholds must satisfy 0 < warning_at < 1 < manager_at, got "
                f"warning_at={self.warning_at}, manager_at={self.manager_at}"
            )
        try:
            BusinessCalendar.from_spec(CalendarSpec(hours=self.hours, holidays=self.holidays))
        except CalendarError as err:
            raise ValueError(str(err)) from err
        return self

    def terms(self, timezone: str) -> SlaTerms:
        """The terms a ticket SLA workflow runs with, for a customer in ``timezone``.

        Raises ``CalendarError`` for an unknown time zone.
        """
        spec = CalendarSpec(timezone=timezone, hours=dict(self.hours), holidays=list(self.holidays))
        BusinessCalendar.from_spec(spec)
        return SlaTerms(
            targets={
                name: SlaTargets(
                    first_response_seconds=t.first_response.total_seconds(),
                    resolution_seconds=t.resolution.total_seconds(),
                    around_the_clock=t.around_the_clock,
                )
                for name, t in self.targets.items()
            },
            calendar=spec,
            warning_at=self.warning_at,
            manager_at=self.manager_at,
            pool=self.pool,
            reassign_pool=self.reassign_pool,
        )


_AT = re.compile(r"^(?:(\d+(?:\.\d+)?)%|([+-])(.+))$")


def parse_level_at(value: object) -> object:
    """Read a level's ``at``: ``"75%"`` as a percentage, ``"-15m"``/``"+1h"`` as an offset
    in business time from the target; anything else is returned for pydantic to reject."""
    match = _AT.match(value.replace(" ", "")) if isinstance(value, str) else None
    if match is None:
        return value
    percent, sign, duration = match.groups()
    if percent is not None:
        return {"percent": float(percent)}
    parsed = parse_duration(duration)
    if not isinstance(parsed, timedelta):
        return value
    return {"offset": parsed.total_seconds() * (-1 if sign == "-" else 1)}


class LevelSpec(BaseModel):
    """One level of a clock's escalation ladder in the policy file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9_]*$")
    at: Annotated[dict[str, float], BeforeValidator(parse_level_at)]
    action: str = "notify_assignee"
    role: str | None = None
    task: bool = True
    group: str | None = None

    def level(self) -> EscalationLevel:
        return EscalationLevel(
            self.name,
            self.action,
            percent=self.at.get("percent"),
            offset_seconds=self.at.get("offset"),
            role=self.role,
            task=self.task,
            group=self.group,
        )

    @model_validator(mode="after")
    def _runs(self) -> LevelSpec:
        if problems := self.level().problems():
            raise ValueError("; ".join(problems))
        return self


class ClockSpec(BaseModel):
    """One clock of an SLA policy in the policy file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    targets: dict[str, Duration]
    pause_on: list[str] = Field(default_factory=lambda: ["pending", "on_hold"])
    ladder: list[LevelSpec] = Field(default_factory=list)

    def clock(self, name: str) -> ClockPolicy:
        return ClockPolicy(
            name,
            {priority: target.total_seconds() for priority, target in self.targets.items()},
            pause_on=list(self.pause_on),
            ladder=[level.level() for level in self.ladder],
        )


class Conditions(BaseModel):
    """What a ticket must be for a policy to apply; each field lists the values it may have."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    priority: list[str] = Field(default_factory=list)
    tier: list[str] = Field(default_factory=list)
    group: list[str] = Field(default_factory=list)
    type: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    organization: list[str] = Field(default_factory=list)


class PolicySpec(BaseModel):
    """An SLA policy in the policy file: its name, conditions and clocks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=60)
    when: Conditions = Field(default_factory=Conditions)
    around_the_clock: list[str] = Field(default_factory=list)
    clocks: dict[str, ClockSpec]

    def policy(self) -> TicketSlaPolicy:
        return TicketSlaPolicy(
            self.name,
            [spec.clock(name) for name, spec in self.clocks.items()],
            conditions=TicketConditions(**self.when.model_dump()),
            around_the_clock=list(self.around_the_clock),
        )

    @model_validator(mode="after")
    def _runs(self) -> PolicySpec:
        if problems := self.policy().problems():
            raise ValueError("; ".join(problems))
        return self


class GroupCalendar(BaseModel):
    """The business hours of a support group: its own time zone, hours and holidays."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str
    hours: dict[str, str] = Field(default_factory=_weekday_hours)
    holidays: list[str] = Field(default_factory=list)

    def spec(self) -> CalendarSpec:
        return CalendarSpec(self.timezone, dict(self.hours), list(self.holidays))

    @model_validator(mode="after")
    def _is_a_calendar(self) -> GroupCalendar:
        try:
            BusinessCalendar.from_spec(self.spec())
        except CalendarError as err:
            raise ValueError(str(err)) from err
        return self


#: The fields of the ``sla:`` section that are not rules of a tier.
_NOT_RULES = {"timezone", "tiers", "calendars", "policies"}


class SlaPolicy(SlaRules):
    """The ``sla:`` section of the policy file: default rules, time zone, tier overrides, the
    support groups' calendars and the SLA policies matched before the default rules."""

    timezone: str = "UTC"
    tiers: dict[str, SlaTierOverride] = Field(default_factory=dict)
    calendars: dict[str, GroupCalendar] = Field(default_factory=dict)
    policies: list[PolicySpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _tiers_valid(self) -> SlaPolicy:
        try:
            BusinessCalendar.from_spec(CalendarSpec(timezone=self.timezone))
        except CalendarError as err:
            raise ValueError(str(err)) from err
        for tier in self.tiers:
            self.rules_for(tier)
        names = [policy.name for policy in self.policies]
        if len(set(names)) != len(names):
            raise ValueError("policies: names must be unique")
        for policy in self.policies:
            unknown = {p for c in policy.clocks.values() for p in c.targets} - set(self.targets)
            unknown |= set(policy.when.priority) - set(self.targets)
            if unknown:
                raise ValueError(
                    f"policies[{policy.name!r}]: unknown priorities {sorted(unknown)}; "
                    f"known: {list(self.targets)}"
                )
        return self

    def book(self, terms: SlaTerms) -> SlaPolicyBook:
        """The SLA policies a ticket under ``terms`` (its tier's, in its customer's zone) runs
        with: the policies in order, the terms as the default, the groups' calendars."""
        return SlaPolicyBook(
            default=terms_policy(terms),
            policies=[spec.policy() for spec in self.policies],
            calendars={group: calendar.spec() for group, calendar in self.calendars.items()},
            calendar=terms.calendar,
        )

    @property
    def priorities(self) -> tuple[str, ...]:
        """The priorities a ticket may have."""
        return tuple(self.targets)

    def rules_for(self, tier: str | None) -> SlaRules:
        """The rules of customer ``tier``: the defaults with the tier's overrides applied.

        An unknown or missing tier gets the defaults. Raises ``ValueError``
        naming the tier when its overrides make the rules invalid.
        """
        override = self.tiers.get(tier) if tier is not None else None
        base = SlaRules.model_validate(self.model_dump(exclude=_NOT_RULES, exclude_none=False))
        if override is None:
            return base
        merged: dict[str, Any] = base.model_dump()
        for priority, changes in override.targets.items():
            if priority not in merged["targets"]:
                raise ValueError(
                    f"tiers.{tier}.targets: unknown priority {priority!r}; "
                    f"known: {list(merged['targets'])}"
                )
            merged["targets"][priority].update(changes.model_dump(exclude_none=True))
        merged.update(override.model_dump(exclude={"targets"}, exclude_none=True))
        if "reassign_pool" in override.model_fields_set:
            merged["reassign_pool"] = override.reassign_pool
        try:
            return SlaRules.model_validate(merged)
        except ValueError as err:
            raise ValueError(f"tiers.{tier}: {err}") from err

    def pools(self, *, reassign: bool = True) -> set[str]:
        """Every pool the SLA rules of any tier assign from, reassign pools unless told not to.

        Tickets are first assigned from the ``pool`` of their tier; escalations go
        to that assignee's team lead (``manager_id``) and the lead's manager,
        also after a reassignment.
        """
        rules = [self.rules_for(None), *(self.rules_for(tier) for tier in self.tiers)]
        pools = {r.pool for r in rules}
        if reassign:
            pools |= {r.reassign_pool for r in rules if r.reassign_pool is not None}
            pools |= {
                level.group
                for policy in self.policies
                for clock in policy.clocks.values()
                for level in clock.ladder
                if level.group is not None
            }
        return pools
