"""Enrolling records in automations and sending their runs record events: the Temporal side.

A record's run of an automation has the business key
``automation-{id}-{object}-{record}[@tenant]`` as its workflow id, so a
record is in at most one run of an automation at a time, and a second start
finds the first. Whether a record whose run ended may enrol again is the
definition's ``enrollment``: never (the server refuses the id again), or
again, optionally only once ``after`` has passed since the last run closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from crm.domain.automation import AutomationDefinition
from crm.domain.calendar import CalendarSpec
from crm.platform.temporal import TemporalUnavailable
from workflows.automation_types import AutomationInput, RecordEvent, automation_run_id
from workflows.common import AUTOMATION_ID, AUTOMATION_VERSION, PROCESS, RECORD_ID, STAGE, TENANT

#: The workflow type of automation runs (``workflows.automation.AutomationWorkflow``).
AUTOMATION_WORKFLOW = "AutomationWorkflow"

#: Why a record was not enrolled: it has a run going, its run ended and it may not
#: enrol again (or not yet), or the run id is another tenant's.
NotEnrolled = Literal["running", "ended", "too-soon", "id-taken"]


@dataclass(frozen=True)
class EnrollingVersion:
    """The version of a tenant's automation that enrols records, with its business calendar."""

    tenant: str | None
    automation_id: str
    version: int
    definition: AutomationDefinition
    calendar: CalendarSpec

    def run_id(self, record_id: str) -> str:
        """The workflow id of ``record_id``'s run of this automation."""
        return automation_run_id(self.automation_id, self.definition.object, record_id, self.tenant)

    def run_input(
        self,
        record_id: str,
        record: dict[str, Any],
        *,
        event: RecordEvent | None,
        now: datetime | None,
    ) -> AutomationInput:
        """The input of ``record_id``'s run, enrolled by ``event`` (None: by hand or a
        schedule) at ``now``."""
        return AutomationInput(
            automation_id=self.automation_id,
            version=self.version,
            definition=self.definition,
            calendar=self.calendar,
            record_id=record_id,
            record=record,
            event=event,
            enrolled_at=now,
        )

    def search_attributes(self, record_id: str) -> TypedSearchAttributes:
        """What makes ``record_id``'s run findable: ``CrmProcess='automation'``, the
        automation, its version, the record, the first ``CrmStage`` and a tenant's
        ``CrmTenant``."""
        return TypedSearchAttributes(
            [
                SearchAttributePair(PROCESS, "automation"),
                SearchAttributePair(AUTOMATION_ID, self.automation_id),
                SearchAttributePair(AUTOMATION_VERSION, str(self.version)),
                SearchAttributePair(RECORD_ID, record_id),
                SearchAttributePair(STAGE, "enrolled"),
                *([SearchAttributePair(TENANT, self.tenant)] if self.tenant else []),
            ]
        )

    def summary(self, record_id: str) -> str:
        return f"{self.definition.name}: {self.definition.object} {record_id}"

    def memo(self) -> dict[str, str] | None:
        """The run's memo: the tenant whose run it is, which alone may see it."""
        return {"tenant": self.tenant} if self.tenant else None


@dataclass(frozen=True)
class EnrollOutcome:
    """The run of a record: started by this call (``skipped`` None), or why not."""

    run_id: str
    skipped: NotEnrolled | None = None


async def enroll(
    client: Client,
    enrolling: EnrollingVersion,
    record_id: str,
    record: dict[str, Any],
    *,
    event: RecordEvent | None,
    task_queue: str,
    now: datetime,
) -> EnrollOutcome:
    """Start ``record_id``'s run of ``enrolling``, unless the record may not enrol now.

    ``event`` is the record event that enrolled it (None: enrolled by hand).
    Raises TemporalUnavailable when Temporal cannot be reached.
    """
    run_id = enrolling.run_id(record_id)
    rule = enrolling.definition.enrollment
    if rule.reenroll and rule.after is not None:
        latest = await _latest_run(client, run_id)
        if latest is not None and latest.status == WorkflowExecutionStatus.RUNNING:
            return EnrollOutcome(run_id, "running")
        closed = latest.close_time if latest is not None else None
        if closed is not None and now - closed < rule.after.calendar_length():
            return EnrollOutcome(run_id, "too-soon")
    try:
        await client.start_workflow(
            AUTOMATION_WORKFLOW,
            enrolling.run_input(record_id, record, event=event, now=now),
            id=run_id,
            task_queue=task_queue,
            id_reuse_policy=(
                WorkflowIDReusePolicy.ALLOW_DUPLICATE
                if rule.reenroll
                else WorkflowIDReusePolicy.REJECT_DUPLICATE
            ),
            search_attributes=enrolling.search_attributes(record_id),
            static_summary=enrolling.summary(record_id),
            memo=enrolling.memo(),
        )
    except WorkflowAlreadyStartedError:
        existing = await _latest_run(client, run_id)
        if existing is None:  # ended and gone from retention between the two calls
            return EnrollOutcome(run_id, "ended")
        if await existing.memo_value("tenant", None) != enrolling.tenant:
            return EnrollOutcome(run_id, "id-taken")
        running = existing.status == WorkflowExecutionStatus.RUNNING
        return EnrollOutcome(run_id, "running" if running else "ended")
    except RPCError as err:
        raise unavailable(err) from err
    return EnrollOutcome(run_id)


async def deliver(client: Client, run_id: str, event: RecordEvent) -> bool:
    """Send ``event`` to the running run ``run_id``; False when no such run is going.

    The run takes each event id once, so sending an event again is harmless.
    Raises TemporalUnavailable when Temporal cannot be reached.
    """
    try:
        await client.get_workflow_handle(run_id).signal("record_event", event)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise unavailable(err) from err
    return True


@dataclass(frozen=True)
class GoingRun:
    """A run going on a record: its workflow id, the execution, and the version it runs."""

    workflow_id: str
    execution_id: str
    version: int


async def going_run(
    client: Client, run_id: str, automation_id: str, record_id: str, tenant: str | None
) -> GoingRun | None:
    """The run ``run_id`` if it is running, not asked to end already, and is this tenant's
    run of ``automation_id`` on ``record_id`` (a run id that another automation's object
    and record spell the same does not count); None otherwise. Raises TemporalUnavailable
    when Temporal cannot be reached."""
    latest = await _latest_run(client, run_id)
    if latest is None or latest.status != WorkflowExecutionStatus.RUNNING:
        return None
    if latest.raw_description.workflow_extended_info.cancel_requested:
        return None  # ending already (a deletion before this one)
    attributes = latest.typed_search_attributes
    version = attributes.get(AUTOMATION_VERSION) or ""
    if (
        attributes.get(AUTOMATION_ID) != automation_id
        or attributes.get(RECORD_ID) != record_id
        or not version.isdigit()
        or await latest.memo_value("tenant", None) != tenant
    ):
        return None
    return GoingRun(run_id, latest.run_id, int(version))


async def end_run(client: Client, run: GoingRun, reason: str) -> None:
    """Cancel ``run`` (that execution, not a later one under its id): it ends as
    ``cancelled``, ``reason`` its outcome's. Raises TemporalUnavailable when Temporal
    cannot be reached."""
    try:
        handle = client.get_workflow_handle(run.workflow_id, run_id=run.execution_id)
        await handle.cancel(reason=reason)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:  # gone meanwhile: nothing to end
            raise unavailable(err) from err


async def _latest_run(client: Client, run_id: str) -> WorkflowExecutionDescription | None:
    try:
        return await client.get_workflow_handle(run_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise unavailable(err) from err


def unavailable(err: RPCError) -> TemporalUnavailable:
    """The error for a Temporal call that failed."""
    return TemporalUnavailable(err.message)
