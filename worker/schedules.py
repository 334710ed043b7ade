"""What a worker keeps running besides the processes: the attention watch's Temporal
Schedule and each staff member's daily digest.

``keep_attention_schedule`` creates the schedule that starts
``AttentionWatchWorkflow`` every ``attention_check_minutes`` on the worker's
task queue, or brings an existing one up to date (interval, operator
email), or deletes it when the interval is 0. Several workers may call it
at once: the schedule's id is fixed per task queue, and a lost race to
create it is an update. Operators see it on the Web UI's Schedules page.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from crm.platform.settings import Settings
from crm.policy import Policy
from workflows.attention_types import ATTENTION_WATCH, AttentionWatch
from workflows.digest import DailyDigestWorkflow
from workflows.digest_types import DigestInput


def attention_schedule_id(task_queue: str) -> str:
    """The id of the attention watch's schedule for the workers of ``task_queue``."""
    return f"crmflow-attention-watch-{task_queue}"


def attention_schedule(settings: Settings) -> Schedule:
    """A look every ``attention_check_minutes``; a look still running skips the next one."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ATTENTION_WATCH,
            AttentionWatch(operator_email=settings.operator_email),
            id=f"attention-watch-{settings.task_queue}",
            task_queue=settings.task_queue,
            execution_timeout=timedelta(minutes=10),
        ),
        spec=ScheduleSpec(
            intervals=[
                ScheduleIntervalSpec(every=timedelta(minutes=settings.attention_check_minutes))
            ]
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def keep_attention_schedule(client: Client, settings: Settings) -> None:
    """Create, update or (at an interval of 0) delete the attention watch's schedule.

    Raises RPCError when Temporal refuses or cannot be reached.
    """
    schedule_id = attention_schedule_id(settings.task_queue)
    handle = client.get_schedule_handle(schedule_id)
    if settings.attention_check_minutes == 0:
        try:
            await handle.delete()
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
        return
    wanted = attention_schedule(settings)
    try:
        await client.create_schedule(schedule_id, wanted)
    except ScheduleAlreadyRunningError:

        def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=wanted)

        await handle.update(replace)


def digest_id(staff_id: str, task_queue: str) -> str:
    """The id of ``staff_id``'s daily digest run for the workers of ``task_queue``."""
    return f"digest-{staff_id}-{task_queue}"


async def keep_daily_digests(client: Client, settings: Settings, policy: Policy) -> None:
    """Start the daily digest of every staff member of ``policy`` whose digest is not
    running yet, at ``daily_digest_at`` in their zone (a running one learns a changed zone
    each morning); none when ``daily_digest_at`` is None. Raises RPCError when Temporal
    refuses or cannot be reached."""
    if settings.daily_digest_at is None:
        return
    for member in policy.staff:
        await client.start_workflow(
            DailyDigestWorkflow.run,
            DigestInput(member.id, member.timezone, settings.daily_digest_at),
            id=digest_id(member.id, settings.task_queue),
            task_queue=settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
