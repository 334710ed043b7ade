"""``/v1/processes``: list runs; read a process and its audit trail, send it events,
cancel it.

The module keeps evaluated annotations: the events route's body is the union
of the registered events, made for the policy when the app is built.
"""

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select
from temporalio.service import RPCError

from api.auth import Service, ServiceOrSupport, Support
from api.deps import ContextDep, DatabaseDep, PolicyDep, TemporalDep
from api.events import check_event, event_body_type
from api.page_tokens import id_after, id_token
from api.problems import Problem
from api.run_list import MAX_RUNS_PAGE, PROCESS_NAME_PATTERN, RunFilters, RunPage, list_runs
from api.runs import ProcessView, describe_process, ensure_running, view_process
from api.visibility import VALUE_PATTERN
from crm.policy import Policy
from crm.store.models import AuditEntry, as_utc
from processes import PROCESSES, process_named
from processes.registry import Instant
from workflows.common import PROCESS

RunStatus = Literal[
    "running", "completed", "failed", "cancelled", "terminated", "timed_out", "continued_as_new"
]


class EventAccepted(BaseModel):
    """The event was delivered to the process."""

    process_id: str
    type: str


class CancelRequest(BaseModel):
    """Why the process is cancelled (recorded in its history and audit trail)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="cancelled through the API", max_length=500)


class AuditStep(BaseModel):
    """One step of a process's audit trail: what it did, with what, when."""

    step: str
    detail: dict[str, Any]
    recorded_at: datetime


class AuditPage(BaseModel):
    """Steps in the order they were recorded; ``next_page_token`` fetches the rest."""

    process_id: str
    steps: list[AuditStep]
    next_page_token: str | None


class CancelAccepted(BaseModel):
    """Cancellation was requested; the process records it and ends."""

    process_id: str
    status: str = "cancel_requested"


def processes_router(policy: Policy) -> APIRouter:
    """The routes of ``/v1/processes``, with the events ``policy`` lets processes take."""
    router = APIRouter(prefix="/v1/processes", tags=["processes"])
    event_body: Any = event_body_type(policy)

    @router.get("", response_model=RunPage)
    async def get_runs(
        client: TemporalDep,
        context: ContextDep,
        principal: ServiceOrSupport,
        process: Annotated[str | None, Query(pattern=PROCESS_NAME_PATTERN)] = None,
        stage: Annotated[str | None, Query(pattern=VALUE_PATTERN)] = None,
        customer_id: Annotated[str | None, Query(pattern=VALUE_PATTERN)] = None,
        status: Annotated[RunStatus | None, Query()] = None,
        started_after: Instant | None = None,
        started_before: Instant | None = None,
        page_token: Annotated[str | None, Query(max_length=1000)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_RUNS_PAGE)] = 50,
    ) -> RunPage:
        """Runs from Temporal's visibility store that meet every filter given: running
        ones first, newest started first, then closed ones, latest closed first; a page
        of ``limit`` at a time (``page_token`` from the previous page, same filters)."""
        filters = RunFilters(
            process=process,
            stage=stage,
            customer_id=customer_id,
            status=status,
            started_after=started_after,
            started_before=started_before,
        )
        return await list_runs(client, context.settings, principal, filters, page_token, limit)

    @router.get("/{process_id}", response_model=ProcessView)
    async def get_process(
        process_id: str, client: TemporalDep, principal: ServiceOrSupport
    ) -> ProcessView:
        """Status of a process and its ``state``: stage, what it waits for, due times, steps."""
        return await view_process(client, process_id, principal)

    @router.get("/{process_id}/audit", response_model=AuditPage)
    async def get_audit(
        process_id: str,
        client: TemporalDep,
        database: DatabaseDep,
        principal: ServiceOrSupport,
        page_token: Annotated[str | None, Query(max_length=40)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> AuditPage:
        """Every step the process recorded, across its runs (continued as new, renewal
        terms), oldest first; a page of ``limit`` at a time."""
        await describe_process(client, process_id, principal)  # 404 unless the caller's
        after = id_after(page_token)
        rows = await database.all(
            select(AuditEntry)
            .where(AuditEntry.process_id == process_id, col(AuditEntry.id) > after)
            .order_by(col(AuditEntry.id))
            .limit(limit + 1)
        )
        page = rows[:limit]
        last = page[-1].id if len(rows) > limit and page else None
        return AuditPage(
            process_id=process_id,
            steps=[
                AuditStep(step=r.step, detail=r.detail, recorded_at=as_utc(r.recorded_at))
                for r in page
            ],
            next_page_token=id_token(last) if last is not None else None,
        )

    @router.post(
        "/{process_id}/events",
        response_model=EventAccepted,
        status_code=status.HTTP_202_ACCEPTED,
        description=_events_description(policy),
    )
    async def send_event(
        process_id: str,
        body: event_body,
        request: Request,
        client: TemporalDep,
        policy: PolicyDep,
        principal: Service,
    ) -> EventAccepted:
        received_at = datetime.now(UTC)
        description = await describe_process(client, process_id, principal)
        process = process_named(description.typed_search_attributes.get(PROCESS))
        sent = (await request.json()).get("data", {})  # as sent: the workflow reads it so
        event = check_event(
            process,
            body.type,
            sent,
            policy,
            occurred_at=body.occurred_at,
            received_at=received_at,
        )
        ensure_running(description)
        handle = client.get_workflow_handle(process_id, run_id=description.run_id)
        try:
            await handle.signal("event", event)
        except RPCError as err:
            raise Problem(409, "process-closed", "Process has ended", err.message) from err
        return EventAccepted(process_id=process_id, type=event.type)

    @router.post(
        "/{process_id}/cancel",
        response_model=CancelAccepted,
        status_code=status.HTTP_202_ACCEPTED,
    )
    async def cancel_process(
        process_id: str, client: TemporalDep, principal: Support, body: CancelRequest | None = None
    ) -> CancelAccepted:
        """Ask a running process to stop; it records why and ends as cancelled."""
        description = await describe_process(client, process_id, principal)
        ensure_running(description)
        reason = (body or CancelRequest()).reason
        await client.get_workflow_handle(process_id, run_id=description.run_id).cancel(
            reason=reason
        )
        return CancelAccepted(process_id=process_id)

    return router


def _events_description(policy: Policy) -> str:
    lines = [
        "Deliver a business event to a running process: 202; 422 for an unknown event type "
        "or data that does not fit it; 409 for an event the run's process does not take, "
        "or when the run has ended. Events by process:",
        "",
    ]
    for process in PROCESSES:
        names = ", ".join(f"`{event.name}`" for event in process.events(policy))
        if names:
            lines.append(f"- {process.title} (`{process.name}-...`): {names}")
    return "\n".join(lines)
