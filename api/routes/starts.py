"""``POST /v1/onboardings``, ``/v1/tickets``, ``/v1/renewals``, ``/v1/leads``: start a process.

One route per registered process with a ``start_path``, its body the
process's request model built from the policy (so plans, priorities and tiers
are enums in the OpenAPI document). The module keeps evaluated annotations:
FastAPI reads each handler's body type from the model made for it.
"""

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from fastapi import APIRouter, Response, status
from pydantic import BaseModel

from api.auth import Starter
from api.deps import ContextDep
from api.metrics import count_start
from api.problems import Problem, invalid_input
from crm.platform.logs import bind_process
from crm.policy import Policy
from processes import PROCESSES
from processes.registry import InvalidStart, ProcessDescriptor, StartContext
from processes.starting import ProcessIdTaken, ProcessStarted, start_process


def start_router(policy: Policy) -> APIRouter:
    """The start routes of every process the API starts, for ``policy``."""
    router = APIRouter()
    for process in PROCESSES:
        if process.start_path is None or process.request_model is None:
            continue
        router.add_api_route(
            process.start_path,
            _start_endpoint(process, process.request_model(policy)),
            methods=["POST"],
            response_model=ProcessStarted,
            status_code=status.HTTP_201_CREATED,
            responses={200: {"model": ProcessStarted, "description": "The run for the key exists"}},
            tags=[process.start_path.rsplit("/", 1)[-1]],
            summary=f"Start a {process.title.lower()}",
            description=f"Start a {process.title.lower()} (`{process.name}-{{business key}}`): "
            "201 with a new run, 200 with the existing one. Needs the `service` role.",
            name=f"start_{process.name}",
        )
    return router


def _start_endpoint(
    process: ProcessDescriptor, model: type[BaseModel]
) -> Callable[..., Awaitable[ProcessStarted]]:
    build = process.build
    assert build is not None, f"{process.name} has a start path but no build"

    async def start(
        body: model,  # type: ignore[valid-type]
        response: Response,
        context: ContextDep,
        principal: Starter,
    ) -> ProcessStarted:
        start_context = StartContext(
            policy=context.policy,
            database=context.database,
            principal=principal,
            now=datetime.now(UTC),
        )
        try:
            start = await build(body, start_context)
        except InvalidStart as err:
            raise invalid_input(err.field, err.message) from None
        try:
            started, created = await start_process(
                await context.temporal.client(),
                process,
                start,
                task_queue=context.settings.task_queue,
                tenant=principal.tenant,
            )
        except ProcessIdTaken as err:
            raise Problem(409, "process-id-taken", "Process id taken", str(err)) from err
        bind_process(started.process_id, started.run_id)
        count_start(process.name, created)
        if not created:
            response.status_code = status.HTTP_200_OK
        return started

    return start
