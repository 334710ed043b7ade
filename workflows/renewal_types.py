"""The data a renewal exchanges: one term's input and the process's result.

Kept apart from the workflow so the API can import them and the workflow
sandbox passes them through: their ``datetime`` fields must be the real
``datetime`` class for the payload converter.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from crm.domain.calendar import as_utc
from workflows.approval_types import Approver
from workflows.common import ProcessEvent

#: The business events a renewal accepts.
EVENTS = ("renewed", "cancelled", "renewal_date_changed")


def parse_renewal_date(value: object) -> datetime:
    """An ISO date or date-time (UTC when it names no zone); raises ValueError or TypeError.

    The one reading of ``data.renewal_date``, for the API's check and the workflow alike.
    """
    if not isinstance(value, str):
        raise TypeError(f"expected an ISO date string, got {value!r}")
    parsed = datetime.fromisoformat(value)
    return as_utc(parsed)


def renewed_terms_problem(data: dict[str, Any]) -> str | None:
    """Why a ``renewed`` event's new terms (``plan``, ``annual_value``) are unusable, or None.

    Both are optional; the next term keeps the current ones when they are absent.
    """
    plan = data.get("plan")
    if "plan" in data and not (isinstance(plan, str) and plan.strip()):
        return f"data.plan must be a plan name, got {plan!r}"
    value = data.get("annual_value")
    if "annual_value" in data and (
        isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e15
    ):
        return f"data.annual_value must be a number of at least 0, got {value!r}"
    return None


@dataclass
class StaffRef:
    """A member of staff the process writes to or assigns tasks to."""

    staff_id: str
    name: str
    email: str


@dataclass
class UpsellTerms:
    """The upsell for a plan: offered above ``usage_threshold`` (used / included)."""

    usage_threshold: float
    offered_plan: str
    discount_percent: float


@dataclass
class RenewalSchedule:
    """Reminder offsets and the upsell rules; days count back from the renewal date.

    ``discount_approvers`` is the approval chain of a discount above
    ``max_discount_without_approval`` percent, first approver first.
    """

    reminder_days: list[int] = field(default_factory=lambda: [90, 60, 30, 7])
    usage_analysis_day: int = 60
    max_discount_without_approval: float = 10.0
    upsell: dict[str, UpsellTerms] = field(default_factory=dict)
    discount_approvers: list[Approver] = field(default_factory=list)


@dataclass
class RenewedTerm:
    """A term that renewed: ``renewed`` (signed) or ``auto_renewed``, on ``renewal_date``."""

    outcome: str
    renewal_date: datetime


@dataclass
class RenewalInput:
    """One term of a subscription; ``term`` counts the terms this process has run."""

    subscription_id: str
    customer_id: str
    company_name: str
    contact_name: str
    contact_email: str
    renewal_date: datetime
    plan: str
    annual_value: float
    owner: StaffRef
    auto_renew: bool
    manager: StaffRef | None = None
    term: int = 1
    schedule: RenewalSchedule = field(default_factory=RenewalSchedule)
    #: How the previous term ended, when this term follows it: the run confirms
    #: the renewal to the customer first.
    renewed_from: RenewedTerm | None = None
    #: Events that arrived after the previous term had its outcome (a cancellation
    #: right after the renewal, a new date): this term takes them first.
    carried_events: list[ProcessEvent] = field(default_factory=list)


@dataclass
class RenewalResult:
    """How the subscription's process ended: ``lapsed`` or ``cancelled``."""

    subscription_id: str
    term: int
    outcome: str
    renewal_date: datetime
    reminders_sent: list[int]
    upsell: str | None


def renewal_id(subscription_id: str) -> str:
    """The workflow id of a subscription's renewal process, its business key."""
    return f"renewal-{subscription_id}"
