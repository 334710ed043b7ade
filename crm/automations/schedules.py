"""Automations on a schedule: one Temporal Schedule per automation, in the Web UI's Schedules.

An automation whose trigger is a ``schedule`` (a cron expression in a time
zone) enrols no records from events: at each instant of the cron its
schedule starts one run, with the record ``{}`` and ``now`` the instant it
fires. The schedule follows the automation's state: created or updated with
the active version when it is activated, paused with it, deleted when it is
archived (or when the version activated has no schedule). A run still going
when the next instant comes makes the schedule skip that instant, so there
is one run at a time, like a record's runs.

Each change puts the schedule in the state the automation has, whatever it
had, so a change whose call to Temporal failed is made good by making it
again.
"""

from __future__ import annotations

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from crm.automations.enrolment import AUTOMATION_WORKFLOW, EnrollingVersion, unavailable

#: The record id of a scheduled run; Temporal adds the instant to its workflow id.
SCHEDULED_RECORD = "scheduled"


def schedule_id(automation_id: str, tenant: str | None) -> str:
    """The id of the automation's schedule: ``automation-{id}[@tenant]``."""
    return f"automation-{automation_id}@{tenant}" if tenant else f"automation-{automation_id}"


async def follow_state(
    client: Client,
    tenant: str | None,
    automation_id: str,
    state: str,
    enrolling: EnrollingVersion | None,
    *,
    task_queue: str,
) -> None:
    """Put the automation's schedule in line with its ``state`` and ``enrolling`` version.

    Raises TemporalUnavailable when Temporal cannot be reached.
    """
    handle = client.get_schedule_handle(schedule_id(automation_id, tenant))
    trigger = enrolling.definition.trigger if enrolling is not None else None
    if trigger is None or trigger.schedule is None or state == "archived":
        try:
            await handle.delete()
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise unavailable(err) from err
        return
    assert enrolling is not None
    schedule = _schedule(enrolling, paused=state != "active", task_queue=task_queue)
    try:
        await client.create_schedule(handle.id, schedule, memo=enrolling.memo())
    except ScheduleAlreadyRunningError:

        def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        try:
            await handle.update(replace)
        except RPCError as err:
            raise unavailable(err) from err
    except RPCError as err:
        raise unavailable(err) from err


def _schedule(enrolling: EnrollingVersion, *, paused: bool, task_queue: str) -> Schedule:
    definition = enrolling.definition
    timing = definition.trigger.schedule
    assert timing is not None
    return Schedule(
        action=ScheduleActionStartWorkflow(
            AUTOMATION_WORKFLOW,
            enrolling.run_input(SCHEDULED_RECORD, {}, event=None, now=None),
            id=enrolling.run_id(SCHEDULED_RECORD),
            task_queue=task_queue,
            typed_search_attributes=enrolling.search_attributes(SCHEDULED_RECORD),
            static_summary=f"{definition.name}: {timing.describe()}",
            memo=enrolling.memo(),
        ),
        spec=ScheduleSpec(cron_expressions=[timing.cron], time_zone_name=timing.timezone),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(
            paused=paused,
            note=f"version {enrolling.version}, {'paused' if paused else 'active'}",
        ),
    )
