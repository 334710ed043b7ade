"""Record the histories that CI replays against the current workflow code.

    .venv/bin/python -m tests.histories.record            # every scenario
    .venv/bin/python -m tests.histories.record onboarding-stalled

Each scenario runs a process to its end on the time-skipping test server with
the real activities (a temporary SQLite database, a local SMTP sink and the
local enrichment provider) and writes ``tests/histories/<scenario>.json``.
Re-record only for a deliberate change of behaviour that is rolled out with
``workflow.patched`` (see the README, "Changing a workflow safely"); the old
recordings must keep replaying until no run of the old code is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from crm.db import Database
from crm.enrichment_provider import create_provider_app
from crm.mailsink import MailSink
from crm.policy import Policy
from crm.settings import Settings
from tests.servers import run_asgi_server
from worker.main import running_worker
from workflows.common import SEARCH_ATTRIBUTES, ProcessEvent
from workflows.onboarding import OnboardingInput, OnboardingWorkflow

HISTORIES = Path(__file__).parent
TEST_SERVER = Path(sys.executable).parent / "temporal-test-server"

Scenario = Callable[[WorkflowEnvironment, str], Awaitable[Any]]


async def _start_onboarding(env: WorkflowEnvironment, task_queue: str, customer_id: str) -> Any:
    handle = await env.client.start_workflow(
        OnboardingWorkflow.run,
        OnboardingInput(
            customer_id=customer_id,
            company_name="Initech",
            contact_name="Peter Gibbons",
            contact_email="peter@initech-software.com",
            plan="growth",
            csm_pool="csm-smb",
        ),
        id=f"onboarding-{customer_id}",
        task_queue=task_queue,
    )
    await _until_stage(handle, "awaiting_milestones")
    return handle


async def _until_stage(handle: WorkflowHandle[Any, Any], stage: str) -> None:
    for _ in range(200):
        state = await handle.query(OnboardingWorkflow.state)
        if state.stage == stage:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{handle.id} never reached stage {stage}")


async def onboarding_activated(env: WorkflowEnvironment, task_queue: str) -> Any:
    handle = await _start_onboarding(env, task_queue, "rec-activated")
    await env.sleep(timedelta(days=4))
    await handle.signal(OnboardingWorkflow.event, ProcessEvent("account_configured"))
    await env.sleep(timedelta(days=1))
    await handle.signal(OnboardingWorkflow.event, ProcessEvent("first_value", {"feature": "x"}))
    await handle.result()
    return handle


async def onboarding_stalled(env: WorkflowEnvironment, task_queue: str) -> Any:
    handle = await _start_onboarding(env, task_queue, "rec-stalled")
    await handle.result()
    return handle


async def onboarding_cancelled(env: WorkflowEnvironment, task_queue: str) -> Any:
    handle = await _start_onboarding(env, task_queue, "rec-cancelled")
    await env.sleep(timedelta(days=8))
    await handle.cancel()
    with contextlib.suppress(WorkflowFailureError):  # the run ends cancelled
        await handle.result()
    return handle


SCENARIOS: dict[str, Scenario] = {
    "onboarding-activated": onboarding_activated,
    "onboarding-stalled": onboarding_stalled,
    "onboarding-cancelled": onboarding_cancelled,
}


async def record(names: list[str]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=str(TEST_SERVER)
        )
        try:
            await _register_search_attributes(env.client)
            with (
                MailSink(Path(scratch) / "mail") as sink,
                run_asgi_server(create_provider_app(rate_per_second=1000, burst=1000)) as url,
            ):
                settings = Settings(
                    task_queue=f"record-{uuid.uuid4()}",
                    database_url=f"sqlite+aiosqlite:///{scratch}/crm.db",
                    smtp_port=sink.port,
                    enrichment_url=url,
                    worker_graceful_shutdown_seconds=0,
                )
                database = Database.from_url(settings.database_url)
                await database.create_tables()
                async with running_worker(env.client, settings, Policy(), database):
                    for name in names:
                        handle = await SCENARIOS[name](env, settings.task_queue)
                        history = await handle.fetch_history()
                        (HISTORIES / f"{name}.json").write_text(history.to_json())
                        print(f"recorded {name}: {len(history.events)} events")
                await database.dispose()
        finally:
            await env.shutdown()


async def _register_search_attributes(client: Client) -> None:
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=client.namespace,
            search_attributes={
                key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in SEARCH_ATTRIBUTES
            },
        )
    )


def main() -> None:
    names = sys.argv[1:] or list(SCENARIOS)
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        sys.exit(f"unknown scenario(s) {unknown}; known: {list(SCENARIOS)}")
    asyncio.run(record(names))


if __name__ == "__main__":
    main()
