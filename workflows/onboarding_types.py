"""The data an onboarding exchanges: its input and its result.

Kept apart from the workflow so the API can import them and the workflow
sandbox passes them through: their ``datetime`` fields must be the real
``datetime`` class for the payload converter. The schedule in the input is
``crm.domain.schedules.OnboardingSchedule``, built from the policy.
"""

from dataclasses import dataclass, field
from datetime import datetime

from crm.domain.schedules import OnboardingSchedule, schedule_days_problem


@dataclass
class OnboardingInput:
    """A new customer to onboard; ``csm_pool`` is the pool for the customer's plan."""

    customer_id: str
    company_name: str
    contact_name: str
    contact_email: str
    plan: str
    csm_pool: str
    schedule: OnboardingSchedule = field(default_factory=OnboardingSchedule)

    def problems(self) -> list[str]:
        """What makes this input unusable for a run, one message each; empty when it is usable."""
        required = ("customer_id", "company_name", "contact_name", "plan", "csm_pool")
        problems = [
            f"{name} is required" for name in required if not str(getattr(self, name)).strip()
        ]
        local, at, domain = self.contact_email.partition("@")
        if not (local and at and "." in domain):
            problems.append(f"contact_email {self.contact_email!r} is not an email address")
        if problem := schedule_days_problem(self.schedule.days(), "schedule days"):
            problems.append(problem)
        if not self.schedule.milestones:
            problems.append("schedule.milestones must name at least one milestone")
        return problems


@dataclass
class OnboardingResult:
    """How the onboarding ended: ``activated`` or ``stalled``."""

    customer_id: str
    outcome: str
    csm_id: str
    milestones: dict[str, datetime]
    nudges_sent: list[int]
    at_risk_task_id: int | None
    enrichment_complete: bool


def onboarding_id(customer_id: str) -> str:
    """The workflow id of a customer's onboarding, its business key."""
    return f"onboarding-{customer_id}"
