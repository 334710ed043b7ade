"""Subscription renewal: started by ``POST /v1/renewals`` for a subscription's term."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, create_model

from crm.policy import Policy
from crm.store.models import Customer, as_utc
from processes.registry import (
    BusinessKey,
    Email,
    EventType,
    Instant,
    InvalidStart,
    Name,
    ProcessDescriptor,
    ProcessStart,
    StartContext,
    declare_events,
    one_of,
)
from workflows.approval_types import Approver
from workflows.renewal import RenewalWorkflow
from workflows.renewal_types import (
    EVENT_DATA,
    RenewalInput,
    RenewalSchedule,
    StaffRef,
    UpsellTerms,
)

#: A subscription's value per year: a finite number, at least 0 and under 10**15 (the
#: bound ``Renewed`` applies to a signed term's value).
AnnualValue = Annotated[float, Field(ge=0, lt=1e15, allow_inf_nan=False)]


class RenewalCreate(BaseModel):
    """A subscription to follow to its renewal date, and through every renewal after it."""

    model_config = ConfigDict(extra="forbid")

    subscription_id: BusinessKey = Field(description="Your id of the subscription; the key.")
    customer_id: BusinessKey
    renewal_date: Instant = Field(
        description="The end of the current term, ISO date or date-time (UTC if no zone)."
    )
    plan: str = Field(description="One of the plans of the policy.")
    annual_value: AnnualValue = Field(description="What the subscription is worth per year.")
    owner: str = Field(description="Staff id of the account owner.")
    auto_renew: bool = Field(description="Whether the contract renews without a decision.")
    company_name: Name | None = Field(default=None, description="Default: the customer record.")
    contact_name: Name | None = Field(default=None, description="Default: the customer record.")
    contact_email: Email | None = Field(
        default=None, description="Where reminders go. Default: the customer record's contact."
    )


def request_model(policy: Policy) -> type[RenewalCreate]:
    """``RenewalCreate`` with the policy's plans and staff ids as enums."""
    return create_model(
        "RenewalCreate",
        __base__=RenewalCreate,
        __doc__=RenewalCreate.__doc__,
        plan=(
            one_of(policy.onboarding.plans),
            Field(description="One of the plans of the policy."),
        ),
        owner=(
            one_of(member.id for member in policy.staff),
            Field(description="Staff id of the account owner."),
        ),
    )


async def build(body: RenewalCreate, context: StartContext) -> ProcessStart:
    """The renewal's input: the subscription, its contact and the policy's schedule.

    Raises InvalidStart for a renewal date that has passed and for a
    subscription whose contact is neither given nor on the customer's record.
    """
    renewal_date = as_utc(body.renewal_date)
    if renewal_date <= context.now:
        raise InvalidStart("renewal_date", "must be in the future")
    customer = await context.database.run(
        lambda session: session.get(Customer, body.customer_id), write=False
    )
    contact_email = body.contact_email or (customer.contact_email if customer else None)
    if contact_email is None:
        raise InvalidStart(
            "contact_email",
            f"no customer record for {body.customer_id!r}; give the contact to remind",
        )
    term = build_renewal_input(
        context.policy,
        subscription_id=body.subscription_id,
        customer_id=body.customer_id,
        company_name=body.company_name or (customer.company_name if customer else body.customer_id),
        contact_name=body.contact_name or (customer.contact_name if customer else "there"),
        contact_email=str(contact_email),
        renewal_date=renewal_date,
        plan=body.plan,
        annual_value=body.annual_value,
        owner_id=body.owner,
        auto_renew=body.auto_renew,
    )
    return ProcessStart(
        business_key=body.subscription_id,
        customer_id=body.customer_id,
        argument=term,
        stage="active",
        summary=f"Renewal of subscription {body.subscription_id} ({body.plan}), "
        f"next on {renewal_date:%Y-%m-%d}",
    )


def build_renewal_input(
    policy: Policy,
    *,
    subscription_id: str,
    customer_id: str,
    company_name: str,
    contact_name: str,
    contact_email: str,
    renewal_date: datetime,
    plan: str,
    annual_value: float,
    owner_id: str,
    auto_renew: bool,
) -> RenewalInput:
    """The renewal workflow's input: the request plus the policy's schedule and approvers.

    The discount approval chain is the owner's manager, then the policy's
    ``discount_approvers``. Raises KeyError for an unknown owner.
    """
    terms = policy.renewal
    owner = policy.member(owner_id)
    manager = policy.member(owner.manager_id) if owner.manager_id else None
    chain_ids = [*([manager.id] if manager else []), *terms.discount_approvers]
    chain = [
        Approver(
            approver_id=member.id,
            name=member.name,
            email=member.email,
            timeout_seconds=terms.approval_step_hours * 3600,
            delegate_id=member.delegate_id,
        )
        for member in (policy.member(i) for i in dict.fromkeys(chain_ids) if i != owner_id)
    ]
    return RenewalInput(
        subscription_id=subscription_id,
        customer_id=customer_id,
        company_name=company_name,
        contact_name=contact_name,
        contact_email=contact_email,
        renewal_date=as_utc(renewal_date),
        plan=plan,
        annual_value=annual_value,
        owner=StaffRef(owner.id, owner.name, owner.email),
        manager=StaffRef(manager.id, manager.name, manager.email) if manager else None,
        auto_renew=auto_renew,
        schedule=RenewalSchedule(
            reminder_days=list(terms.reminder_days),
            usage_analysis_day=terms.usage_analysis_day,
            max_discount_without_approval=terms.max_discount_without_approval,
            upsell={
                name: UpsellTerms(
                    usage_threshold=offer.usage_threshold,
                    offered_plan=offer.offered_plan,
                    discount_percent=offer.discount_percent,
                )
                for name, offer in terms.upsell.items()
            },
            discount_approvers=chain,
        ),
    )


#: What each event does to the renewal, for the OpenAPI document.
EVENT_DESCRIPTIONS = {
    "renewed": "Signed: the next term starts, with new terms if given.",
    "cancelled": "The customer cancelled; the subscription ends.",
    "renewal_date_changed": "The term ends on another date; reminders are planned again.",
}


def events(policy: Policy) -> list[EventType]:
    """What billing tells a renewal; a new plan is one of the policy's."""
    fields = {
        "renewed": {
            "plan": one_of(policy.onboarding.plans) | None,
            "annual_value": AnnualValue | None,
            "renewal_date": datetime | None,
        },
        "cancelled": {"reason": str | None},
        "renewal_date_changed": {"renewal_date": datetime},
    }
    return declare_events(EVENT_DATA, EVENT_DESCRIPTIONS, fields)


RENEWAL = ProcessDescriptor(
    name="renewal",
    workflow=RenewalWorkflow,
    title="Subscription renewal",
    events=events,
    start_path="/v1/renewals",
    request_model=request_model,
    build=build,
)
