"""``/v1/automations``: define automations, move them through their states, enrol records.

An ``admin`` submits a definition (JSON, or YAML with ``Content-Type:
application/yaml``); each change is a new immutable version, and the
automation enrols records only once activated, with the version activated.
``support`` reads them. A principal of a tenant sees only its tenant's
automations; another tenant's id is a 404.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status
from sqlalchemy.exc import IntegrityError

from api.auth import Admin, AdminOrSupport
from api.automation_bodies import (
    Activation,
    AutomationDetail,
    AutomationView,
    DefinitionValid,
    Enrolled,
    EnrollRecord,
    EnrollRequest,
    SkippedRecord,
    VersionView,
)
from api.automation_documents import DOCUMENT_BODY, UNSUPPORTED, read_definition
from api.deps import AppContext, ContextDep, DatabaseDep, PolicyDep
from api.problems import Problem, invalid_document
from crm.automations.enrolment import EnrollingVersion, enroll
from crm.automations.schedules import follow_state
from crm.automations.validation import (
    definition_schema,
)
from crm.domain.automation import AutomationDefinition
from crm.platform.principals import Principal
from crm.store.automations import (
    AutomationStateError,
    Transition,
    automation_of,
    automations_of,
    change_state,
    definition_of,
    save_version,
    version_of,
    versions_of,
)
from crm.store.db import Database
from crm.store.models import Automation, AutomationVersion, as_utc

router = APIRouter(prefix="/v1/automations", tags=["automations"])

AUTOMATION_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
#: Starts of one bulk enrollment in flight at once.
ENROLL_CONCURRENCY = 16

AutomationId = Annotated[str, Path(pattern=AUTOMATION_ID_PATTERN)]


@router.get("/schema", response_model=dict[str, Any])
async def get_schema(principal: AdminOrSupport) -> dict[str, Any]:
    """The JSON Schema of an automation definition (the shape; the API checks more)."""
    return definition_schema()


@router.post(
    "/validate",
    response_model=DefinitionValid,
    openapi_extra=DOCUMENT_BODY,
    responses=UNSUPPORTED,
)
async def validate(
    request: Request, policy: PolicyDep, context: ContextDep, principal: Admin
) -> DefinitionValid:
    """Check a definition as ``POST /v1/automations`` would, storing nothing: 200 or a 422
    whose errors point at each mistake (``pointer``, e.g. ``/steps/3/wait/until``)."""
    await read_definition(request, policy, context.settings.outbound_allowed_hosts)
    return DefinitionValid()


@router.post(
    "",
    response_model=AutomationDetail,
    status_code=status.HTTP_201_CREATED,
    openapi_extra=DOCUMENT_BODY,
    responses={
        200: {"model": AutomationDetail, "description": "Same as the latest version"},
        **UNSUPPORTED,
    },
)
async def save_automation(
    request: Request,
    response: Response,
    database: DatabaseDep,
    policy: PolicyDep,
    context: ContextDep,
    principal: Admin,
) -> AutomationDetail:
    """Create an automation (a draft) or a new version of the one with the definition's
    ``id``: 201. A definition equal to the latest version's is that version: 200. An
    archived automation takes no new versions: 409."""
    document, definition = await read_definition(
        request, policy, context.settings.outbound_allowed_hosts
    )
    automation, version, created = await _save(database, principal, definition, document)
    if not created:
        response.status_code = status.HTTP_200_OK
    return AutomationDetail.of_version(automation, version)


@router.get("", response_model=list[AutomationView])
async def list_automations(
    database: DatabaseDep, principal: AdminOrSupport
) -> list[AutomationView]:
    """The caller's tenant's automations, by id."""
    rows = await database.run(lambda s: automations_of(s, principal.tenant), write=False)
    return [AutomationView.of(row) for row in rows]


@router.get("/{automation_id}", response_model=AutomationDetail)
async def get_automation(
    automation_id: AutomationId,
    database: DatabaseDep,
    principal: AdminOrSupport,
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> AutomationDetail:
    """An automation with the definition of ``version`` (default: the latest)."""
    automation = await _automation(database, principal, automation_id)
    number = version or automation.latest_version
    stored = await database.run(
        lambda s: version_of(s, principal.tenant, automation_id, number), write=False
    )
    if stored is None:
        raise Problem(
            404,
            "version-not-found",
            "Version not found",
            f"automation {automation_id!r} has no version {number}",
        )
    return AutomationDetail.of_version(automation, stored)


@router.get("/{automation_id}/versions", response_model=list[VersionView])
async def list_versions(
    automation_id: AutomationId, database: DatabaseDep, principal: AdminOrSupport
) -> list[VersionView]:
    """Every version of an automation, oldest first."""
    automation = await _automation(database, principal, automation_id)
    rows = await database.run(
        lambda s: versions_of(s, principal.tenant, automation_id), write=False
    )
    return [
        VersionView(
            version=row.version,
            created_at=as_utc(row.created_at),
            created_by=row.created_by,
            active=row.version == automation.active_version and automation.state == "active",
        )
        for row in rows
    ]


@router.post("/{automation_id}/activate", response_model=AutomationView)
async def activate(
    automation_id: AutomationId,
    context: ContextDep,
    principal: Admin,
    body: Activation | None = None,
) -> AutomationView:
    """Enrol records with ``version`` (default: the latest) from now on; a scheduled
    automation's schedule starts (or goes on with that version). An archived automation
    cannot be activated again: 409; an unknown version: 422."""
    return await _transition(
        context, principal, automation_id, "activate", (body or Activation()).version
    )


@router.post("/{automation_id}/pause", response_model=AutomationView)
async def pause(
    automation_id: AutomationId, context: ContextDep, principal: Admin
) -> AutomationView:
    """Stop enrolling records (a schedule is paused); runs in flight go on and still
    receive their records' events. A draft or archived automation cannot be paused: 409."""
    return await _transition(context, principal, automation_id, "pause")


@router.post("/{automation_id}/archive", response_model=AutomationView)
async def archive(
    automation_id: AutomationId, context: ContextDep, principal: Admin
) -> AutomationView:
    """Stop the automation for good: it enrols no one (its schedule is deleted) and cannot
    be activated again."""
    return await _transition(context, principal, automation_id, "archive")


@router.post("/{automation_id}/enroll", response_model=Enrolled)
async def enroll_records(
    automation_id: AutomationId, body: EnrollRequest, context: ContextDep, principal: Admin
) -> Enrolled:
    """Enrol records whatever the trigger says (a backfill), each with the fields given.

    The automation must be active (409 otherwise). A record that has a run
    going, or whose run ended when the definition does not let it enrol
    again, is skipped with the reason.
    """
    database = context.database
    automation = await _automation(database, principal, automation_id)
    if automation.state != "active" or automation.active_version is None:
        raise Problem(
            409,
            "automation-not-active",
            "Automation not active",
            f"automation {automation_id!r} is {automation.state}; activate it to enrol records",
        )
    enrolling = await _enrolling(context, principal, automation_id, automation.active_version)
    client = await context.temporal.client()
    gate = asyncio.Semaphore(ENROLL_CONCURRENCY)
    now = datetime.now(UTC)

    async def one(record: EnrollRecord) -> tuple[str, str | None, str]:
        async with gate:
            outcome = await enroll(
                client,
                enrolling,
                record.record_id,
                record.record,
                event=None,
                task_queue=context.settings.task_queue,
                now=now,
            )
        return record.record_id, outcome.skipped, outcome.run_id

    outcomes = await asyncio.gather(*(one(record) for record in body.records))
    return Enrolled(
        enrolled=[run_id for _, skipped, run_id in outcomes if skipped is None],
        skipped=[
            SkippedRecord(record_id=record_id, reason=skipped)
            for record_id, skipped, _ in outcomes
            if skipped is not None
        ],
    )


async def _save(
    database: Database,
    principal: Principal,
    definition: AutomationDefinition,
    document: dict[str, Any],
) -> tuple[Automation, AutomationVersion, bool]:
    by = principal.staff_id or principal.id
    attempts = 3
    while True:
        attempts -= 1
        try:
            return await database.run(
                lambda s: save_version(s, principal.tenant, definition, document, by)
            )
        except IntegrityError:  # another save of the automation won the race: go after it
            if attempts == 0:
                raise
        except AutomationStateError as err:
            raise _conflict(err) from None


async def _automation(database: Database, principal: Principal, automation_id: str) -> Automation:
    automation = await database.run(
        lambda s: automation_of(s, principal.tenant, automation_id), write=False
    )
    if automation is None:
        raise _not_found(automation_id)
    return automation


async def _transition(
    context: AppContext,
    principal: Principal,
    automation_id: str,
    transition: Transition,
    version: int | None = None,
) -> AutomationView:
    """Make ``transition``, then put the automation's schedule in the state it has.

    Temporal unreachable after the change is a 503 and the change stands: making
    it again (every transition may be repeated) brings the schedule in line.
    """
    database = context.database
    try:
        automation = await database.run(
            lambda s: change_state(s, principal.tenant, automation_id, transition, version)
        )
    except AutomationStateError as err:
        if err.reason == "no-such-version":
            raise invalid_document([("/version", str(err))]) from None
        raise _conflict(err) from None
    if automation is None:
        raise _not_found(automation_id)
    enrolling = None
    if automation.active_version is not None and automation.state != "archived":
        enrolling = await _enrolling(context, principal, automation_id, automation.active_version)
    await follow_state(
        await context.temporal.client(),
        principal.tenant,
        automation_id,
        automation.state,
        enrolling,
        task_queue=context.settings.task_queue,
    )
    return AutomationView.of(automation)


async def _enrolling(
    context: AppContext, principal: Principal, automation_id: str, active: int
) -> EnrollingVersion:
    """The automation's active version as it enrols records; Problem 409 when the policy no
    longer has the calendar it counts time in."""
    version = await context.database.run(
        lambda s: version_of(s, principal.tenant, automation_id, active), write=False
    )
    assert version is not None, "an automation's active version exists"
    definition = definition_of(version)
    calendar = context.policy.calendars.get(definition.calendar)
    if calendar is None:
        raise Problem(
            409,
            "calendar-unknown",
            "Calendar not in the policy",
            f"version {version.version} counts time in calendar {definition.calendar!r}, "
            "which the policy no longer has",
        )
    return EnrollingVersion(
        principal.tenant, version.automation_id, version.version, definition, calendar.spec()
    )


def _not_found(automation_id: str) -> Problem:
    return Problem(
        404, "automation-not-found", "Automation not found", f"no automation {automation_id!r}"
    )


def _conflict(err: AutomationStateError) -> Problem:
    return Problem(409, f"automation-{err.reason}", "Automation state conflict", str(err))
