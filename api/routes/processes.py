"""``/v1/processes/{process_id}``: read a process, send it events, cancel it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field
from temporalio.service import RPCError

from api.auth import Service, ServiceOrSupport, Support
from api.deps import PolicyDep, TemporalDep
from api.problems import Problem, invalid_input
from api.processes import (
    ProcessView,
    describe_process,
    ensure_running,
    event_data_problem,
    event_types,
    view_process,
)
from workflows.common import PROCESS, ProcessEvent

router = APIRouter(prefix="/v1/processes", tags=["processes"])


class EventCreate(BaseModel):
    """A business event for a running process."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=100, description="What happened, e.g. first_value.")
    data: dict[str, Any] = Field(default_factory=dict)


class EventAccepted(BaseModel):
    """The event was delivered to the process."""

    process_id: str
    type: str


class CancelRequest(BaseModel):
    """Why the process is cancelled (recorded in its history and audit trail)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="cancelled through the API", max_length=500)


class CancelAccepted(BaseModel):
    """Cancellation was requested; the process records it and ends."""

    process_id: str
    status: str = "cancel_requested"


@router.get("/{process_id}", response_model=ProcessView)
async def get_process(
    process_id: str, client: TemporalDep, principal: ServiceOrSupport
) -> ProcessView:
    """Status of a process and its ``state``: stage, what it waits for, due times, steps."""
    return await view_process(client, process_id, principal)


@router.post(
    "/{process_id}/events", response_model=EventAccepted, status_code=status.HTTP_202_ACCEPTED
)
async def send_event(
    process_id: str, body: EventCreate, client: TemporalDep, policy: PolicyDep, principal: Service
) -> EventAccepted:
    """Deliver a business event; 422 for a type the process does not accept, 409 if it ended."""
    description = await describe_process(client, process_id, principal)
    process = description.typed_search_attributes.get(PROCESS)
    accepted = event_types(process, policy)
    if body.type not in accepted:
        raise invalid_input("type", f"unknown event type {body.type!r}; accepted: {list(accepted)}")
    problem = event_data_problem(process, body.type, body.data, policy)
    if problem is not None:
        raise invalid_input("data", problem)
    ensure_running(description)
    handle = client.get_workflow_handle(process_id, run_id=description.run_id)
    try:
        await handle.signal("event", ProcessEvent(type=body.type, data=body.data))
    except RPCError as err:
        raise Problem(409, "process-closed", "Process has ended", err.message) from err
    return EventAccepted(process_id=process_id, type=body.type)


@router.post(
    "/{process_id}/cancel", response_model=CancelAccepted, status_code=status.HTTP_202_ACCEPTED
)
async def cancel_process(
    process_id: str, client: TemporalDep, principal: Support, body: CancelRequest | None = None
) -> CancelAccepted:
    """Ask a running process to stop; it records why and ends as cancelled."""
    description = await describe_process(client, process_id, principal)
    ensure_running(description)
    reason = (body or CancelRequest()).reason
    await client.get_workflow_handle(process_id, run_id=description.run_id).cancel(reason=reason)
    return CancelAccepted(process_id=process_id)
