"""``POST /v1/records/events``: the system of record tells automations a record changed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from api.auth import Service
from api.deps import ContextDep
from api.events import CLOCK_SKEW, check_occurred_at
from api.problems import Problem
from api.record_fields import FieldValue
from crm.automations.record_events import EventRefused, EventSettings, take_record_event
from processes.registry import AwareInstant
from workflows.automation_types import RecordEvent

router = APIRouter(prefix="/v1/records", tags=["records"])

#: A record id is part of its runs' ids (``automation-{id}-{object}-{record}@tenant``),
#: so it holds no ``@`` (which starts the tenant), whitespace or slash: letters, digits and
#: ``_ . : -`` (a UUID, a ULID, a CRM's numeric or prefixed id), the same in every regex
#: dialect (Python's ``\s`` takes characters JSON Schema's does not).
RECORD_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,100}$"
#: Printable ASCII without spaces: a UUID, a ULID, a CRM's own event id.
EVENT_ID_PATTERN = r"^[!-~]{1,200}$"
OBJECT_PATTERN = r"^[a-z_][a-z0-9_]{0,62}$"


class RecordEventBody(BaseModel):
    """A change of one record: its fields now and, for an update, the old values of those
    that changed."""

    model_config = ConfigDict(extra="forbid")

    event_id: str = Field(pattern=EVENT_ID_PATTERN, description="Unique per event")
    object: str = Field(pattern=OBJECT_PATTERN, examples=["deal"])
    record_id: str = Field(pattern=RECORD_ID_PATTERN, examples=["d-1001"])
    type: Literal["created", "updated", "deleted"]  # crm.domain.automation.RECORD_EVENT_TYPES
    occurred_at: AwareInstant = Field(
        description=f"At most {CLOCK_SKEW.seconds} s ahead of crmflow's clock."
    )
    record: dict[str, FieldValue] = Field(default_factory=dict)
    previous: dict[str, FieldValue] = Field(default_factory=dict)

    def event(self) -> RecordEvent:
        return RecordEvent(
            event_id=self.event_id,
            object=self.object,
            record_id=self.record_id,
            type=self.type,
            occurred_at=self.occurred_at,
            record=self.record,
            previous=self.previous,
        )


class SkippedRun(BaseModel):
    """An automation whose trigger took the event but did not enrol the record, and why:
    ``running`` (its run goes on), ``ended`` (it may not enrol again), ``too-soon`` (not
    yet again) or ``id-taken``."""

    automation_id: str
    run_id: str
    reason: str


class AutomationFailure(BaseModel):
    """An automation that could not judge the event (its trigger failed on the data)."""

    automation_id: str
    message: str


class RecordEventTaken(BaseModel):
    """What the event did: the runs it started, the running runs it was sent to, and those
    a ``deleted`` event ended."""

    event_id: str
    enrolled: list[str]
    delivered: list[str]
    ended: list[str] = Field(default_factory=list)
    skipped: list[SkippedRun]
    errors: list[AutomationFailure]


@router.post("/events", response_model=RecordEventTaken, status_code=status.HTTP_202_ACCEPTED)
async def record_event(
    body: RecordEventBody, context: ContextDep, principal: Service
) -> RecordEventTaken:
    """Offer a record event to the caller's automations on its object.

    An active automation whose trigger takes the event enrols the record; a
    running run that listens for the record's events receives it. A ``deleted``
    event ends the record's going runs (``ended``; each ends as ``cancelled``, the
    deletion its reason) unless the automation waits for deletions. Sending the
    same event (same ``event_id`` and body) again answers as the first time
    and changes nothing; another body under a used ``event_id`` is a 409.
    A trigger condition that fails on the event's data is reported in
    ``errors``, and enrols nobody. An ``occurred_at`` more than ``CLOCK_SKEW``
    ahead of crmflow's clock is a 422: triggers take it for now.
    """
    check_occurred_at(body.occurred_at, datetime.now(UTC))
    settings = EventSettings(context.database, context.policy, context.settings.task_queue)
    try:
        answer = await take_record_event(
            await context.temporal.client(), settings, principal.tenant, body.event()
        )
    except EventRefused as err:
        retry = {"Retry-After": "5"} if err.kind == "event-in-progress" else None
        raise Problem(409, err.kind, err.title, err.detail, headers=retry) from err
    return RecordEventTaken.model_validate(answer)
