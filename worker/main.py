"""The crmflow worker: every process workflow and the activities they call.

Run it with ``crmflow worker``; scale out by running more of them on the same
task queue. It stops on SIGINT or SIGTERM after letting running activities
finish (``CRMFLOW_WORKER_GRACEFUL_SHUTDOWN_SECONDS``). With a deployment name
and build id it polls as that version of the deployment (Worker Versioning,
``crm.platform.deployments``) and can stop by itself once its version has drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pkgutil
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.client import Client
from temporalio.common import VersioningBehavior
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError
from temporalio.worker import (
    UnsandboxedWorkflowRunner,
    Worker,
    WorkerDeploymentConfig,
    WorkflowInstance,
    WorkflowInstanceDetails,
    WorkflowRunner,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import workflows
from activities.assignment import AssignmentActivities
from activities.attention import AttentionActivities
from activities.digest import DigestActivities
from activities.email import EmailActivities
from activities.enrichment import EnrichmentActivities
from activities.http_calls import HttpCallActivities
from activities.leads import LeadActivities
from activities.mailer import SmtpMailer
from activities.outbound import Outbound
from activities.process_outcomes import OutcomeActivities
from activities.process_starts import ProcessStartActivities
from activities.records import RecordActivities
from activities.sla import SlaActivities
from activities.tasks import TaskActivities
from activities.usage import UsageActivities
from activities.webhook_delivery import WebhookActivities
from crm.platform.deployments import RolloutError, version_state, worker_version
from crm.platform.dispatch import wake_endpoints
from crm.platform.logs import configure_logging
from crm.platform.settings import Settings, get_settings
from crm.platform.temporal import TemporalUnavailable, connect
from crm.policy import Policy, load_policy
from crm.store.db import Database
from crm.store.webhook_deliveries import endpoints_with_pending
from processes import workflows as registered_workflows
from worker.health import serving_probes
from worker.schedules import keep_attention_schedule, keep_daily_digests

log = logging.getLogger("crmflow.worker")

WORKFLOWS: Sequence[type] = registered_workflows()


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


@dataclass
class BuiltActivities:
    """The activity callables the worker registers, and the connections they hold."""

    functions: list[Callable[..., Any]]
    mailer: SmtpMailer
    enrichment: EnrichmentActivities

    async def aclose(self) -> None:
        """Close the SMTP sessions and HTTP connections the activities keep open."""
        await self.mailer.aclose()
        await self.enrichment.aclose()


def build_activities(settings: Settings, policy: Policy, database: Database) -> BuiltActivities:
    """The activities the worker registers, wired to their dependencies."""
    records = RecordActivities(database)
    tasks = TaskActivities(database)
    assignment = AssignmentActivities(database, policy)
    mailer = SmtpMailer(
        settings.smtp_host,
        settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password,
        starttls=settings.smtp_starttls,
        timeout_seconds=settings.smtp_timeout_seconds,
    )
    email = EmailActivities(
        database,
        mailer,
        sender=settings.mail_from,
        layout=policy.email,
        public_url=settings.public_url,
        link_secret=settings.email_link_secret,
    )
    enrichment = EnrichmentActivities(
        settings.enrichment_url,
        api_key=settings.enrichment_api_key,
        timeout_seconds=settings.enrichment_timeout_seconds,
        max_connections=settings.worker_max_concurrent_activities,
    )
    activities: list[Callable[..., Any]] = [
        records.record_step,
        records.upsert_customer,
        tasks.create_task,
        tasks.close_tasks,
        assignment.assign_owner,
        assignment.release_assignment,
        email.send_email,
        enrichment.enrich_company,
        UsageActivities(database).analyse_usage,
    ]
    sla = SlaActivities(database, policy)
    activities += [sla.look_up_staff, sla.notify_staff, sla.record_sla_outcome]
    leads = LeadActivities(database)
    activities += [leads.save_lead, leads.add_to_marketing_list]
    activities.append(OutcomeActivities(database, policy, settings.task_queue).offer_outcome)
    outbound = Outbound(
        allowed_hosts=settings.outbound_allowed_hosts,
        timeout_seconds=settings.outbound_timeout_seconds,
    )
    webhooks = WebhookActivities(
        database,
        settings.secret_keys,
        outbound,
        operator_email=settings.operator_email,
    )
    activities += [webhooks.deliver_due, webhooks.emit_milestone]
    activities.append(ProcessStartActivities(database, policy, settings.task_queue).start_process)
    http_calls = HttpCallActivities(
        settings.automation_http_secret,
        allowed_hosts=settings.outbound_allowed_hosts,
        timeout_seconds=settings.outbound_timeout_seconds,
    )
    activities.append(http_calls.call_http)
    activities.append(AttentionActivities(database, settings).check_attention)
    activities.append(DigestActivities(database, policy, settings.daily_digest_at).gather_digest)
    return BuiltActivities(activities, mailer, enrichment)


@asynccontextmanager
async def running_worker(
    client: Client, settings: Settings, policy: Policy, database: Database
) -> AsyncIterator[Worker]:
    """A worker polling ``settings.task_queue`` for as long as the context is open."""
    built = build_activities(settings, policy, database)
    version = worker_version(settings)
    worker = Worker(
        client,
        task_queue=settings.task_queue,
        workflows=list(WORKFLOWS),
        activities=built.functions,
        max_concurrent_activities=settings.worker_max_concurrent_activities,
        max_cached_workflows=settings.worker_max_cached_workflows,
        workflow_runner=workflow_runner(settings),
        graceful_shutdown_timeout=timedelta(seconds=settings.worker_graceful_shutdown_seconds),
        # Each process declares its versioning behaviour in its @workflow.defn; one that
        # does not is pinned: its runs finish on the code they started on.
        deployment_config=WorkerDeploymentConfig(
            version=version,
            use_worker_versioning=True,
            default_versioning_behavior=VersioningBehavior.PINNED,
        )
        if version
        else None,
    )
    try:
        async with worker:
            yield worker
    finally:
        await built.aclose()


async def run_worker(settings: Settings) -> None:
    """Connect, create the schema if needed, and poll until SIGINT or SIGTERM."""
    policy = load_policy(settings.policy_file)
    database = Database.from_url(settings.database_url)
    await database.create_tables()
    client = await connect(settings, _runtime(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    version = worker_version(settings)
    try:
        async with contextlib.AsyncExitStack() as serving:
            await serving.enter_async_context(running_worker(client, settings, policy, database))
            if settings.worker_health_address:
                await serving.enter_async_context(
                    serving_probes(settings.worker_health_address, client, database)
                )
            log.info(
                "worker polling %s on %s/%s, version %s, workflows %s",
                settings.task_queue,
                settings.temporal_address,
                settings.temporal_namespace,
                f"{version.deployment_name}:{version.build_id}" if version else "unversioned",
                "in the sandbox" if settings.worker_sandbox else "without the sandbox",
            )
            if version and settings.worker_exit_when_drained:
                watch = asyncio.create_task(
                    _stop_when_drained(client, settings, stop), name="drain-watch"
                )
                serving.callback(watch.cancel)
            waiting = await endpoints_with_pending(database)
            try:  # deliveries whose wake was lost (Temporal was away) are taken now
                await wake_endpoints(client, settings.task_queue, waiting)
            except TemporalUnavailable as err:
                log.warning("cannot wake %d webhook endpoints: %s", len(waiting), err)
            try:
                await keep_attention_schedule(client, settings)
                await keep_daily_digests(client, settings, policy)
            except RPCError as err:
                log.warning("cannot keep the attention watch or the daily digests: %s", err)
            await stop.wait()
            log.info("worker stopping")
    finally:
        await database.dispose()


async def _stop_when_drained(client: Client, settings: Settings, stop: asyncio.Event) -> None:
    """Set ``stop`` once this worker's version has drained; checks every
    ``CRMFLOW_WORKER_DRAIN_CHECK_SECONDS`` and logs (never raises) when a check fails."""
    version = worker_version(settings)
    assert version is not None
    while not stop.is_set():
        await asyncio.sleep(settings.worker_drain_check_seconds)
        try:
            state = await version_state(client, version)
        except RolloutError as err:
            log.warning("cannot tell whether this version has drained: %s", err)
            continue
        if state.drained:
            log.info("version %s has drained; the worker stops", state.describe())
            stop.set()


def _runtime(settings: Settings) -> Runtime | None:
    """A runtime serving the SDK's metrics for Prometheus, if an address is set."""
    if not settings.worker_metrics_address:
        return None
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=settings.worker_metrics_address,
                counters_total_suffix=True,
                durations_as_seconds=True,
            )
        )
    )


def main() -> None:
    """Entry point of ``crmflow worker``."""
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    asyncio.run(run_worker(settings))
