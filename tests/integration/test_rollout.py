"""A rollout with Worker Versioning on the real dev server: v1 to v2 without breaking a run.

Two ``crmflow worker`` processes poll one task queue as versions ``v1`` and ``v2`` of a
deployment. Onboardings (pinned) and a renewal (auto-upgrade) start while v1 is current;
``crmflow rollout current v2`` then sends new runs to v2. The pinned onboardings finish on
v1, new onboardings run on v2, the renewal's next event is handled by v2 (through the same
``patched`` branches), and once the last pinned run has ended ``crmflow rollout drained v1``
says so and the v1 worker, started with ``CRMFLOW_WORKER_EXIT_WHEN_DRAINED``, exits by itself.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.testing import WorkflowEnvironment

from crm.platform.deployments import RolloutError, version_state
from devstack.mailsink import MailSink
from tests.conftest import eventually
from tests.integration.test_worker_crash import REPO, worker_process
from tests.support.onboarding import (
    onboarding_input,
    send_event,
    start_onboarding,
    wait_for_stage,
)
from tests.support.renewal import renewal_input
from worker.main import WORKFLOWS
from workflows.common import ProcessEvent
from workflows.renewal import RenewalWorkflow

LONG_LIVED = {"RenewalWorkflow", "AutomationWorkflow", "WebhookDispatch"}


def test_short_processes_are_pinned_and_long_lived_ones_auto_upgrade() -> None:
    behaviours = {
        w.__temporal_workflow_definition.name: w.__temporal_workflow_definition.versioning_behavior  # type: ignore[attr-defined]
        for w in WORKFLOWS
    }
    for name in LONG_LIVED:
        assert behaviours[name] == VersioningBehavior.AUTO_UPGRADE, name
    for name in ("OnboardingWorkflow", "TicketSlaWorkflow", "LeadWorkflow", "ApprovalWorkflow"):
        assert behaviours[name] == VersioningBehavior.PINNED, name


def rollout(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``crmflow rollout ARGS`` as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "devstack.cli", "rollout", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def build_id_of(handle: WorkflowHandle[Any, Any]) -> str:
    """The build id of the version that ran the run's last workflow task."""
    info = (await handle.describe()).raw_description.workflow_execution_info
    return info.versioning_info.deployment_version.build_id


async def polled(client: Client, version: WorkerDeploymentVersion) -> bool:
    try:
        await version_state(client, version)
    except RolloutError:
        return False
    return True


async def test_pinned_runs_finish_on_v1_new_runs_go_to_v2_and_v1_drains_and_exits(
    dev_env: WorkflowEnvironment,
    dev_client: Client,
    mail_sink: MailSink,
    enrichment_url: str,
    task_queue: str,
    database_url: str,
    tmp_path: Path,
) -> None:
    deployment = f"crmflow-{uuid.uuid4().hex[:8]}"
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("CRMFLOW_")},
        "CRMFLOW_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "CRMFLOW_TASK_QUEUE": task_queue,
        "CRMFLOW_DATABASE_URL": database_url,
        "CRMFLOW_SMTP_PORT": str(mail_sink.port),
        "CRMFLOW_ENRICHMENT_URL": enrichment_url,
        "CRMFLOW_WORKER_METRICS_ADDRESS": "",
        "CRMFLOW_WORKER_DEPLOYMENT_NAME": deployment,
    }
    v1, v2 = WorkerDeploymentVersion(deployment, "v1"), WorkerDeploymentVersion(deployment, "v2")
    v1_env = {
        **env,
        "CRMFLOW_WORKER_BUILD_ID": "v1",
        "CRMFLOW_WORKER_EXIT_WHEN_DRAINED": "true",
        "CRMFLOW_WORKER_DRAIN_CHECK_SECONDS": "0.5",
    }
    v2_env = {**env, "CRMFLOW_WORKER_BUILD_ID": "v2"}
    log_file = tmp_path / "workers.log"

    async with worker_process(v1_env, log_file) as v1_worker:
        await eventually(lambda: polled(dev_client, v1), bool, within=30)
        assert rollout(env, "current", "v1").returncode == 0
        old_customers = [onboarding_input() for _ in range(3)]
        old = [await start_onboarding(dev_client, task_queue, c) for c in old_customers]
        renewal = await dev_client.start_workflow(
            RenewalWorkflow.run,
            renewal_input(datetime.now(UTC) + timedelta(days=200)),
            id=f"renewal-rollout-{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
        )
        for handle in old:
            await wait_for_stage(handle, "awaiting_milestones", within=30)

        async with worker_process(v2_env, log_file):
            await eventually(lambda: polled(dev_client, v2), bool, within=30)
            made_current = rollout(env, "current", "v2")
            assert made_current.returncode == 0, made_current.stderr
            assert f"{deployment}:v2 current" in made_current.stdout
            not_yet = rollout(env, "drained", "v1")
            assert not_yet.returncode == 3
            assert f"{deployment}:v1 draining, 3 pinned runs open" in not_yet.stdout

            new = await start_onboarding(dev_client, task_queue, onboarding_input())
            await wait_for_stage(new, "awaiting_milestones", within=30)
            assert await build_id_of(new) == "v2"

            new_date = (datetime.now(UTC) + timedelta(days=230)).date().isoformat()
            await renewal.signal(
                RenewalWorkflow.event,
                ProcessEvent(type="renewal_date_changed", data={"renewal_date": new_date}),
            )
            await eventually(lambda: build_id_of(renewal), lambda b: b == "v2", within=20)

            for handle in old:
                await send_event(handle, "account_configured")
                await send_event(handle, "first_value")
            results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in old)), 60)
            assert [r.outcome for r in results] == ["activated"] * 3
            assert [await build_id_of(h) for h in old] == ["v1"] * 3

            await asyncio.wait_for(v1_worker.wait(), timeout=30)
            assert v1_worker.returncode == 0
            assert "has drained; the worker stops" in log_file.read_text()
            drained = rollout(env, "drained", "v1")
            assert drained.returncode == 0, drained.stdout
            assert "drained: its workers can stop" in drained.stdout
            status = rollout(env, "status").stdout
            assert f"{deployment}:v2 current, 1 pinned run open" in status

            renewal_state = await renewal.query(RenewalWorkflow.state)
            assert "renewal_date_changed" in [step.step for step in renewal_state.steps]
            await renewal.terminate("test over")
            await new.terminate("test over")
