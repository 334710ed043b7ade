"""Starting processes and reading them back: the API's side of Temporal.

Workflow ids are business keys, so starting a process twice for the same key
finds the existing run instead of a second one, whether that run is still
going or has ended.
"""

from __future__ import annotations

from collections.abc import Sequence
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
from crm.domain.leads import LEAD_EVENTS
from crm.platform.logs import bind_process
from crm.platform.principals import Principal
from crm.policy import Policy
from workflows.common import PROCESS, ProcessState
from workflows.renewal import RENEWAL_DATE
from workflows.renewal_types import EVENTS as RENEWAL_EVENTS
from workflows.renewal_types import parse_renewal_date, renewed_terms_problem
from workflows.sla import EVENT_TYPES as SLA_EVENTS
from workflows.sla import OPEN, PENDING_CUSTOMER

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
    workflow: str,
    argument: Any,
    *,
    process_id: str,
    task_queue: str,
    search_attributes: Sequence[SearchAttributePair[str]],
    summary: str,
    tenant: str | None = None,
) -> tuple[ProcessStarted, bool]:
    """Start ``workflow`` under ``process_id``, or find the run that has it.

    ``tenant`` (the starting principal's) is kept in the run's memo; principals
    of other tenants then cannot see the run.

    Returns the process and True when this call started it. Raises Problem
    409 when the id belongs to another tenant's run (whose id, run and status
    stay hidden), 503 when Temporal cannot be reached.
    """
    try:
        handle = await client.start_workflow(
            workflow,
            argument,
            id=process_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(list(search_attributes)),
            static_summary=summary,
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
        started = ProcessStarted(
            process_id=process_id, run_id=description.run_id, status=status_name(description.status)
        )
        created = False
    except RPCError as err:
        raise _unavailable(err) from err
    else:
        assert handle.result_run_id is not None
        started = ProcessStarted(
            process_id=process_id, run_id=handle.result_run_id, status="running"
        )
        created = True
    bind_process(process_id, started.run_id)
    process = next(
        (str(pair.value) for pair in search_attributes if pair.key.name == PROCESS.name), workflow
    )
    count_start(process, created)
    return started, created


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
        answer = await client.get_workflow_handle(process_id, run_id=description.run_id).query(
            "state", result_type=ProcessState, rpc_timeout=QUERY_TIMEOUT
        )
        state = asdict(answer)
    except (RPCError, WorkflowQueryFailedError) as err:
        state_error = f"state query not answered: {err}"
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


def event_types(process: str | None, policy: Policy) -> tuple[str, ...]:
    """The business events a process of kind ``process`` accepts."""
    if process == "onboarding":
        return policy.onboarding.milestones
    if process == "renewal":
        return RENEWAL_EVENTS
    if process == "sla":
        return SLA_EVENTS
    if process == "lead":
        return LEAD_EVENTS
    return ()


def event_data_problem(
    process: str | None, event_type: str, data: dict[str, Any], policy: Policy
) -> str | None:
    """Why ``data`` cannot go with ``event_type`` (the run would note and ignore it), or None.

    A signal cannot answer, so the API checks what the workflows check and
    refuses a bad event with a 422 instead of letting it be dropped later.
    """
    if process == "sla" and event_type == "status_changed":
        if data.get("status") not in (OPEN, PENDING_CUSTOMER):
            return (
                f"data.status must be {OPEN!r} or {PENDING_CUSTOMER!r}, got {data.get('status')!r}"
            )
    elif process == "sla" and event_type == "priority_changed":
        priorities = list(policy.sla.targets)
        if data.get("priority") not in priorities:
            return f"data.priority must be one of {priorities}, got {data.get('priority')!r}"
    elif process == "renewal":
        return _renewal_data_problem(event_type, data, policy)
    return None


def _renewal_data_problem(event_type: str, data: dict[str, Any], policy: Policy) -> str | None:
    if event_type == "renewal_date_changed" or RENEWAL_DATE in data:
        value = data.get(RENEWAL_DATE)
        try:
            parse_renewal_date(value)
        except (TypeError, ValueError):
            return f"data.{RENEWAL_DATE} must be an ISO date, got {value!r}"
    if event_type != "renewed":
        return None
    if problem := renewed_terms_problem(data):
        return problem
    plans = list(policy.onboarding.plans)
    if "plan" in data and data["plan"] not in plans:
        return f"data.plan must be one of {plans}, got {data['plan']!r}"
    return None


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
