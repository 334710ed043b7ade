"""The activity of an automation's ``start`` step: start a built-in process.

The run has evaluated the step's expressions; this validates the values as
the process's request body (the same model as its ``POST /v1/...`` route),
builds the workflow's input and starts it under the run's tenant. The
process id is the body's business key, so a retry, or a second run asking
for the same key, finds the process the first start began.
"""

from __future__ import annotations

from pydantic import BaseModel, ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from crm.platform.principals import Principal
from crm.platform.temporal import TemporalUnavailable
from crm.policy import Policy
from crm.store.db import Database
from processes import process_named
from processes.registry import InvalidStart, ProcessDescriptor, StartContext
from processes.starting import ProcessIdTaken, start_process
from workflows.automation_types import START_PROCESS, ProcessStartRequest, ProcessStartResult


class ProcessStartActivities:
    """Starts the processes automations ask for, on ``task_queue``, as the run's tenant."""

    def __init__(self, database: Database, policy: Policy, task_queue: str) -> None:
        self._database = database
        self._policy = policy
        self._task_queue = task_queue
        self._models: dict[str, type[BaseModel]] = {}

    @activity.defn(name=START_PROCESS)
    async def start_process(self, request: ProcessStartRequest) -> ProcessStartResult:
        """Start ``request.process`` with ``request.fields``, or find the run of its key.

        Raises a non-retryable ApplicationError of type ``InvalidStart`` for a
        process that cannot be started this way or a body its request model,
        the policy or the CRM records refuse (naming the field), and of type
        ``ProcessIdTaken`` when the id is another tenant's; a retryable one
        while Temporal cannot be reached.
        """
        process, body = request_body(request, self._policy, self._models)
        assert process.build is not None
        context = StartContext(
            policy=self._policy,
            database=self._database,
            principal=Principal(
                id=f"automation:{request.requested_by}",
                roles=frozenset({"service"}),
                tenant=request.tenant,
            ),
            now=request.requested_at,
        )
        try:
            start = await process.build(body, context)
        except InvalidStart as err:
            raise _invalid(f"{process.name}: {err.field}: {err.message}") from None
        try:
            started, created = await start_process(
                activity.client(),
                process,
                start,
                task_queue=self._task_queue,
                tenant=request.tenant,
            )
        except ProcessIdTaken as err:
            raise ApplicationError(str(err), type="ProcessIdTaken", non_retryable=True) from None
        except TemporalUnavailable as err:
            raise ApplicationError(f"Temporal is unavailable: {err}", type="Unavailable") from err
        return ProcessStartResult(started.process_id, started.run_id, created)


def request_body(
    request: ProcessStartRequest, policy: Policy, models: dict[str, type[BaseModel]]
) -> tuple[ProcessDescriptor, BaseModel]:
    """The process ``request`` names and its fields as that process's request body.

    ``models`` caches the request models made from ``policy``. Raises a
    non-retryable ApplicationError of type ``InvalidStart`` for a process an
    automation cannot start, or fields its request model refuses.
    """
    process = process_named(request.process)
    if process is None or process.build is None or process.request_model is None:
        raise _invalid(f"{request.process!r} is not a process an automation can start")
    if process.name not in models:
        models[process.name] = process.request_model(policy)
    try:
        return process, models[process.name].model_validate(request.fields)
    except ValidationError as err:
        raise _invalid(f"{process.name}: {_problems(err)}") from None


def _invalid(message: str) -> ApplicationError:
    return ApplicationError(message, type="InvalidStart", non_retryable=True)


def _problems(err: ValidationError) -> str:
    """The problems pydantic found, each as ``field: message``."""
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or 'body'}: {problem['msg']}"
        for problem in err.errors()
    )
