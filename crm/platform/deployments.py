"""Worker Versioning: the version a worker polls as, and rolling a new version out.

A worker started with ``CRMFLOW_WORKER_DEPLOYMENT_NAME`` and ``CRMFLOW_WORKER_BUILD_ID``
polls as that version of the deployment. Temporal sends new runs to the deployment's
current version (or a ramped share of them to the ramping one); a run of a ``PINNED``
workflow stays on the version it started on, an ``AUTO_UPGRADE`` run moves to the current
version at its next workflow task. ``crmflow rollout`` calls the functions here.

A version has drained when it is neither current nor ramping and no running workflow is
pinned to it; its workers can then stop. The server's own drainage status is refreshed
every few minutes, so the count of pinned runs is read from visibility instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.api.deployment.v1 import WorkerDeploymentVersion as VersionMessage
from temporalio.api.enums.v1 import WorkerDeploymentVersionStatus
from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest,
    DescribeWorkerDeploymentVersionRequest,
    SetWorkerDeploymentCurrentVersionRequest,
    SetWorkerDeploymentRampingVersionRequest,
)
from temporalio.client import Client
from temporalio.common import WorkerDeploymentVersion
from temporalio.service import RPCError

from crm.platform.settings import Settings

#: The deployment name ``crmflow rollout`` uses when ``CRMFLOW_WORKER_DEPLOYMENT_NAME`` is unset.
DEFAULT_DEPLOYMENT = "crmflow"

_STATUS_NAMES = {
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_INACTIVE: "inactive",
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_CURRENT: "current",
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_RAMPING: "ramping",
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINING: "draining",
    WorkerDeploymentVersionStatus.WORKER_DEPLOYMENT_VERSION_STATUS_DRAINED: "drained",
}


class RolloutError(Exception):
    """Temporal refused or could not answer a Worker Versioning call (unknown deployment or
    version, a version without pollers, the server unreachable); the message says which."""


def worker_version(settings: Settings) -> WorkerDeploymentVersion | None:
    """The version a worker polls as, or None for an unversioned worker; raises ValueError
    when a build id is set without a deployment name."""
    if settings.worker_build_id and not settings.worker_deployment_name:
        raise ValueError("CRMFLOW_WORKER_BUILD_ID needs CRMFLOW_WORKER_DEPLOYMENT_NAME")
    if settings.worker_deployment_name and settings.worker_build_id:
        return WorkerDeploymentVersion(settings.worker_deployment_name, settings.worker_build_id)
    return None


@dataclass(frozen=True)
class VersionState:
    """Where one version of a deployment stands, and how many runs still need it."""

    version: WorkerDeploymentVersion
    #: ``inactive`` (never current), ``current``, ``ramping``, ``draining`` or ``drained``.
    status: str
    ramp_percentage: float
    #: Running workflows pinned to this version, read from visibility.
    pinned_running: int

    @property
    def drained(self) -> bool:
        """It served runs once, serves no new ones and no running workflow is pinned to it."""
        return self.status in ("draining", "drained") and self.pinned_running == 0

    def describe(self) -> str:
        """One line for people: ``crmflow:v1 draining, 3 pinned runs open``."""
        ramp = f" {self.ramp_percentage:g}%" if self.status == "ramping" else ""
        runs = "run" if self.pinned_running == 1 else "runs"
        verdict = "; drained: its workers can stop" if self.drained else ""
        return (
            f"{_name(self.version)} {self.status}{ramp}, "
            f"{self.pinned_running} pinned {runs} open{verdict}"
        )


async def version_state(client: Client, version: WorkerDeploymentVersion) -> VersionState:
    """The state of ``version``; raises RolloutError when Temporal does not know it."""
    try:
        described = await client.workflow_service.describe_worker_deployment_version(
            DescribeWorkerDeploymentVersionRequest(
                namespace=client.namespace, deployment_version=_message(version)
            )
        )
        pinned = await client.count_workflows(
            f"TemporalWorkerDeploymentVersion = '{_name(version)}' "
            "AND TemporalWorkflowVersioningBehavior = 'Pinned' AND ExecutionStatus = 'Running'"
        )
    except RPCError as err:
        raise RolloutError(f"cannot describe {_name(version)}: {err.message}") from err
    info = described.worker_deployment_version_info
    return VersionState(
        version=version,
        status=_STATUS_NAMES.get(info.status, "unknown"),
        ramp_percentage=info.ramp_percentage,
        pinned_running=pinned.count,
    )


async def deployment_versions(client: Client, deployment_name: str) -> list[VersionState]:
    """Every version of ``deployment_name``, oldest first; raises RolloutError when the
    deployment is unknown (no versioned worker has polled yet)."""
    try:
        described = await client.workflow_service.describe_worker_deployment(
            DescribeWorkerDeploymentRequest(
                namespace=client.namespace, deployment_name=deployment_name
            )
        )
    except RPCError as err:
        raise RolloutError(f"cannot describe deployment {deployment_name}: {err.message}") from err
    summaries = sorted(
        described.worker_deployment_info.version_summaries,
        key=lambda summary: summary.create_time.ToNanoseconds(),
    )
    return [
        await version_state(
            client,
            WorkerDeploymentVersion(
                s.deployment_version.deployment_name, s.deployment_version.build_id
            ),
        )
        for s in summaries
    ]


async def ramp_version(client: Client, version: WorkerDeploymentVersion, percentage: float) -> None:
    """Send ``percentage`` of new runs (0 < p <= 100) to ``version``, the rest to the current
    one; 0 stops the ramp. Raises RolloutError when no worker of ``version`` has polled."""
    try:
        await client.workflow_service.set_worker_deployment_ramping_version(
            SetWorkerDeploymentRampingVersionRequest(
                namespace=client.namespace,
                deployment_name=version.deployment_name,
                build_id=version.build_id if percentage > 0 else "",
                percentage=percentage,
                identity="crmflow rollout",
            )
        )
    except RPCError as err:
        raise RolloutError(f"cannot ramp {_name(version)}: {err.message}") from err


async def make_current(client: Client, version: WorkerDeploymentVersion) -> None:
    """Send every new run (and every auto-upgrade run's next task) to ``version``; raises
    RolloutError when no worker of ``version`` has polled."""
    try:
        await client.workflow_service.set_worker_deployment_current_version(
            SetWorkerDeploymentCurrentVersionRequest(
                namespace=client.namespace,
                deployment_name=version.deployment_name,
                build_id=version.build_id,
                identity="crmflow rollout",
            )
        )
    except RPCError as err:
        raise RolloutError(f"cannot make {_name(version)} current: {err.message}") from err


def _message(version: WorkerDeploymentVersion) -> VersionMessage:
    return VersionMessage(deployment_name=version.deployment_name, build_id=version.build_id)


def _name(version: WorkerDeploymentVersion) -> str:
    return f"{version.deployment_name}:{version.build_id}"
