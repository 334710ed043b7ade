"""``POST /v1/leads``: start qualifying a prospect who filled in a form."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints
from temporalio.common import SearchAttributePair

from api.auth import Starter
from api.deps import ContextDep, PolicyDep, TemporalDep
from api.problems import invalid_input
from api.processes import ProcessStarted, start_process
from api.routes.onboardings import BusinessKey, Name
from crm.domain.calendar import CalendarError
from workflows.common import CUSTOMER_ID, PROCESS, STAGE
from workflows.lead import LeadInput, LeadWorkflow, lead_process_id

router = APIRouter(prefix="/v1/leads", tags=["leads"])

CountryCode = Annotated[
    str, StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Za-z]{2}$")
]
Source = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[A-Za-z0-9_.-]{1,50}$"),
]


class LeadCreate(BaseModel):
    """A prospect who filled in a form."""

    model_config = ConfigDict(extra="forbid")

    lead_id: BusinessKey = Field(description="Your id of the lead; the business key.")
    email: EmailStr
    name: Name
    company: Name | None = Field(default=None, description="Default: from the email domain.")
    title: Name | None = Field(default=None, description="Job title, as given in the form.")
    country: CountryCode | None = Field(
        default=None, description="ISO 3166 alpha-2. Default: the company's country."
    )
    source: Source = Field(description="Where the lead came from: demo_request, webinar, ...")
    timezone: str | None = Field(
        default=None,
        description="IANA time zone for quiet hours, e.g. Europe/Berlin. Default: the policy's.",
    )


@router.post(
    "",
    response_model=ProcessStarted,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": ProcessStarted, "description": "The lead's process exists"}},
)
async def start_lead(
    body: LeadCreate,
    response: Response,
    client: TemporalDep,
    policy: PolicyDep,
    context: ContextDep,
    principal: Starter,
) -> ProcessStarted:
    """Start qualifying a lead: 201 with a new run, 200 with the existing one."""
    try:
        terms = policy.leads.terms(body.timezone)
    except CalendarError as err:
        raise invalid_input("timezone", str(err)) from err
    lead = LeadInput(
        lead_id=body.lead_id,
        email=str(body.email),
        name=body.name,
        source=body.source,
        company=body.company,
        title=body.title,
        country=body.country,
        terms=terms,
    )
    started, created = await start_process(
        client,
        LeadWorkflow.__name__,
        lead,
        process_id=lead_process_id(body.lead_id),
        task_queue=context.settings.task_queue,
        search_attributes=[
            SearchAttributePair(PROCESS, "lead"),
            SearchAttributePair(CUSTOMER_ID, body.lead_id),
            SearchAttributePair(STAGE, "starting"),
        ],
        summary=f"Qualification of lead {body.lead_id} from {body.source}",
        tenant=principal.tenant,
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return started
