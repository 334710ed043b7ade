"""Previewing an automation: what it would do with a sample record, and when.

``POST /v1/automations/preview`` takes a definition with the sample;
``POST /v1/automations/{id}/preview`` a stored version's (default: the
latest). Both run the production interpreter on a time-skipping test server
with every effect recorded instead of performed (``crm.automations.preview``)
and answer the timeline. A preview waits its turn behind ``MAX_PREVIEWS``
others and gives up after ``PREVIEW_TIMEOUT_SECONDS``.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from api.auth import Admin, AdminOrSupport
from api.deps import ContextDep, DatabaseDep, PolicyDep
from api.problems import Problem, invalid_document
from api.record_fields import FieldValue
from api.routes.automations import AUTOMATION_ID_PATTERN
from api.routes.records import RECORD_ID_PATTERN
from crm.automations.preview import MAX_HORIZON, SampleEvent, SampleEventError, preview
from crm.automations.validation import DefinitionError, parse_definition
from crm.domain.automation import (
    DURATION_UNITS,
    RECORD_EVENT_TYPES,
    AutomationDefinition,
    Duration,
)
from crm.policy import Policy
from crm.store.automations import automation_of, definition_of, version_of

router = APIRouter(prefix="/v1/automations", tags=["automations"])

MAX_PREVIEWS = 2
PREVIEW_TIMEOUT_SECONDS = 60
_TURNS = asyncio.Semaphore(MAX_PREVIEWS)

DurationUnit = Literal["minutes", "hours", "days", "business_hours", "business_days"]
assert set(DurationUnit.__args__) == set(DURATION_UNITS)  # type: ignore[attr-defined]
EventType = Literal["created", "updated", "deleted"]
assert set(EventType.__args__) == set(RECORD_EVENT_TYPES)  # type: ignore[attr-defined]


class Offset(BaseModel):
    """How long after enrollment: ``amount`` of ``unit`` (business units: the calendar's)."""

    model_config = ConfigDict(extra="forbid")

    amount: int = Field(ge=0, le=100_000)
    unit: DurationUnit = "hours"


class SampleEventIn(BaseModel):
    """A record event of the sample, delivered ``after`` enrollment; ``record`` holds the
    fields it changes."""

    model_config = ConfigDict(extra="forbid")

    after: Offset
    type: EventType = "updated"
    record: dict[str, FieldValue] = Field(default_factory=dict)
    previous: dict[str, FieldValue] = Field(default_factory=dict)


class Sample(BaseModel):
    """A sample record, the events it will have, and how far ahead to look."""

    model_config = ConfigDict(extra="forbid")

    record_id: str = Field(default="sample-1", pattern=RECORD_ID_PATTERN)
    record: dict[str, FieldValue]
    events: list[SampleEventIn] = Field(default_factory=list, max_length=50)
    horizon_days: int = Field(default=90, ge=1, le=MAX_HORIZON.days)
    approvals: dict[str, Literal["approved", "rejected", "expired"]] = Field(
        default_factory=dict,
        description="How each approval step (by id) is decided; default approved at once. "
        "expired waits out the step's timeout.",
    )


class DefinitionPreview(Sample):
    """A definition (as ``POST /v1/automations`` takes it) and its sample."""

    definition: dict[str, Any]


class StoredPreview(Sample):
    """A sample for a stored version (default: the latest)."""

    version: int | None = Field(default=None, ge=1)


class TimelineEntryView(BaseModel):
    """One thing the run did: ``email``, ``task``, ``waiting``, ``wait`` (over), ``event``,
    ``set``, ``failed`` or ``end``."""

    at: datetime
    local_time: str
    step: str
    action: str
    detail: dict[str, Any]


class PreviewView(BaseModel):
    """The sample run's timeline and how it ended (``running``: still going at the horizon)."""

    outcome: str
    enrolled_at: datetime
    ended_at: datetime | None
    failure: str | None
    timeline: list[TimelineEntryView]


@router.post("/preview", response_model=PreviewView)
async def preview_definition(
    body: DefinitionPreview, policy: PolicyDep, context: ContextDep, principal: Admin
) -> PreviewView:
    """The timeline of the definition's run on the sample; 422 for a definition in error."""
    try:
        definition = parse_definition(
            body.definition, policy, allowed_hosts=context.settings.outbound_allowed_hosts
        )
    except DefinitionError as err:
        raise invalid_document(
            [(f"/definition{e.pointer}", e.message) for e in err.errors]
        ) from None
    return await _preview(definition, body, policy)


@router.post("/{automation_id}/preview", response_model=PreviewView)
async def preview_stored(
    automation_id: Annotated[str, Path(pattern=AUTOMATION_ID_PATTERN)],
    body: StoredPreview,
    database: DatabaseDep,
    policy: PolicyDep,
    principal: AdminOrSupport,
) -> PreviewView:
    """The timeline of a stored version's run on the sample."""
    automation = await database.run(
        lambda s: automation_of(s, principal.tenant, automation_id), write=False
    )
    if automation is None:
        raise Problem(
            404, "automation-not-found", "Automation not found", f"no automation {automation_id!r}"
        )
    number = body.version or automation.latest_version
    version = await database.run(
        lambda s: version_of(s, principal.tenant, automation_id, number), write=False
    )
    if version is None:
        raise Problem(
            404, "not-found", "No such version", f"{automation_id} has no version {number}"
        )
    return await _preview(definition_of(version), body, policy)


async def _preview(definition: AutomationDefinition, sample: Sample, policy: Policy) -> PreviewView:
    events = [
        SampleEvent(
            after=Duration(e.after.amount, e.after.unit),
            type=e.type,
            record=e.record,
            previous=e.previous,
        )
        for e in sample.events
    ]
    try:
        async with _TURNS:
            result = await asyncio.wait_for(
                preview(
                    definition,
                    sample.record_id,
                    sample.record,
                    events,
                    policy,
                    horizon=timedelta(days=sample.horizon_days),
                    approvals=sample.approvals,
                ),
                PREVIEW_TIMEOUT_SECONDS,
            )
    except SampleEventError as err:
        raise invalid_document([(f"/events/{err.index}/after", str(err))]) from None
    except TimeoutError:
        raise Problem(
            503,
            "preview-timeout",
            "Preview took too long",
            f"the preview did not end within {PREVIEW_TIMEOUT_SECONDS} s; "
            "try a shorter horizon or fewer events",
        ) from None
    return PreviewView(
        outcome=result.outcome,
        enrolled_at=result.enrolled_at,
        ended_at=result.ended_at,
        failure=result.failure,
        timeline=[
            TimelineEntryView(
                at=e.at, local_time=e.local_time, step=e.step, action=e.action, detail=e.detail
            )
            for e in result.timeline
        ],
    )
