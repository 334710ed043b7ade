"""Support-ticket SLA: started by ``POST /v1/tickets`` when a ticket is opened."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, create_model
from temporalio.common import SearchAttributePair

from crm.domain.calendar import CalendarError
from crm.policy import Policy
from crm.store.models import Customer, as_utc
from processes.registry import (
    BusinessKey,
    EventType,
    Instant,
    InvalidStart,
    ProcessDescriptor,
    ProcessStart,
    StartContext,
    TimeZone,
    declare_events,
    one_of,
    text,
)
from workflows.common import CUSTOMER_ID, PROCESS, SLA_STATE, STAGE, TICKET_PRIORITY
from workflows.sla import TicketSlaWorkflow
from workflows.sla_types import EVENT_DATA, OPEN, PENDING_CUSTOMER, TicketInput

#: How far ahead of the API's clock a helpdesk's ``created_at`` may be.
CLOCK_SKEW = timedelta(minutes=5)

Subject = Annotated[str, text(300)]
Skill = Annotated[str, text(50)]


class TicketCreate(BaseModel):
    """A support ticket that was just opened."""

    model_config = ConfigDict(extra="forbid")

    ticket_id: BusinessKey = Field(description="Your id of the ticket; the business key.")
    customer_id: BusinessKey
    subject: Subject
    priority: str = Field(description="One of the policy's priorities.")
    created_at: Instant | None = Field(
        default=None,
        description="When the ticket was opened (UTC if no zone); the clocks count from "
        "then. Default: now.",
    )
    timezone: str | None = Field(
        default=None,
        description="The customer's IANA time zone for business hours. Default: the policy's.",
    )
    tier: str | None = Field(
        default=None,
        description="The customer's tier for SLA overrides. Default: the plan on the "
        "customer's CRM record, if any.",
    )
    skills: list[Skill] = Field(
        default_factory=list, description="Skills the assignee should have, e.g. billing."
    )
    group: Skill | None = Field(
        default=None,
        description="The support group; its business calendar (policy `sla.calendars`) "
        "times the clocks, and SLA policies may match on it.",
    )
    type: Skill | None = Field(
        default=None, description="The ticket's type (incident, question...), for SLA policies."
    )
    tags: list[Skill] = Field(default_factory=list, description="Tags, for SLA policies.")
    organization: Skill | None = Field(
        default=None, description="The requester's organization, for SLA policies."
    )


def _tiers(policy: Policy) -> list[str]:
    return [*policy.onboarding.plans, *policy.sla.tiers]


def request_model(policy: Policy) -> type[TicketCreate]:
    """``TicketCreate`` with the policy's priorities and tiers, and the IANA zones, as enums."""
    return create_model(
        "TicketCreate",
        __base__=TicketCreate,
        __doc__=TicketCreate.__doc__,
        priority=(
            one_of(policy.sla.priorities),
            Field(description="One of the policy's priorities."),
        ),
        timezone=(
            TimeZone | None,
            Field(
                default=None,
                description="The customer's IANA time zone for business hours. "
                "Default: the policy's.",
            ),
        ),
        tier=(
            one_of(_tiers(policy)) | None,
            Field(
                default=None,
                description="The customer's tier (a plan or an SLA tier of the policy). "
                "Default: the plan on the customer's CRM record, if any.",
            ),
        ),
    )


async def build(body: TicketCreate, context: StartContext) -> ProcessStart:
    """The ticket SLA's input: the ticket plus the SLA terms of the customer's tier.

    Raises InvalidStart for a ``created_at`` in the future and a time zone
    the calendar cannot use.
    """
    sla = context.policy.sla
    created_at = None
    if body.created_at is not None:
        created_at = as_utc(body.created_at)
        if created_at > context.now + CLOCK_SKEW:
            raise InvalidStart("created_at", "must not be in the future")
    tier = body.tier
    if tier is None:
        customer = await context.database.run(
            lambda session: session.get(Customer, body.customer_id), write=False
        )
        tier = customer.plan if customer else None
    try:
        terms = sla.rules_for(tier).terms(body.timezone or sla.timezone)
    except CalendarError as err:
        raise InvalidStart("timezone", str(err)) from None
    ticket = TicketInput(
        ticket_id=body.ticket_id,
        customer_id=body.customer_id,
        subject=body.subject,
        priority=body.priority,
        terms=terms,
        created_at=created_at,
        tier=tier,
        skills=list(body.skills),
        policies=sla.book(terms),
        group=body.group,
        type=body.type,
        tags=list(body.tags),
        organization=body.organization,
    )
    return ProcessStart(
        business_key=body.ticket_id,
        customer_id=body.customer_id,
        argument=ticket,
        summary=f"SLA of {body.priority} ticket {body.ticket_id} for customer {body.customer_id}",
        search_attributes=[
            SearchAttributePair(TICKET_PRIORITY, body.priority),
            SearchAttributePair(SLA_STATE, "on_track"),
        ],
    )


#: What each event does to the ticket's clocks, for the OpenAPI document.
EVENT_DESCRIPTIONS = {
    "customer_replied": "The customer wrote: starts a next-reply clock unless one runs.",
    "agent_replied": "A public reply (`public`, default true) stops the first-response and "
    "next-reply clocks and restarts the periodic update; an internal note stops none.",
    "status_changed": "`pending` and `on_hold` pause the clocks whose policy says so "
    f"({PENDING_CUSTOMER!r} is read as `pending`), {OPEN!r} resumes them, `solved` ends the SLA.",
    "fields_changed": "Changed ticket fields (priority, tier, group, type, tags, organization): "
    "the SLA policy is matched again and the clocks retimed from the business time used.",
    "priority_changed": "Recomputes the targets from the business time already used.",
    "resolved": "Stops every clock; the SLA ends.",
    "closed": "Stops every clock; the SLA ends.",
}


def events(policy: Policy) -> list[EventType]:
    """What a helpdesk tells a ticket's SLA; a new priority is one of the policy's."""
    priority = one_of(policy.sla.priorities)
    fields = {
        "priority_changed": {"priority": priority},
        "fields_changed": {"priority": priority | None},
    }
    return declare_events(EVENT_DATA, EVENT_DESCRIPTIONS, fields)


SLA = ProcessDescriptor(
    name="sla",
    workflow=TicketSlaWorkflow,
    title="Support-ticket SLA",
    events=events,
    search_attributes=(PROCESS, CUSTOMER_ID, STAGE, TICKET_PRIORITY, SLA_STATE),
    start_path="/v1/tickets",
    request_model=request_model,
    build=build,
)
