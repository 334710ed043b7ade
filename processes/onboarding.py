"""Customer onboarding: started by ``POST /v1/onboardings`` when a customer signs up."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, create_model

from crm.policy import Policy
from processes.registry import (
    BusinessKey,
    Email,
    EventType,
    Name,
    ProcessDescriptor,
    ProcessStart,
    StartContext,
    one_of,
)
from workflows.onboarding import OnboardingWorkflow
from workflows.onboarding_types import OnboardingInput


class OnboardingCreate(BaseModel):
    """A customer who just signed up."""

    model_config = ConfigDict(extra="forbid")

    customer_id: BusinessKey = Field(description="Your id of the customer; the business key.")
    company_name: Name
    contact_name: Name
    contact_email: Email
    plan: str = Field(description="One of the plans of the policy.")


def request_model(policy: Policy) -> type[OnboardingCreate]:
    """``OnboardingCreate`` with the policy's plans as the enum of ``plan``."""
    return create_model(
        "OnboardingCreate",
        __base__=OnboardingCreate,
        __doc__=OnboardingCreate.__doc__,
        plan=(
            one_of(policy.onboarding.plans),
            Field(description="One of the plans of the policy."),
        ),
    )


async def build(body: OnboardingCreate, context: StartContext) -> ProcessStart:
    """The onboarding's input: the customer plus the policy's schedule and the plan's CSM pool."""
    terms = context.policy.onboarding
    customer = OnboardingInput(
        customer_id=body.customer_id,
        company_name=body.company_name,
        contact_name=body.contact_name,
        contact_email=str(body.contact_email),
        plan=body.plan,
        csm_pool=terms.csm_pools[body.plan],
        schedule=terms.schedule(),
    )
    return ProcessStart(
        business_key=body.customer_id,
        customer_id=body.customer_id,
        argument=customer,
        summary=f"Onboarding of customer {body.customer_id} on plan {body.plan}",
    )


def events(policy: Policy) -> list[EventType]:
    """The policy's activation milestones; reaching all of them activates the customer."""
    return [
        EventType(milestone, description="An activation milestone the customer reached.")
        for milestone in policy.onboarding.milestones
    ]


ONBOARDING = ProcessDescriptor(
    name="onboarding",
    workflow=OnboardingWorkflow,
    title="Customer onboarding",
    events=events,
    start_path="/v1/onboardings",
    request_model=request_model,
    build=build,
)
