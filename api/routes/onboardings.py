"""``POST /v1/onboardings``: start a customer's onboarding."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints
from temporalio.common import SearchAttributePair

from api.auth import Starter
from api.deps import ContextDep
from api.problems import invalid_input
from api.processes import ProcessStarted, start_process
from workflows.common import CUSTOMER_ID, PROCESS, STAGE
from workflows.onboarding import (
    OnboardingInput,
    OnboardingSchedule,
    OnboardingWorkflow,
    onboarding_id,
)

router = APIRouter(prefix="/v1/onboardings", tags=["onboardings"])

BusinessKey = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class OnboardingCreate(BaseModel):
    """A customer who just signed up."""

    model_config = ConfigDict(extra="forbid")

    customer_id: BusinessKey = Field(description="Your id of the customer; the business key.")
    company_name: Name
    contact_name: Name
    contact_email: EmailStr
    plan: str = Field(
        description="One of the plans of the policy (default: starter, growth, enterprise)."
    )


@router.post(
    "",
    response_model=ProcessStarted,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": ProcessStarted, "description": "The customer's onboarding exists"}},
)
async def start_onboarding(
    body: OnboardingCreate,
    response: Response,
    context: ContextDep,
    principal: Starter,
) -> ProcessStarted:
    """Start onboarding a customer: 201 with a new run, 200 with the existing one."""
    terms = context.policy.onboarding
    if body.plan not in terms.csm_pools:
        raise invalid_input("plan", f"unknown plan {body.plan!r}; known plans: {list(terms.plans)}")
    customer = OnboardingInput(
        customer_id=body.customer_id,
        company_name=body.company_name,
        contact_name=body.contact_name,
        contact_email=str(body.contact_email),
        plan=body.plan,
        csm_pool=terms.csm_pools[body.plan],
        schedule=OnboardingSchedule(
            kickoff_business_days=terms.kickoff_business_days,
            nudge_days=list(terms.nudge_days),
            at_risk_day=terms.at_risk_day,
            stall_day=terms.stall_day,
            milestones=list(terms.milestones),
            calendar=terms.calendar.spec(),
        ),
    )
    started, created = await start_process(
        await context.temporal.client(),
        OnboardingWorkflow.__name__,
        customer,
        process_id=onboarding_id(body.customer_id),
        task_queue=context.settings.task_queue,
        search_attributes=[
            SearchAttributePair(PROCESS, "onboarding"),
            SearchAttributePair(CUSTOMER_ID, body.customer_id),
            SearchAttributePair(STAGE, "starting"),
        ],
        summary=f"Onboarding of customer {body.customer_id} on plan {body.plan}",
        tenant=principal.tenant,
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return started
