"""Business policy as data: staff, assignment pools, schedules.

Defaults live here, next to the models that validate them. A deployment
overrides any part in a YAML file named by ``CRMFLOW_POLICY_FILE``; the file is
validated at start-up and a mistake stops the worker or API with a message
that names the offending field.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from crm.domain.calendar import BusinessCalendar, CalendarError, CalendarSpec
from crm.domain.schedules import OnboardingSchedule, schedule_days_problem
from crm.mail.layout import EmailPolicy
from crm.policy.leads import LeadPolicy
from crm.policy.sla import SlaPolicy


class PolicyError(ValueError):
    """The policy file is missing, unreadable or invalid."""


class StaffMember(BaseModel):
    """A person processes assign work to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    name: str
    email: str
    manager_id: str | None = None
    skills: tuple[str, ...] = ()
    #: Who may decide this person's approvals in their stead.
    delegate_id: str | None = None
    #: Where they work: their inbox and daily digest show times in this IANA zone.
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"unknown time zone {value!r}") from err
        return value


class CalendarPolicy(BaseModel):
    """A business calendar in the policy file; see ``crm.domain.calendar.CalendarSpec``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str = "UTC"
    hours: dict[str, str] = Field(
        default_factory=lambda: {d: "09:00-17:00" for d in ("mon", "tue", "wed", "thu", "fri")}
    )
    holidays: list[str] = Field(default_factory=list)
    around_the_clock: bool = False

    @model_validator(mode="after")
    def _is_a_calendar(self) -> CalendarPolicy:
        try:
            BusinessCalendar.from_spec(self.spec())
        except CalendarError as err:
            raise ValueError(str(err)) from err
        return self

    def spec(self) -> CalendarSpec:
        """The plain-data spec workflows receive."""
        return CalendarSpec(
            timezone=self.timezone,
            hours=dict(self.hours),
            holidays=list(self.holidays),
            around_the_clock=self.around_the_clock,
        )


#: The schedule of a run the policy file says nothing about: the defaults of the section.
_ONBOARDING_DEFAULTS = OnboardingSchedule()


class OnboardingPolicy(BaseModel):
    """When onboarding nudges, flags risk and gives up, and who owns which plan.

    The days and milestones default to ``OnboardingSchedule``'s; ``schedule()``
    is what a run receives.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kickoff_business_days: int = Field(default=_ONBOARDING_DEFAULTS.kickoff_business_days, ge=1)
    nudge_days: tuple[int, ...] = tuple(_ONBOARDING_DEFAULTS.nudge_days)
    at_risk_day: int = Field(default=_ONBOARDING_DEFAULTS.at_risk_day, ge=1)
    stall_day: int = Field(default=_ONBOARDING_DEFAULTS.stall_day, ge=1)
    milestones: tuple[str, ...] = tuple(_ONBOARDING_DEFAULTS.milestones)
    calendar: CalendarPolicy = Field(default_factory=CalendarPolicy)
    csm_pools: dict[str, str] = Field(
        default_factory=lambda: {
            "starter": "csm-smb",
            "growth": "csm-smb",
            "enterprise": "csm-enterprise",
        }
    )

    @model_validator(mode="after")
    def _days_in_order(self) -> OnboardingPolicy:
        days = self.schedule().days()
        if problem := schedule_days_problem(days, "nudge_days, at_risk_day and stall_day"):
            raise ValueError(problem)
        if not self.milestones:
            raise ValueError("milestones must name at least one activation milestone")
        return self

    @property
    def plans(self) -> tuple[str, ...]:
        """The plans a customer may be on: those with a CSM pool."""
        return tuple(self.csm_pools)

    def schedule(self) -> OnboardingSchedule:
        """The plain-data schedule an onboarding runs on, in its input."""
        return OnboardingSchedule(
            kickoff_business_days=self.kickoff_business_days,
            nudge_days=list(self.nudge_days),
            at_risk_day=self.at_risk_day,
            stall_day=self.stall_day,
            milestones=list(self.milestones),
            calendar=self.calendar.spec(),
        )


def _default_staff() -> tuple[StaffMember, ...]:
    return (
        StaffMember(id="mgr-hana", name="Hana Berg", email="hana.berg@example.com"),
        StaffMember(
            id="csm-ana", name="Ana Ruiz", email="ana.ruiz@example.com", manager_id="mgr-hana"
        ),
        StaffMember(
            id="csm-ben", name="Ben Okafor", email="ben.okafor@example.com", manager_id="mgr-hana"
        ),
        StaffMember(
            id="csm-cleo",
            name="Cleo Martin",
            email="cleo.martin@example.com",
            manager_id="mgr-hana",
        ),
        StaffMember(
            id="csm-dev", name="Dev Patel", email="dev.patel@example.com", manager_id="mgr-hana"
        ),
        StaffMember(
            id="fin-olga",
            name="Olga Lind",
            email="olga.lind@example.com",
            delegate_id="fin-ravi",
        ),
        StaffMember(
            id="fin-ravi", name="Ravi Shah", email="ravi.shah@example.com", manager_id="fin-olga"
        ),
        # Support: agents report to a team lead, the team lead to the manager.
        StaffMember(
            id="lead-sam",
            name="Sam Lindqvist",
            email="sam.lindqvist@example.com",
            manager_id="mgr-hana",
            skills=("billing", "technical"),
        ),
        StaffMember(
            id="agent-ivy",
            name="Ivy Chen",
            email="ivy.chen@example.com",
            manager_id="lead-sam",
            skills=("billing",),
        ),
        StaffMember(
            id="agent-joe",
            name="Joe Mensah",
            email="joe.mensah@example.com",
            manager_id="lead-sam",
            skills=("technical",),
        ),
        StaffMember(
            id="agent-kai",
            name="Kai Nowak",
            email="kai.nowak@example.com",
            manager_id="lead-sam",
            skills=("billing", "technical"),
        ),
        # Sales: reps in territories (policy ``leads.territories``) under one manager.
        StaffMember(id="mgr-mia", name="Mia Torres", email="mia.torres@example.com"),
        StaffMember(
            id="rep-eva", name="Eva Novak", email="eva.novak@example.com", manager_id="mgr-mia"
        ),
        StaffMember(
            id="rep-finn", name="Finn Walsh", email="finn.walsh@example.com", manager_id="mgr-mia"
        ),
        StaffMember(
            id="rep-gus", name="Gus Alvarez", email="gus.alvarez@example.com", manager_id="mgr-mia"
        ),
        StaffMember(
            id="rep-iris", name="Iris Brown", email="iris.brown@example.com", manager_id="mgr-mia"
        ),
        StaffMember(
            id="rep-hiro", name="Hiro Sato", email="hiro.sato@example.com", manager_id="mgr-mia"
        ),
    )


def _default_pools() -> dict[str, tuple[str, ...]]:
    return {
        "csm-smb": ("csm-ana", "csm-ben", "csm-cleo"),
        "csm-enterprise": ("csm-dev", "csm-cleo"),
        "support": ("agent-ivy", "agent-joe", "agent-kai"),
        "support-senior": ("agent-kai", "lead-sam"),
        "sales-emea": ("rep-eva", "rep-finn"),
        "sales-americas": ("rep-gus", "rep-iris"),
        "sales-apac": ("rep-hiro",),
    }


class UpsellPolicy(BaseModel):
    """The upsell offered at renewal to a plan's customers who use more than ``usage_threshold``.

    ``usage_threshold`` is a utilisation (used / included, 0.85 = 85%); ``discount_percent``
    is the discount on the offered plan's first term.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    usage_threshold: float = Field(gt=0)
    offered_plan: str = Field(min_length=1)
    discount_percent: float = Field(ge=0, lt=100)


def _default_upsells() -> dict[str, UpsellPolicy]:
    return {
        "starter": UpsellPolicy(usage_threshold=0.8, offered_plan="growth", discount_percent=10),
        "growth": UpsellPolicy(
            usage_threshold=0.85, offered_plan="enterprise", discount_percent=15
        ),
    }


class RenewalPolicy(BaseModel):
    """When renewals remind, analyse usage and offer upsells, and who approves discounts.

    Days count backwards from the renewal date. A discount above
    ``max_discount_without_approval`` percent needs the approval of the account
    owner's manager, then of each of ``discount_approvers`` in turn when the one
    before does not answer within ``approval_step_hours``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    reminder_days: tuple[int, ...] = (90, 60, 30, 7)
    usage_analysis_day: int = Field(default=60, ge=1)
    max_discount_without_approval: float = Field(default=10.0, ge=0, le=100)
    upsell: dict[str, UpsellPolicy] = Field(default_factory=_default_upsells)
    discount_approvers: tuple[str, ...] = ("fin-olga",)
    approval_step_hours: int = Field(default=72, ge=1)

    @model_validator(mode="after")
    def _days_count_down(self) -> RenewalPolicy:
        days = list(self.reminder_days)
        if not days or any(day < 1 for day in days):
            raise ValueError(f"reminder_days must be positive day counts, got {days}")
        if any(later >= earlier for earlier, later in itertools.pairwise(days)):
            raise ValueError(f"reminder_days must be strictly decreasing, got {days}")
        return self


class Policy(BaseModel):
    """The whole policy file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    staff: tuple[StaffMember, ...] = Field(default_factory=_default_staff)
    pools: dict[str, tuple[str, ...]] = Field(default_factory=_default_pools)
    onboarding: OnboardingPolicy = Field(default_factory=OnboardingPolicy)
    renewal: RenewalPolicy = Field(default_factory=RenewalPolicy)
    sla: SlaPolicy = Field(default_factory=SlaPolicy)
    leads: LeadPolicy = Field(default_factory=LeadPolicy)
    #: The sender in every email's layout: name, postal address, logo, how long links work.
    email: EmailPolicy = Field(default_factory=EmailPolicy)
    #: The business calendars automations count business time in, by name.
    calendars: dict[str, CalendarPolicy] = Field(
        default_factory=lambda: {"default": CalendarPolicy()}
    )

    @model_validator(mode="after")
    def _references_resolve(self) -> Policy:
        ids = [member.id for member in self.staff]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"staff ids must be unique, repeated: {duplicates}")
        known = set(ids)
        for member in self.staff:
            if member.manager_id is not None and member.manager_id not in known:
                raise ValueError(f"staff {member.id!r}: unknown manager_id {member.manager_id!r}")
        for pool, members in self.pools.items():
            if not members:
                raise ValueError(f"pool {pool!r} has no members")
            unknown = [m for m in members if m not in known]
            if unknown:
                raise ValueError(f"pool {pool!r}: unknown staff {unknown}")
        for plan, pool in self.onboarding.csm_pools.items():
            if pool not in self.pools:
                raise ValueError(f"onboarding.csm_pools[{plan!r}]: unknown pool {pool!r}")
        for member in self.staff:
            if member.delegate_id is not None and member.delegate_id not in known - {member.id}:
                raise ValueError(f"staff {member.id!r}: unknown delegate_id {member.delegate_id!r}")
        for approver in self.renewal.discount_approvers:
            if approver not in known:
                raise ValueError(f"renewal.discount_approvers: unknown staff {approver!r}")
        plans = set(self.onboarding.plans)
        for plan, upsell in self.renewal.upsell.items():
            if plan not in plans or upsell.offered_plan not in plans:
                raise ValueError(
                    f"renewal.upsell[{plan!r}]: plans must be among {sorted(plans)}, "
                    f"got {plan!r} -> {upsell.offered_plan!r}"
                )
        return self

    @model_validator(mode="after")
    def _sla_escalations_resolve(self) -> Policy:
        """Every SLA pool exists and each member has a team lead who has a manager."""
        known = {member.id: member for member in self.staff}
        for pool in sorted(self.sla.pools()):
            if pool not in self.pools:
                raise ValueError(f"sla: unknown pool {pool!r}; known pools: {sorted(self.pools)}")
        for pool in sorted(self.sla.pools(reassign=False)):
            for member_id in self.pools[pool]:
                lead_id = known[member_id].manager_id
                if lead_id is None or known[lead_id].manager_id is None:
                    raise ValueError(
                        f"sla pool {pool!r}: staff {member_id!r} needs a manager_id (the team "
                        "lead breaches escalate to) whose own manager_id is set"
                    )
        return self

    @model_validator(mode="after")
    def _lead_territories_resolve(self) -> Policy:
        """Every sales territory routes leads to a pool that exists."""
        for name, territory in self.leads.territories.items():
            if territory.pool not in self.pools:
                raise ValueError(
                    f"leads.territories[{name!r}]: unknown pool {territory.pool!r}; "
                    f"known pools: {sorted(self.pools)}"
                )
        return self

    def member(self, staff_id: str) -> StaffMember:
        """The staff member with this id; KeyError if there is none."""
        for member in self.staff:
            if member.id == staff_id:
                return member
        raise KeyError(staff_id)


def load_policy(path: Path | None) -> Policy:
    """Read and validate the policy file, or the defaults when ``path`` is None, and render
    every shipped email template with sample data in the policy's email layout.

    Raises PolicyError with the file name and every invalid field, or naming each email
    template that does not render.
    """
    if path is None:
        return _with_templates_checked(Policy())
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise PolicyError(f"cannot read policy file {path}: {err}") from err
    if not isinstance(raw, dict):
        raise PolicyError(f"policy file {path} must hold a mapping at the top level")
    try:
        policy = Policy.model_validate(raw)
    except ValidationError as err:
        raise PolicyError(f"invalid policy file {path}:\n{err}") from err
    return _with_templates_checked(policy)


def _with_templates_checked(policy: Policy) -> Policy:
    from crm.mail.catalogue import check_shipped_templates  # renders with activities' files

    try:
        check_shipped_templates(policy.email)
    except ValueError as err:
        raise PolicyError(str(err)) from err
    return policy
