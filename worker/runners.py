"""How the worker runs workflow code: in the SDK's sandbox or as plain code, and, on a
worker without a deployment version, without the versioning behaviour workflows declare.
"""

from __future__ import annotations

import pkgutil
from collections.abc import Sequence
from typing import Any

from temporalio import workflow
from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.common import VersioningBehavior
from temporalio.worker import (
    UnsandboxedWorkflowRunner,
    WorkflowInstance,
    WorkflowInstanceDetails,
    WorkflowRunner,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import workflows
from crm.platform.deployments import worker_version
from crm.platform.settings import Settings

#: The sandbox the workflow tests and history replays run workflows in (and the worker, with
#: ``CRMFLOW_WORKER_SANDBOX``).
#: Workflow code (``workflows.onboarding``, ``workflows.steps``, ...) is loaded inside it, so
#: a workflow that reads the clock, draws a random number or does I/O fails its workflow task.
#: Passed through, loaded once outside it and not checked by it: the data types workflows
#: exchange (``workflows.common``, ``workflows.contracts`` and every ``workflows.*_types``),
#: and ``crm.domain``, the pure logic they call (its calendar reads time-zone data, its
#: expressions run in ``cel``, a compiled CEL evaluator); ruff
#: checks those (``tests/unit/test_workflow_lint.py``).
PASSED_THROUGH_SANDBOX: tuple[str, ...] = (
    "cel",
    "crm.domain",
    "workflows.common",
    "workflows.contracts",
    *(
        f"workflows.{module.name}"
        for module in pkgutil.iter_modules(workflows.__path__)
        if module.name.endswith("_types")
    ),
)
SANDBOXED_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSED_THROUGH_SANDBOX)
)


class UnversionedWorkflowRunner(WorkflowRunner):
    """Runs workflows with ``runner`` but reports no versioning behaviour to the server.

    Each workflow declares its behaviour (pinned, auto-upgrade) for versioned workers; the
    SDK sends it with every workflow task, and the server refuses a task that carries one
    from a worker without a deployment version ("versioning behavior cannot be specified
    without deployment options"). An unversioned worker drops it, so the same workflow
    classes run on both kinds of worker.
    """

    def __init__(self, runner: WorkflowRunner) -> None:
        self.runner = runner

    def prepare_workflow(self, defn: workflow._Definition) -> None:
        self.runner.prepare_workflow(defn)

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return _WithoutVersioningBehavior(self.runner.create_instance(det))

    def set_worker_level_failure_exception_types(
        self, types: Sequence[type[BaseException]]
    ) -> None:
        self.runner.set_worker_level_failure_exception_types(types)


class _WithoutVersioningBehavior(WorkflowInstance):
    def __init__(self, instance: WorkflowInstance) -> None:
        self._instance = instance

    def activate(self, act: WorkflowActivation) -> WorkflowActivationCompletion:
        completion = self._instance.activate(act)
        if completion.HasField("successful"):
            completion.successful.versioning_behavior = VersioningBehavior.UNSPECIFIED.value
        return completion

    def get_serialization_context(self, command_info: Any) -> Any:
        return self._instance.get_serialization_context(command_info)

    def get_external_store_context(self, command_info: Any) -> Any:
        return self._instance.get_external_store_context(command_info)

    def get_info(self) -> workflow.Info:
        return self._instance.get_info()


def workflow_runner(settings: Settings) -> WorkflowRunner:
    """The sandbox when ``CRMFLOW_WORKER_SANDBOX`` is set, else workflows run as plain code.

    The sandbox checks each call a workflow makes while it runs; that checking
    and its per-payload bookkeeping took 29% of a busy worker's time
    (bench/RESULTS.md).
    What it would catch is caught before code ships instead: ruff bans the
    clock, randomness and I/O in ``workflows/`` (``workflows/ruff.toml``), and
    the workflow tests and the replays of every recorded history run the
    workflow modules inside ``SANDBOXED_RUNNER``.
    """
    runner = SANDBOXED_RUNNER if settings.worker_sandbox else UnsandboxedWorkflowRunner()
    return runner if worker_version(settings) else UnversionedWorkflowRunner(runner)
