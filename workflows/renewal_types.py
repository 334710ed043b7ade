"""The data a renewal exchanges: one term's input, the process's result, its events' data.

Kept apart from the workflow so the API can import them and the workflow
sandbox passes them through: their ``datetime`` fields must be the real
``datetime`` class for the payload converter.
"""

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Self

from crm.domain.calendar import as_utc
from crm.domain.renewal_plan import NextTerm, RenewalPlan, TermChanges, reminder_days_problem
from workflows.approval_types import ApprovalInput, Approver
from workflows.common import ProcessEvent, event_data


class EventDataError(ValueError):
    """Data of a renewal event that does not fit: ``field`` names the field of ``data``."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"data.{field} {problem}")
        self.field = field


def _iso_instant(value: object) -> datetime:
    """``data.renewal_date`` read as an ISO date or date-time, UTC when it names no zone."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError, OverflowError):  # Overflow: beyond year 1 or 9999
            return as_utc(datetime.fromisoformat(value))
    raise EventDataError("renewal_date", f"must be an ISO date, got {value!r}")


@dataclass
class Renewed:
    """The data of ``renewed``: the new terms the customer signed for the next term, each
    optional (None keeps the current one). ``renewal_date`` becomes the UTC instant it
    names and ``annual_value`` a float. Raises EventDataError (a ValueError) naming the
    first field the next term could not use."""

    # Any, so the payload converter hands each value over as sent and __post_init__
    # judges it: true is no annual value (the converter would read 1.0), and every
    # refusal names its field.
    plan: Any = None
    annual_value: Any = None
    renewal_date: Any = None

    def __post_init__(self) -> None:
        plan, value = self.plan, self.annual_value
        if plan is not None and not (isinstance(plan, str) and plan.strip()):
            raise EventDataError("plan", f"must be a plan name, got {plan!r}")
        if value is not None:
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not (number and 0 <= value < 1e15):
                raise EventDataError(
                    "annual_value", f"must be a number of at least 0, got {value!r}"
                )
            self.annual_value = float(value)
        if self.renewal_date is not None:
            self.renewal_date = _iso_instant(self.renewal_date)

    def changes(self) -> TermChanges:
        """What this signature sets of the next term."""
        return TermChanges(self.renewal_date, self.plan, self.annual_value)


@dataclass
class RenewalDateChanged:
    """The data of ``renewal_date_changed``: the date the term now renews on, an ISO date or
    date-time that becomes the UTC instant it names. Raises EventDataError (a ValueError)
    when it is none, TypeError when the data has no date."""

    renewal_date: Any  # Any: see Renewed

    def __post_init__(self) -> None:
        self.renewal_date = _iso_instant(self.renewal_date)

    def changes(self) -> TermChanges:
        """What this new date sets of the next term, once the term has renewed."""
        return TermChanges(renewal_date=self.renewal_date)


@dataclass
class Cancelled:
    """The data of ``cancelled``: why the customer cancelled, if they said, for the audit
    trail. Raises EventDataError (a ValueError) for a reason that is not text."""

    reason: Any = None  # Any: see Renewed

    def __post_init__(self) -> None:
        if self.reason is not None and not isinstance(self.reason, str):
            raise EventDataError("reason", f"must be text, got {self.reason!r}")


#: The business events a renewal accepts, each with the dataclass its data decodes to.
EVENT_DATA: dict[str, type] = {
    "renewed": Renewed,
    "cancelled": Cancelled,
    "renewal_date_changed": RenewalDateChanged,
}
EVENTS: tuple[str, ...] = tuple(EVENT_DATA)
#: A renewal event's data, decoded.
RenewalEvent = Renewed | RenewalDateChanged | Cancelled


def read_event(
    event: ProcessEvent, decided: str | None, refuse_unusable_terms: Callable[[], bool]
) -> RenewalEvent | str:
    """``event``'s data, decoded, or why the term ignores the event: not a renewal's, the
    term ``decided`` already, or data it cannot use. A cancellation is taken whatever its
    data says: nothing in it changes what the term does. ``refuse_unusable_terms`` is asked
    only for a ``renewed`` whose plan or value the next term could not use: whether to
    refuse it, or else take it without those terms."""
    if event.type not in EVENTS:
        return "not a renewal event"
    if decided is not None:
        return f"the term is already {decided}"
    if event.type == "cancelled":
        return Cancelled()
    if event.type == "renewal_date_changed":
        try:
            return event_data(RenewalDateChanged, event)
        except (TypeError, ValueError) as err:
            return str(err)
    try:
        return event_data(Renewed, event)
    except EventDataError as err:
        if err.field == "renewal_date" or refuse_unusable_terms():
            return str(err)
    try:
        return Renewed(renewal_date=event.data.get("renewal_date"))
    except EventDataError as err:
        return str(err)


def parse_renewal_date(value: object) -> datetime:
    """``value`` read as ``RenewalDateChanged`` reads ``data.renewal_date``: an ISO date or
    date-time, UTC when it names no zone. Raises EventDataError (a ValueError)."""
    date: datetime = RenewalDateChanged(value).renewal_date
    return date


def renewed_terms_problem(data: dict[str, Any]) -> str | None:
    """Why ``Renewed`` refuses the ``plan`` or ``annual_value`` of a ``renewed`` event's
    ``data``, or None; the date is ``parse_renewal_date``'s to check."""
    try:
        Renewed(plan=data.get("plan"), annual_value=data.get("annual_value"))
    except (TypeError, ValueError) as err:
        return str(err)
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

    def upsell_for(self, plan: str, utilisation: float) -> UpsellTerms | None:
        """The upsell a term on ``plan`` is offered at ``utilisation``, or None: above the plan's
        threshold only."""
        offer = self.upsell.get(plan)
        return offer if offer is not None and utilisation > offer.usage_threshold else None

    def needs_approval(self, offer: UpsellTerms) -> bool:
        """Whether ``offer``'s discount is above what the owner may give without approval."""
        return offer.discount_percent > self.max_discount_without_approval

    def problems(self) -> list[str]:
        """Why a term cannot run on this schedule: reminder days out of order, or
        discounts that need an approval and nobody to approve them."""
        problems = [problem] if (problem := reminder_days_problem(self.reminder_days)) else []
        needs_approval = any(self.needs_approval(offer) for offer in self.upsell.values())
        if needs_approval and not self.discount_approvers:
            problems.append("schedule.discount_approvers is empty but some discounts need approval")
        return problems


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

    def problems(self) -> list[str]:
        """Why the term cannot run: a missing name, a negative value, or its schedule's problems."""
        required = ("subscription_id", "customer_id", "company_name", "contact_email", "plan")
        problems = [
            f"{name} is required" for name in required if not str(getattr(self, name)).strip()
        ]
        if self.annual_value < 0:
            problems.append("annual_value must not be negative")
        return [*problems, *self.schedule.problems()]

    def renewal_plan(self) -> RenewalPlan:
        """The plan of this term's steps against its renewal date, on its schedule's days."""
        schedule = self.schedule
        return RenewalPlan(
            as_utc(self.renewal_date), schedule.reminder_days, schedule.usage_analysis_day
        )

    def result(self, outcome: str, plan: RenewalPlan, upsell: str | None) -> "RenewalResult":
        """How this term ended, by ``outcome``, on ``plan``'s date and reminders."""
        return RenewalResult(
            subscription_id=self.subscription_id,
            term=self.term,
            outcome=outcome,
            renewal_date=plan.renewal_date,
            reminders_sent=list(plan.reminders_sent),
            upsell=upsell,
        )

    def email_context(self) -> dict[str, object]:
        """What every email of the term shows: the customer, the plan and the owner."""
        return {
            "company_name": self.company_name,
            "contact_name": self.contact_name,
            "plan": self.plan,
            "annual_value": f"{self.annual_value:,.2f}",
            "owner_name": self.owner.name,
            "owner_email": self.owner.email,
        }

    def discount_approval(
        self, offer: UpsellTerms, utilisation: float, renewal_process: str
    ) -> ApprovalInput:
        """The approval ``offer``'s discount needs, asked by the owner of the schedule's
        approvers, first approver first."""
        return ApprovalInput(
            subject_id=f"{self.subscription_id}-term{self.term}-discount",
            subject=f"{offer.discount_percent:g}% discount for {self.company_name} "
            f"upgrading {self.plan} -> {offer.offered_plan}",
            requester_id=self.owner.staff_id,
            chain=list(self.schedule.discount_approvers),
            customer_id=self.customer_id,
            details={
                "subscription_id": self.subscription_id,
                "renewal_process": renewal_process,
                "plan": self.plan,
                "offered_plan": offer.offered_plan,
                "discount_percent": offer.discount_percent,
                "annual_value": self.annual_value,
                "utilisation": utilisation,
            },
        )

    def followed_by(self, next_term: NextTerm, renewed_from: RenewedTerm) -> Self:
        """The input of the term after this one, which renews with ``next_term``'s terms."""
        return replace(
            self,
            renewal_date=next_term.renewal_date,
            plan=next_term.plan,
            annual_value=next_term.annual_value,
            term=self.term + 1,
            renewed_from=renewed_from,
        )


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
