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
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.common import VersioningBehavior
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError
from temporalio.worker import (
    Worker,
    WorkerDeploymentConfig,
)

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
from worker.runners import workflow_runner
from worker.schedules import keep_attention_schedule, keep_daily_digests

log = logging.getLogger("crmflow.worker")

WORKFLOWS: Sequence[type] = registered_workflows()


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
        tasks.task_status,
        assignment.assign_owner,
        assignment.release_assignment,
        email.send_email,
        enrichment.enrich_company,
        UsageActivities(database).analyse_usage,
    ]
    sla = SlaActivities(database, policy)
    activities += [sla.look_up_staff, sla.notify_staff, sla.record_level, sla.record_sla_outcome]
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
