"""``POST /v1/tickets``: start watching a support ticket's SLA."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from temporalio.common import SearchAttributePair

from api.auth import Starter
from api.deps import ContextDep
from api.problems import invalid_input
from api.processes import ProcessStarted, start_process
from api.routes.onboardings import BusinessKey
from crm.domain.calendar import CalendarError
from crm.store.models import Customer, as_utc
from workflows.common import CUSTOMER_ID, PROCESS, SLA_STATE, STAGE, TICKET_PRIORITY
from workflows.sla import TicketInput, TicketSlaWorkflow, sla_id

router = APIRouter(prefix="/v1/tickets", tags=["tickets"])

#: How far ahead of the API's clock a helpdesk's ``created_at`` may be.
CLOCK_SKEW = timedelta(minutes=5)

Subject = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
Skill = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]


class TicketCreate(BaseModel):
    """A support ticket that was just opened."""

    model_config = ConfigDict(extra="forbid")

    ticket_id: BusinessKey = Field(description="Your id of the ticket; the business key.")
    customer_id: BusinessKey
    subject: Subject
    priority: str = Field(description="One of the policy's priorities: urgent, high, normal, low.")
    created_at: datetime | None = Field(
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


@router.post(
    "",
    response_model=ProcessStarted,
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": ProcessStarted, "description": "The ticket's SLA process exists"}},
)
async def start_ticket_sla(
    body: TicketCreate,
    response: Response,
    context: ContextDep,
    principal: Starter,
) -> ProcessStarted:
    """Start a ticket's SLA process: 201 with a new run, 200 with the existing one.

    Needs the ``service`` role.
    """
    sla = context.policy.sla
    if body.priority not in sla.priorities:
        raise invalid_input(
            "priority", f"unknown priority {body.priority!r}; known: {list(sla.priorities)}"
        )
    created_at = None
    if body.created_at is not None:
        created_at = as_utc(body.created_at)
        if created_at > datetime.now(UTC) + CLOCK_SKEW:
            raise invalid_input("created_at", "must not be in the future")
    tier = body.tier
    if tier is None:
        customer = await context.database.run(
            lambda session: session.get(Customer, body.customer_id), write=False
        )
        tier = customer.plan if customer else None
    try:
        terms = sla.rules_for(tier).terms(body.timezone or sla.timezone)
    except CalendarError as err:
        raise invalid_input("timezone", str(err)) from None
    ticket = TicketInput(
        ticket_id=body.ticket_id,
        customer_id=body.customer_id,
        subject=body.subject,
        priority=body.priority,
        terms=terms,
        created_at=created_at,
        tier=tier,
        skills=list(body.skills),
    )
    started, created = await start_process(
        await context.temporal.client(),
        TicketSlaWorkflow.__name__,
        ticket,
        process_id=sla_id(body.ticket_id),
        task_queue=context.settings.task_queue,
        search_attributes=[
            SearchAttributePair(PROCESS, "sla"),
            SearchAttributePair(CUSTOMER_ID, body.customer_id),
            SearchAttributePair(STAGE, "starting"),
            SearchAttributePair(TICKET_PRIORITY, body.priority),
            SearchAttributePair(SLA_STATE, "on_track"),
        ],
        summary=f"SLA of {body.priority} ticket {body.ticket_id} for customer {body.customer_id}",
        tenant=principal.tenant,
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return started
