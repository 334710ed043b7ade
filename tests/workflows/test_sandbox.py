"""The sandbox the tests run workflows in catches a workflow that reads the clock.

Production workers run workflows without the sandbox (``CRMFLOW_WORKER_SANDBOX``);
the tests run them in it, so the check must reach the workflow code itself,
not only code the sandbox is told to trust.
"""

from __future__ import annotations

import importlib
import uuid

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import Worker

from tests.conftest import eventually
from worker.main import WORKFLOWS
from worker.runners import SANDBOXED_RUNNER


async def test_a_workflow_reading_the_wall_clock_fails_its_task_in_the_tests_sandbox(
    client: Client,
) -> None:
    # Imported by name: with this workflow class in its view, mypy 1.x no longer infers
    # the handle types of get_workflow_handle_for(SomeWorkflow.run, ...) elsewhere.
    probe = importlib.import_module("tests.support.clock_probe").ReadsTheWallClock
    task_queue = f"sandbox-{uuid.uuid4()}"
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[probe],
        workflow_runner=SANDBOXED_RUNNER,
    ):
        handle = await client.start_workflow(
            probe.run, id=f"probe-{uuid.uuid4()}", task_queue=task_queue
        )

        async def task_failures() -> list[str]:
            history = await handle.fetch_history()
            return [
                event.workflow_task_failed_event_attributes.failure.message
                for event in history.events
                if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
            ]

        [failure, *_] = await eventually(task_failures, bool)
        await handle.terminate("probe done")
    assert "datetime.datetime.now" in failure


def test_every_workflow_module_is_loaded_inside_the_sandbox() -> None:
    trusted = SANDBOXED_RUNNER.restrictions.passthrough_modules
    checked = {w.__module__ for w in WORKFLOWS} | {
        "workflows.steps",
        "workflows.activity_steps",
        "workflows.publishing_steps",
        "workflows.retries",
    }
    for module in checked:
        parts = module.split(".")
        prefixes = {".".join(parts[: i + 1]) for i in range(len(parts))}
        assert not prefixes & trusted, f"{module} is passed through the sandbox unchecked"
