"""crm.domain.calendar works inside Temporal's workflow sandbox, zoneinfo included.

The workflow below builds a Europe/Stockholm calendar from a ``CalendarSpec``
that arrives through the JSON payload converter and computes a due time with
``add()``, with ``crm`` passed through the sandbox as ``workflows/`` modules
import it. (Re-imported inside the sandbox, zoneinfo objects become restricted
proxies that ``datetime.astimezone`` refuses, so passing through is required.)
Before the run the zoneinfo cache for the zone is cleared, so the tz database
file is really read.
"""

from __future__ import annotations

import os
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from temporalio import workflow
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from crm.domain.calendar import BusinessCalendar, CalendarSpec

TEST_SERVER = os.path.join(os.path.dirname(sys.executable), "temporal-test-server")
ZONE = "Europe/Stockholm"


@dataclass
class DueTimeRequest:
    calendar: CalendarSpec
    start: str
    business_hours: int


@workflow.defn
class DueTimeWorkflow:
    @workflow.run
    async def run(self, request: DueTimeRequest) -> str:
        calendar = BusinessCalendar.from_spec(request.calendar)
        start = datetime.fromisoformat(request.start)
        return calendar.add(start, timedelta(hours=request.business_hours)).isoformat()


async def _due_time_in_workflow(restrictions: SandboxRestrictions) -> str:
    ZoneInfo.clear_cache(only_keys=[ZONE])
    request = DueTimeRequest(
        calendar=CalendarSpec(timezone=ZONE, holidays=["2026-03-30"]),
        # Friday 16:30 CET, the weekend before the switch to summer time.
        start="2026-03-27T16:30:00+01:00",
        business_hours=8,
    )
    async with (
        await WorkflowEnvironment.start_time_skipping(test_server_existing_path=TEST_SERVER) as env,
        Worker(
            env.client,
            task_queue=f"calendar-sandbox-{uuid.uuid4()}",
            workflows=[DueTimeWorkflow],
            workflow_runner=SandboxedWorkflowRunner(restrictions=restrictions),
        ) as worker,
    ):
        return await env.client.execute_workflow(
            DueTimeWorkflow.run,
            request,
            id=f"calendar-sandbox-{uuid.uuid4()}",
            task_queue=worker.task_queue,
            execution_timeout=timedelta(seconds=30),
        )


# Half an hour on Friday, Monday is a holiday, 7.5 hours on Tuesday (CEST, UTC+2).
EXPECTED_DUE = "2026-03-31T14:30:00+00:00"


async def test_calendar_passed_through_the_sandbox_computes_due_time() -> None:
    restrictions = SandboxRestrictions.default.with_passthrough_modules("crm.domain")
    assert await _due_time_in_workflow(restrictions) == EXPECTED_DUE
