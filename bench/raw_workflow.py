"""The raw-SDK baseline: a workflow with as many no-op activities as onboarding's first phase.

Onboarding's first phase calls five activities (enrich, assign the CSM,
save the customer, create the kickoff task, send the welcome email); this
workflow calls five activities that do nothing and completes. Run its worker
with ``python -m bench.raw_workflow <address> <task queue> [unsandboxed]``: the
SDK's defaults, or with its workflows outside the sandbox as crmflow's worker
runs them.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner  # the SDK's default

STEPS = ("enrich", "assign", "save_customer", "create_task", "send_email")


@activity.defn(name="noop")
async def noop(step: str) -> str:
    return step


@workflow.defn
class RawFirstPhase:
    @workflow.run
    async def run(self, customer_id: str) -> list[str]:
        done = []
        for step in STEPS:
            done.append(
                await workflow.execute_activity(
                    "noop", step, start_to_close_timeout=timedelta(seconds=10), result_type=str
                )
            )
        return done


async def run_worker(address: str, task_queue: str, sandboxed: bool) -> None:
    client = await Client.connect(address)
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[RawFirstPhase],
        activities=[noop],
        workflow_runner=SandboxedWorkflowRunner() if sandboxed else UnsandboxedWorkflowRunner(),
    ):
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(run_worker(sys.argv[1], sys.argv[2], sandboxed=sys.argv[3:] != ["unsandboxed"]))
