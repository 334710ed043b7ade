"""Starting a registered process on Temporal, for the API and for automations' ``start`` steps.

Workflow ids are business keys, so starting a process twice for the same key
finds the existing run instead of a second one, whether that run is still
going or has ended.
"""

from __future__ import annotations

from pydantic import BaseModel
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from crm.platform.temporal import TemporalUnavailable
from processes.registry import ProcessDescriptor, ProcessStart
from workflows.common import CUSTOMER_ID, PROCESS, STAGE, TENANT


class ProcessStarted(BaseModel):
    """The answer to a start: the process id (the business key) and its run."""

    process_id: str
    run_id: str
    status: str


class ProcessIdTaken(Exception):
    """The process id of a start belongs to another tenant's run, which stays hidden."""

    def __init__(self, process_id: str) -> None:
        super().__init__(
            f"{process_id!r} is the id of a process you cannot see; use another business key"
        )
        self.process_id = process_id


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

    Returns the process and True when this call started it. Raises
    ProcessIdTaken when the id belongs to another tenant's run (whose id, run
    and status stay hidden), TemporalUnavailable when Temporal cannot be reached.
    """
    if tenant is not None:
        earlier = await _tenant_run_by_unscoped_id(client, process, start.business_key, tenant)
        if earlier is not None:
            return _found(earlier), False
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
                    *([SearchAttributePair(TENANT, tenant)] if tenant else []),
                ]
            ),
            static_summary=start.summary,
            memo={"tenant": tenant} if tenant else None,
        )
    except WorkflowAlreadyStartedError as err:
        try:
            description = await client.get_workflow_handle(process_id, run_id=err.run_id).describe()
        except RPCError as rpc_error:
            raise TemporalUnavailable(rpc_error.message) from rpc_error
        if tenant is not None and await description.memo_value("tenant", None) != tenant:
            raise ProcessIdTaken(process_id) from err
        return _found(description), False
    except RPCError as err:
        raise TemporalUnavailable(err.message) from err
    assert handle.result_run_id is not None
    started = ProcessStarted(process_id=process_id, run_id=handle.result_run_id, status="running")
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
        raise TemporalUnavailable(err.message) from err
    if await description.memo_value("tenant", None) != tenant:
        return None
    return description


def _found(description: WorkflowExecutionDescription) -> ProcessStarted:
    return ProcessStarted(
        process_id=description.id,
        run_id=description.run_id,
        status=status_name(description.status),
    )
