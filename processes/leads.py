"""Lead qualification: started by ``POST /v1/leads`` when a prospect fills in a form."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

from crm.domain.calendar import CalendarError
from crm.domain.leads import ENGAGEMENT_EVENTS
from crm.policy import Policy
from processes.registry import (
    BusinessKey,
    Email,
    EventType,
    InvalidStart,
    Name,
    ProcessDescriptor,
    ProcessStart,
    StartContext,
    TimeZone,
    declare_events,
)
from workflows.lead import LeadWorkflow
from workflows.lead_types import EVENT_DATA, LeadInput

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
    email: Email
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


def request_model(policy: Policy) -> type[LeadCreate]:
    """``LeadCreate`` with the IANA time zones as the enum of ``timezone``."""
    return create_model(
        "LeadCreate",
        __base__=LeadCreate,
        __doc__=LeadCreate.__doc__,
        timezone=(
            TimeZone | None,
            Field(
                default=None,
                description="IANA time zone for quiet hours, e.g. Europe/Berlin. "
                "Default: the policy's.",
            ),
        ),
    )


async def build(body: LeadCreate, context: StartContext) -> ProcessStart:
    """The lead's input: the form plus the policy's scoring, follow-ups and territories.

    Raises InvalidStart for a time zone the quiet-hours calendar cannot use.
    """
    try:
        terms = context.policy.leads.terms(body.timezone)
    except CalendarError as err:
        raise InvalidStart("timezone", str(err)) from err
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
    return ProcessStart(
        business_key=body.lead_id,
        customer_id=body.lead_id,
        argument=lead,
        summary=f"Qualification of lead {body.lead_id} from {body.source}",
    )


def events(policy: Policy) -> list[EventType]:
    """Engagement rescores and routes the lead; a stop ends every email to it."""
    descriptions = {
        name: "The lead engaged." if name in ENGAGEMENT_EVENTS else "Stop emailing this lead."
        for name in EVENT_DATA
    }
    return declare_events(EVENT_DATA, descriptions)


LEAD = ProcessDescriptor(
    name="lead",
    workflow=LeadWorkflow,
    title="Lead qualification",
    events=events,
    start_path="/v1/leads",
    request_model=request_model,
    build=build,
)
