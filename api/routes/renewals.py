"""``POST /v1/renewals``: start following a subscription through its renewals."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict, EmailStr, Field
from temporalio.common import SearchAttributePair

from api.auth import Starter
from api.deps import ContextDep, DatabaseDep, PolicyDep, TemporalDep
from api.problems import invalid_input
from api.processes import ProcessStarted, start_process
from api.routes.onboardings import BusinessKey, Name
from crm.policy import Policy
from crm.store.models import Customer, as_utc
from workflows.approval_types import Approver
from workflows.common import CUSTOMER_ID, PROCESS, STAGE
from workflows.renewal import RenewalWorkflow
from workflows.renewal_types import (
    RenewalInput,
    RenewalSchedule,
    StaffRef,
    UpsellTerms,
    renewal_id,
)

router = APIRouter(prefix="/v1/renewals", tags=["renewals"])


class RenewalCreate(BaseModel):
    """A subscription to follow to its renewal date, and through every renewal after it."""

    model_config = ConfigDict(extra="forbid")

    subscription_id: BusinessKey = Field(description="Your id of the subscription; the key.")
    customer_id: BusinessKey
    renewal_date: datetime = Field(
        description="The end of the current term, ISO date or date-time (UTC if no zone)."
    )
    plan: str = Field(description="One of the plans of the policy.")
    annual_value: float = Field(ge=0, description="What the subscription is worth per year.")
    owner: str = Field(description="Staff id of the account owner.")
    auto_renew: bool = Field(description="Whether the contract renews without a decision.")
    company_name: Name | None = Field(default=None, description="Default: the customer record.")
    contact_name: Name | None = Field(default=None, description="Default: the customer record.")
    contact_email: EmailStr | None = Field(
        default=None, description="Where reminders go. Default: the customer record's contact."
    )


@router.post(
    "",
    response_model=ProcessStarted,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": ProcessStarted, "description": "The subscription's process exists"}},
)
async def start_renewal(
    body: RenewalCreate,
    response: Response,
    client: TemporalDep,
    policy: PolicyDep,
    database: DatabaseDep,
    context: ContextDep,
    principal: Starter,
) -> ProcessStarted:
    """Start a subscription's renewal process: 201 with a new run, 200 with the existing one."""
    plans = policy.onboarding.plans
    if body.plan not in plans:
        raise invalid_input("plan", f"unknown plan {body.plan!r}; known plans: {list(plans)}")
    try:
        policy.member(body.owner)
    except KeyError:
        raise invalid_input("owner", f"unknown staff id {body.owner!r}") from None
    renewal_date = as_utc(body.renewal_date)
    if renewal_date <= datetime.now(UTC):
        raise invalid_input("renewal_date", "must be in the future")
    customer = await database.run(
        lambda session: session.get(Customer, body.customer_id), write=False
    )
    contact_email = body.contact_email or (customer.contact_email if customer else None)
    if contact_email is None:
        raise invalid_input(
            "contact_email",
            f"no customer record for {body.customer_id!r}; give the contact to remind",
        )
    term = build_renewal_input(
        policy,
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
    started, created = await start_process(
        client,
        RenewalWorkflow.__name__,
        term,
        process_id=renewal_id(body.subscription_id),
        task_queue=context.settings.task_queue,
        search_attributes=[
            SearchAttributePair(PROCESS, "renewal"),
            SearchAttributePair(CUSTOMER_ID, body.customer_id),
            SearchAttributePair(STAGE, "active"),
        ],
        summary=f"Renewal of subscription {body.subscription_id} ({body.plan}), "
        f"next on {renewal_date:%Y-%m-%d}",
        tenant=principal.tenant,
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return started


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
