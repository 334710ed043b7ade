"""Starting processes and reading them back: the API's side of Temporal.

Workflow ids are business keys, so starting a process twice for the same key
finds the existing run instead of a second one, whether that run is still
going or has ended.
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
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.metrics import count_start
from api.problems import Problem
from crm.platform.logs import bind_process
from crm.platform.principals import Principal
from processes.registry import ProcessDescriptor, ProcessStart
from workflows.common import CUSTOMER_ID, PROCESS, STAGE, ProcessState

QUERY_TIMEOUT = timedelta(seconds=5)


class ProcessStarted(BaseModel):
    """The answer to a start: the process id (the business key) and its run."""

    process_id: str
    run_id: str
    status: str


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


def status_name(status: WorkflowExecutionStatus | None) -> str:
    """``running``, ``completed``, ``failed``, ``cancelled``, ``terminated``, ..."""
    if status is None:
        return "unknown"
    name = status.name.lower()
    return "cancelled" if name == "canceled" else name


async def start_process(
    client: Client,
    process: ProcessDescriptor,
    start: ProcessStart,
    *,
    task_queue: str,
    tenant: str | None = None,
) -> tuple[ProcessStarted, bool]:
    """Start ``process`` for ``start.business_key``, or find the run that has the key.

    A run of a ``tenant`` gets the tenant's own id and keeps the tenant in its
    memo; principals of other tenants then cannot see it. A tenant's run
    started before ids named the tenant (``onboarding-c-42`` rather than
    ``onboarding-c-42@acme``) is found by its old id.

    Returns the process and True when this call started it. Raises Problem
    409 when the id belongs to another tenant's run (whose id, run and status
    stay hidden), 503 when Temporal cannot be reached.
    """
    if tenant is not None:
        earlier = await _tenant_run_by_unscoped_id(client, process, start.business_key, tenant)
        if earlier is not None:
            return _found(earlier, process), False
    process_id = process.process_id(start.business_key, tenant)
    try:
        handle = await client.start_workflow(
            process.workflow.__name__,
            start.argument,
            id=process_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(PROCESS, process.name),
                    SearchAttributePair(CUSTOMER_ID, start.customer_id),
                    SearchAttributePair(STAGE, start.stage),
                    *start.search_attributes,
                ]
            ),
            static_summary=start.summary,
            memo={"tenant": tenant} if tenant else None,
        )
    except WorkflowAlreadyStartedError as err:
        description = await client.get_workflow_handle(process_id, run_id=err.run_id).describe()
        if tenant is not None and await description.memo_value("tenant", None) != tenant:
            raise Problem(
                409,
                "process-id-taken",
                "Process id taken",
                f"{process_id!r} is the id of a process you cannot see; use another business key",
            ) from err
        return _found(description, process), False
    except RPCError as err:
        raise _unavailable(err) from err
    assert handle.result_run_id is not None
    started = ProcessStarted(process_id=process_id, run_id=handle.result_run_id, status="running")
    bind_process(process_id, started.run_id)
    count_start(process.name, True)
    return started, True


async def _tenant_run_by_unscoped_id(
    client: Client, process: ProcessDescriptor, business_key: str, tenant: str
) -> WorkflowExecutionDescription | None:
    """The ``tenant``'s run under the id it had before ids named tenants, if there is one."""
    try:
        description = await client.get_workflow_handle(process.process_id(business_key)).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise _unavailable(err) from err
    if await description.memo_value("tenant", None) != tenant:
        return None
    return description


def _found(description: WorkflowExecutionDescription, process: ProcessDescriptor) -> ProcessStarted:
    started = ProcessStarted(
        process_id=description.id,
        run_id=description.run_id,
        status=status_name(description.status),
    )
    bind_process(started.process_id, started.run_id)
    count_start(process.name, False)
    return started


async def describe_process(
    client: Client, process_id: str, principal: Principal | None = None
) -> WorkflowExecutionDescription:
    """The latest run of ``process_id``; raises Problem 404 when there is none.

    A ``principal`` of a tenant gets the same 404 for another tenant's run.
    """
    not_found = Problem(404, "process-not-found", "Process not found", f"no process {process_id!r}")
    try:
        description = await client.get_workflow_handle(process_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise not_found from err
        raise _unavailable(err) from err
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


def _unavailable(err: RPCError) -> Problem:
    return Problem(503, "temporal-unavailable", "Temporal is unavailable", err.message)
