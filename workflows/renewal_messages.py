"""What a renewal term writes: its emails, its owner's tasks, the texts and records it shows.

Pure functions of the term and the facts the workflow has, so the workflow's
steps are each one call and each text can be read, and tested, on its own.
Due times take the workflow's ``now``: nothing here reads a clock.
"""

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio.common import SearchAttributePair, TypedSearchAttributes

from crm.domain.renewal_plan import RenewalPlan, Step, reminder_step
from workflows.common import APPROVAL_ASSIGNEE, CUSTOMER_ID, PROCESS, STAGE
from workflows.contracts import EmailRequest, UsageRequest, UsageSummary
from workflows.renewal_types import RenewalInput, RenewedTerm, StaffRef, UpsellTerms


@dataclass(frozen=True)
class Email:
    """One email of the term: the step it is, its template and what the template shows
    beyond the term's own context; to the customer unless ``to`` names someone else."""

    step: str
    template: str
    context: dict[str, object]
    to: str | None = None

    def request(self, term: RenewalInput, key: str, process_id: str) -> EmailRequest:
        """The activity's input: the term's context with this email's on top."""
        return EmailRequest(
            key=key,
            process_id=process_id,
            to=self.to or term.contact_email,
            template=self.template,
            context={**term.email_context(), **self.context},
        )


@dataclass(frozen=True)
class Task:
    """One task the term creates: ``kind`` is also its step."""

    assignee: StaffRef
    kind: str
    title: str
    due: datetime
    detail: str


def _day(instant: datetime) -> str:
    return f"{instant:%Y-%m-%d}"


def _without_decision(term: RenewalInput) -> str:
    return f"{'renews automatically' if term.auto_renew else 'lapses'} without a decision"


def renewal_confirmation(renewed: RenewedTerm, next_renewal_date: datetime) -> Email:
    """The email that tells the customer the term they start is renewed, signed or not."""
    return Email(
        "renewal_confirmation",
        "renewal_confirmation",
        {
            "auto_renewed": renewed.outcome == "auto_renewed",
            "renewal_date": _day(renewed.renewal_date),
            "next_renewal_date": _day(next_renewal_date),
        },
    )


def reminder_email(term: RenewalInput, days: int, renewal_date: datetime) -> Email:
    """The customer's reminder ``days`` before the renewal date."""
    context = {"days": days, "renewal_date": _day(renewal_date), "auto_renew": term.auto_renew}
    return Email(reminder_step(days), "renewal_reminder", context)


def reminder_task(
    term: RenewalInput, days: int, renewal_date: datetime, now: datetime, due_by: datetime
) -> Task:
    """The owner's reminder ``days`` before ``renewal_date``, due in 3 days, and by ``due_by``
    (the date as it is when the task is made: it may have moved since the email)."""
    return Task(
        term.owner,
        reminder_step(days),
        f"Renewal of {term.company_name} in {days} days ({_day(renewal_date)})",
        min(now + timedelta(days=3), due_by),
        f"Plan {term.plan}, annual value {term.annual_value:,.2f}; {_without_decision(term)}.",
    )


#: Why a reminder whose day passed before it was planned (the date moved) is not sent.
SKIPPED = "skipped: its day had passed before it was planned"


def date_moved_detail(previous: datetime, renewal_date: datetime) -> str:
    """A ``renewal_date_changed`` as the ``state`` query shows it."""
    return f"{_day(previous)} -> {_day(renewal_date)}"


def usage_request(term: RenewalInput, renewal_date: datetime, tenant: str | None) -> UsageRequest:
    """The usage analysis's input: the subscription's usage in the year before the date."""
    return UsageRequest(
        subscription_id=term.subscription_id,
        since=renewal_date - timedelta(days=365),
        tenant=tenant,
    )


def usage_detail(usage: UsageSummary) -> str:
    """The usage analysis as the ``state`` query shows it."""
    return f"{usage.metric or 'no usage reported'}: {usage.utilisation:.0%} of the plan"


def upsell_offer_email(offer: UpsellTerms, usage: UsageSummary, renewal_date: datetime) -> Email:
    """The customer's upsell offer: the plan, its discount, and the usage it answers."""
    return Email(
        "upsell_offer",
        "renewal_upsell_offer",
        {
            "offered_plan": offer.offered_plan,
            "discount_percent": f"{offer.discount_percent:g}",
            "renewal_date": _day(renewal_date),
            "metric": usage.metric or "usage",
            "utilisation_percent": round(usage.utilisation * 100),
        },
    )


def upsell_follow_up_task(
    term: RenewalInput,
    offer: UpsellTerms,
    usage: UsageSummary,
    now: datetime,
    due_by: datetime,
) -> Task:
    """The owner's follow-up of the offer, due in 7 days, and by ``due_by`` (the renewal date)."""
    return Task(
        term.owner,
        "upsell_follow_up",
        f"Follow up the {offer.offered_plan} offer to {term.company_name}",
        min(now + timedelta(days=7), due_by),
        f"{offer.discount_percent:g}% discount offered at "
        f"{usage.utilisation:.0%} {usage.metric} usage.",
    )


def approval_summary(term: RenewalInput) -> str:
    """The static summary of the term's discount approval, shown in the Web UI."""
    return f"Discount approval for subscription {term.subscription_id}"


def approval_search_attributes(term: RenewalInput, approver_id: str) -> TypedSearchAttributes:
    """What the discount approval is found by, from its start: its process, the customer,
    that it awaits a decision, and from whom."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(PROCESS, "approval"),
            SearchAttributePair(CUSTOMER_ID, term.customer_id),
            SearchAttributePair(STAGE, "awaiting_decision"),
            SearchAttributePair(APPROVAL_ASSIGNEE, approver_id),
        ]
    )


def next_term_record(outcome: str, next_term: RenewalInput) -> dict[str, object]:
    """The audit record of a renewed term's outcome: what the next term renews with."""
    return {
        "outcome": outcome,
        "next_renewal_date": next_term.renewal_date.isoformat(),
        "plan": next_term.plan,
        "annual_value": next_term.annual_value,
    }


def churn_risk_task(term: RenewalInput, renewal_date: datetime, now: datetime) -> Task:
    """The owner's task after a lapse, due in 2 days."""
    return Task(
        term.owner,
        "churn_risk",
        f"Churn risk: {term.company_name} lapsed on {_day(renewal_date)}",
        now + timedelta(days=2),
        f"Plan {term.plan}, annual value {term.annual_value:,.2f}; no renewal and no auto-renewal.",
    )


def lapse_escalation_task(term: RenewalInput, renewal_date: datetime, now: datetime) -> Task:
    """The task of the owner's manager (the owner without one) after a lapse, due in a day."""
    return Task(
        term.manager or term.owner,
        "lapse_escalation",
        f"Escalation: {term.company_name} did not renew ({term.owner.name}'s account)",
        now + timedelta(days=1),
        f"Subscription {term.subscription_id} lapsed on {_day(renewal_date)}.",
    )


def lapse_escalation_email(term: RenewalInput, renewal_date: datetime) -> Email:
    """The email to the owner's manager (the owner without one) after a lapse."""
    escalate_to = term.manager or term.owner
    return Email(
        "lapse_escalation",
        "renewal_lapse_escalation",
        {
            "manager_name": escalate_to.name,
            "owner_name": term.owner.name,
            "renewal_date": _day(renewal_date),
            "subscription_id": term.subscription_id,
        },
        to=escalate_to.email,
    )


def waiting_detail(term: RenewalInput, step: Step, renewal_date: datetime) -> str:
    """The run's current details while it waits for ``step``."""
    return (
        f"Term {term.term}: next step {step.name} at {step.at:%Y-%m-%d %H:%M} UTC; "
        f"renewal date {_day(renewal_date)}."
    )


def term_details(
    term: RenewalInput,
    plan: RenewalPlan,
    usage: UsageSummary | None,
    upsell: str | None,
    approval_id: str | None,
) -> dict[str, object]:
    """The ``details`` of the term's ``state`` query."""
    return {
        "subscription_id": term.subscription_id,
        "term": term.term,
        "renewal_date": plan.renewal_date.isoformat(),
        "plan": term.plan,
        "annual_value": term.annual_value,
        "auto_renew": term.auto_renew,
        "owner_id": term.owner.staff_id,
        "reminders_sent": list(plan.reminders_sent),
        "reminders_skipped": list(plan.reminders_skipped),
        "usage": dataclasses.asdict(usage) if usage else None,
        "upsell": upsell,
        "approval_id": approval_id,
    }


def outcome_record(term: RenewalInput, plan: RenewalPlan) -> dict[str, object]:
    """The term as automations on ``crmflow.renewal`` see it."""
    return {
        "company_name": term.company_name,
        "contact_email": term.contact_email,
        "plan": term.plan,
        "annual_value": term.annual_value,
        "owner_id": term.owner.staff_id,
        "renewal_date": plan.renewal_date.isoformat(),
        "term": term.term,
    }


def term_event(term: RenewalInput, plan: RenewalPlan, **extra: object) -> dict[str, object]:
    """The data of a term's milestone for the reports (``renewal.term_started``,
    ``.date_changed``, ``.upsell_offered``, ``.upsell_accepted``): the term, its date, plan,
    value and owner, and ``extra``."""
    return {
        "term": term.term,
        "renewal_date": plan.renewal_date.isoformat(),
        "plan": term.plan,
        "annual_value": term.annual_value,
        "owner_id": term.owner.staff_id,
        **extra,
    }
