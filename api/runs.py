"""Reading processes back: the API's side of Temporal (``processes.starting`` starts them).

A principal of a tenant sees only the runs of its tenant; another tenant's
run is not found.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
)
from temporalio.service import RPCError, RPCStatusCode

from api.problems import Problem
from crm.platform.principals import Principal
from crm.platform.temporal import TemporalUnavailable
from processes.starting import status_name as status_name  # also read by the routes
from workflows.common import PROCESS, ProcessState

QUERY_TIMEOUT = timedelta(seconds=5)


class ProcessView(BaseModel):
    """A process as support staff see it: status plus its ``state`` query."""

    process_id: str
    run_id: str
    process: str | None
    status: str
    started_at: datetime | None
    closed_at: datetime | None
    state: dict[str, Any] | None
    state_error: str | None = None


async def describe_process(
    client: Client, process_id: str, principal: Principal | None = None
) -> WorkflowExecutionDescription:
    """The latest run of ``process_id``; raises Problem 404 when there is none.

    A ``principal`` of a tenant gets the same 404 for another tenant's run.
    Raises TemporalUnavailable when Temporal cannot be reached.
    """
    not_found = Problem(404, "process-not-found", "Process not found", f"no process {process_id!r}")
    try:
        description = await client.get_workflow_handle(process_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise not_found from err
        raise TemporalUnavailable(err.message) from err
    tenant = principal.tenant if principal is not None else None
    if tenant is not None and await description.memo_value("tenant", None) != tenant:
        raise not_found
    return description


async def view_process(
    client: Client, process_id: str, principal: Principal | None = None
) -> ProcessView:
    """Status and ``state`` of a process; the state is None if no worker answers in time."""
    description = await describe_process(client, process_id, principal)
    state: dict[str, Any] | None = None
    state_error: str | None = None
    try:
        state = asdict(await query_state(client, process_id, description.run_id))
    except StateUnanswered as err:
        state_error = str(err)
    return ProcessView(
        process_id=process_id,
        run_id=description.run_id,
        process=description.typed_search_attributes.get(PROCESS),
        status=status_name(description.status),
        started_at=description.start_time,
        closed_at=description.close_time,
        state=state,
        state_error=state_error,
    )


class StateUnanswered(Exception):
    """The ``state`` query got no answer: no worker in time, or the run could not answer."""


async def query_state(client: Client, process_id: str, run_id: str | None = None) -> ProcessState:
    """The run's answer to its ``state`` query, within ``QUERY_TIMEOUT`` in all.

    The bound is on the whole call, the SDK's own retries included, so a read
    of a run no worker answers for returns in time. Raises StateUnanswered.
    """
    handle = client.get_workflow_handle(process_id, run_id=run_id)
    try:
        async with asyncio.timeout(QUERY_TIMEOUT.total_seconds()):
            state: ProcessState = await handle.query("state", result_type=ProcessState)
            return state
    except TimeoutError:
        raise StateUnanswered(
            f"state query not answered within {QUERY_TIMEOUT.total_seconds():g} s"
        ) from None
    except (RPCError, WorkflowQueryFailedError) as err:
        raise StateUnanswered(f"state query not answered: {err}") from err


def ensure_running(description: WorkflowExecutionDescription) -> None:
    """Raise Problem 409 unless the run is still going."""
    if description.status != WorkflowExecutionStatus.RUNNING:
        raise Problem(
            409,
            "process-closed",
            "Process has ended",
            f"process {description.id!r} is {status_name(description.status)}",
        )
