"""What an automation would do with a sample record, found by running it.

``preview`` runs the production interpreter (``workflows.automation``) on a
time-skipping Temporal test server of its own, with activities that record
each effect (the email rendered and to whom, the task and its due time, the
process a ``start`` step would start with its request body, checked as the
process's API checks it) instead of performing it. The sample's record events
are delivered at their offsets from enrollment; the run goes on until it ends
or ``horizon`` has passed. The answer is the timeline: each step with its
instant in UTC and in the calendar's time zone, and how the run ended.

An ``approval`` step asks a stand-in of the approval process, which emails
and tasks nobody: it is approved at once, unless ``approvals`` gives the
step another outcome (``rejected`` at once, or ``expired``, after the
step's timeout). The timeline shows the request (``approval``: who, the
subject) and its outcome (``approved``, ``rejected``, ``expired``).

An ``http`` step calls nobody: the timeline shows the call (``http``: the
URL, the body, the names of the headers it would be signed with) and the
run goes on as if the endpoint answered 200.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.process_starts import request_body
from activities.sla import staff_contact
from activities.templates import EmailTemplates, TemplateError
from crm.automations.templates import UserTemplateError, render_task_texts
from crm.domain.automation import AutomationDefinition, Duration
from crm.domain.calendar import BusinessCalendar, CalendarError
from crm.platform.temporal import time_skipping_server
from crm.policy import Policy
from workflows.approval import ApprovalWorkflow
from workflows.approval_types import ApprovalInput, ApprovalResult
from workflows.automation import AutomationWorkflow
from workflows.automation_types import (
    CALL_HTTP,
    START_PROCESS,
    WEBHOOK_HEADERS,
    AutomationInput,
    AutomationResult,
    HttpCallRequest,
    HttpCallResult,
    ProcessStartRequest,
    ProcessStartResult,
    RecordEvent,
)
from workflows.contracts import (
    ASSIGN_OWNER,
    CLOSE_TASKS,
    CREATE_TASK,
    LOOK_UP_STAFF,
    RECORD_STEP,
    RELEASE_ASSIGNMENT,
    SEND_EMAIL,
    Assignment,
    AssignmentRequest,
    AuditRecord,
    CloseTasksRequest,
    EmailReceipt,
    EmailRequest,
    ReleaseRequest,
    StaffContact,
    StaffLookup,
    TaskRef,
    TaskRequest,
)
from workflows.webhook_types import EMIT_EVENT, MilestoneEmitted, MilestoneEvent

#: How far a preview looks ahead unless told otherwise.
DEFAULT_HORIZON = timedelta(days=90)
MAX_HORIZON = timedelta(days=800)

#: The outcomes a preview's approval may be given; the default is the first.
APPROVAL_OUTCOMES: tuple[str, ...] = ("approved", "rejected", "expired")

#: The stand-in approval's activity: the outcome the preview gives the step's approval.
_DECIDE_APPROVAL = "preview_decide_approval"


@dataclass
class SampleEvent:
    """A record event of the sample, ``after`` its offset from enrollment."""

    after: Duration
    type: str = "updated"
    record: dict[str, Any] = field(default_factory=dict)
    previous: dict[str, Any] = field(default_factory=dict)


class SampleEventError(ValueError):
    """Sample event ``index`` cannot be placed in time (an offset beyond the calendar)."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


@dataclass
class TimelineEntry:
    """One thing the run did: when (UTC and the calendar's local time), at which step."""

    at: datetime
    local_time: str
    step: str
    action: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Preview:
    """The timeline of a sample run and how it ended (``running`` at the horizon)."""

    outcome: str
    enrolled_at: datetime
    ended_at: datetime | None
    timeline: list[TimelineEntry]
    failure: str | None = None


@workflow.defn(name=ApprovalWorkflow.__name__)
class PreviewApproval:
    """The approval process as a preview has it: the outcome the preview gives the step,
    at once, or at the approver's timeout for ``expired``."""

    @workflow.run
    async def run(self, request: ApprovalInput) -> ApprovalResult:
        approver = request.chain[0]
        outcome: str = await workflow.execute_activity(
            _DECIDE_APPROVAL, request, result_type=str, start_to_close_timeout=timedelta(seconds=10)
        )
        if outcome == "expired":
            await workflow.sleep(timedelta(seconds=approver.timeout_seconds))
        return ApprovalResult(
            approval_id=workflow.info().workflow_id,
            outcome=outcome,
            decided_by=None if outcome == "expired" else approver.approver_id,
            on_behalf_of=None,
            decided_at=workflow.now(),
            comment="decided by the preview",
            step=0,
        )


class _Recorder:
    """Activities under the production names that record what they would do."""

    def __init__(self, policy: Policy, approvals: Mapping[str, str]) -> None:
        self._policy = policy
        self._approvals = approvals
        self._templates = EmailTemplates()
        self._request_models: dict[str, type[BaseModel]] = {}
        self.effects: list[TimelineEntry] = []
        self._tasks = 0

    @activity.defn(name=SEND_EMAIL)
    async def send_email(self, request: EmailRequest) -> EmailReceipt:
        try:
            rendered = self._templates.render_user(
                request.subject or "", request.body or "", request.context
            )
        except TemplateError as err:
            raise ApplicationError(str(err), type="InvalidInput", non_retryable=True) from err
        self._record(
            request.context,
            request.key,
            "email",
            to=request.to,
            subject=rendered.subject,
            body=rendered.body,
        )
        return EmailReceipt(request.key, f"<{request.key}@preview>", rendered.subject, sent=True)

    @activity.defn(name=CREATE_TASK)
    async def create_task(self, request: TaskRequest) -> TaskRef:
        values = request.template_values or {}
        try:
            title, detail = render_task_texts(request.title, request.detail, values)
        except UserTemplateError as err:
            raise ApplicationError(str(err), type="InvalidInput", non_retryable=True) from err
        self._record(
            values,
            request.key,
            "task",
            assignee_id=request.assignee_id,
            title=title,
            detail=detail,
            due_at=request.due_at.isoformat(),
        )
        self._tasks += 1
        return TaskRef(task_id=self._tasks, key=request.key, created=True)

    @activity.defn(name=LOOK_UP_STAFF)
    async def look_up_staff(self, lookup: StaffLookup) -> StaffContact:
        return staff_contact(self._policy, lookup.staff_id)

    @activity.defn(name=ASSIGN_OWNER)
    async def assign_owner(self, request: AssignmentRequest) -> Assignment:
        """The pool's first member: a preview does not know tomorrow's loads."""
        members = self._policy.pools.get(request.pool, ())
        if not members:
            raise ApplicationError(f"unknown pool {request.pool!r}", non_retryable=True)
        contact = staff_contact(self._policy, members[0])
        return Assignment(
            key=request.key,
            pool=request.pool,
            assignee_id=contact.staff_id,
            assignee_name=contact.name,
            assignee_email=contact.email,
            manager_id=contact.manager_id,
            open_load=0,
        )

    @activity.defn(name=RELEASE_ASSIGNMENT)
    async def release_assignment(self, request: ReleaseRequest) -> None:
        return None

    @activity.defn(name=RECORD_STEP)
    async def record_step(self, record: AuditRecord) -> None:
        return None

    @activity.defn(name=CLOSE_TASKS)
    async def close_tasks(self, request: CloseTasksRequest) -> int:
        """A preview's tasks are not stored: none to close."""
        return 0

    @activity.defn(name=START_PROCESS)
    async def start_process(self, request: ProcessStartRequest) -> ProcessStartResult:
        """The body checked as the process's API checks it; nothing is started."""
        process, body = request_body(request, self._policy, self._request_models)
        self.effects.append(
            TimelineEntry(
                at=request.requested_at,
                local_time="",
                step=_step_of(request.key),
                action="start",
                detail={"process": process.name, "fields": body.model_dump(mode="json")},
            )
        )
        return ProcessStartResult(f"{process.name}-preview", "preview", created=True)

    @activity.defn(name=CALL_HTTP)
    async def call_http(self, request: HttpCallRequest) -> HttpCallResult:
        """The call as it would be made; nothing is sent, and it is answered 200."""
        self.effects.append(
            TimelineEntry(
                at=activity.info().current_attempt_scheduled_time,
                local_time="",
                step=_step_of(request.key),
                action="http",
                detail={
                    "method": "POST",
                    "url": request.url,
                    "body": request.body,
                    "headers": ["content-type", *WEBHOOK_HEADERS],
                },
            )
        )
        return HttpCallResult(status=200)

    @activity.defn(name=EMIT_EVENT)
    async def emit_milestone(self, _event: MilestoneEvent) -> MilestoneEmitted:
        """A preview emits no webhook events."""
        return MilestoneEmitted(endpoints=0)

    @activity.defn(name=_DECIDE_APPROVAL)
    async def decide_approval(self, request: ApprovalInput) -> str:
        step = str(request.details.get("step", ""))
        outcome = self._approvals.get(step, APPROVAL_OUTCOMES[0])
        approver = request.chain[0]
        self.effects.append(
            TimelineEntry(
                at=activity.info().current_attempt_scheduled_time,
                local_time="",
                step=step,
                action="approval",
                detail={
                    "approver_id": approver.approver_id,
                    "to": approver.email,
                    "subject": request.subject,
                    "timeout_seconds": approver.timeout_seconds,
                },
            )
        )
        return outcome

    def functions(self) -> list[Any]:
        return [
            self.send_email,
            self.create_task,
            self.look_up_staff,
            self.assign_owner,
            self.release_assignment,
            self.close_tasks,
            self.record_step,
            self.start_process,
            self.call_http,
            self.emit_milestone,
            self.decide_approval,
        ]

    def _record(self, values: dict[str, Any], key: str, action: str, **detail: Any) -> None:
        at = datetime.fromisoformat(values["now"])
        self.effects.append(
            TimelineEntry(at=at, local_time="", step=_step_of(key), action=action, detail=detail)
        )


def _step_of(key: str) -> str:
    """The step id in an effect's idempotency key (``{run}/{prefix}[task_]{n}-{step}``)."""
    return key.rpartition("/")[2].removeprefix("task_").partition("-")[2]


async def preview(
    definition: AutomationDefinition,
    record_id: str,
    record: dict[str, Any],
    events: Sequence[SampleEvent],
    policy: Policy,
    *,
    horizon: timedelta = DEFAULT_HORIZON,
    approvals: Mapping[str, str] | None = None,
) -> Preview:
    """Run ``definition`` on the sample and return its timeline; see the module docstring.

    ``approvals`` gives an approval step (by id) an outcome of ``APPROVAL_OUTCOMES``
    other than ``approved``. Raises ValueError for another outcome.
    """
    unknown = {step: o for step, o in (approvals or {}).items() if o not in APPROVAL_OUTCOMES}
    if unknown:
        raise ValueError(f"approval outcomes are {APPROVAL_OUTCOMES}, not {unknown}")
    recorder = _Recorder(policy, approvals or {})
    task_queue = f"preview-{uuid.uuid4()}"
    async with (
        time_skipping_server() as env,
        Worker(
            env.client,
            task_queue=task_queue,
            workflows=[AutomationWorkflow, PreviewApproval],
            activities=recorder.functions(),
            workflow_runner=UnsandboxedWorkflowRunner(),
        ),
    ):
        return await _drive(
            env, task_queue, recorder, definition, record_id, record, events, policy, horizon
        )


async def _drive(
    env: WorkflowEnvironment,
    task_queue: str,
    recorder: _Recorder,
    definition: AutomationDefinition,
    record_id: str,
    record: dict[str, Any],
    events: Sequence[SampleEvent],
    policy: Policy,
    horizon: timedelta,
) -> Preview:
    calendar = policy.calendars[definition.calendar].spec()
    zone = ZoneInfo(calendar.timezone)
    enrolled = await env.get_current_time()
    workflow_id = f"automation-{definition.id}-{definition.object}-{record_id}"
    handle: WorkflowHandle[AutomationWorkflow, AutomationResult] = await env.client.start_workflow(
        AutomationWorkflow.run,
        AutomationInput(
            automation_id=definition.id,
            version=0,
            definition=definition,
            calendar=calendar,
            record_id=record_id,
            record=record,
            event=RecordEvent(
                event_id="preview-enrollment",
                object=definition.object,
                record_id=record_id,
                type="created",
                occurred_at=enrolled,
                record=record,
            ),
            enrolled_at=enrolled,
        ),
        id=workflow_id,
        task_queue=task_queue,
    )
    business = BusinessCalendar.from_spec(calendar)
    timed = sorted(_timed(events, enrolled, business, horizon), key=lambda pair: pair[0])
    deleted: TimelineEntry | None = None  # the sample deletion that ended the run, and why
    deletion = ""
    end_of_horizon = enrolled + horizon
    for index, (at, sample) in enumerate(timed):
        if at > end_of_horizon:
            break
        await _sleep_until(env, at)
        if await _closed(env, workflow_id):
            break
        if sample.type == "deleted" and not definition.waits_for("deleted"):  # as the API ends it
            deleted = TimelineEntry(at, "", "deleted", "event", {"detail": f"preview-{index}"})
            deletion = f"the record was deleted (event preview-{index})"
            await env.client.get_workflow_handle(workflow_id).cancel(reason=deletion)
            break
        changed = {**record, **sample.record}
        await env.client.get_workflow_handle(workflow_id).signal(
            AutomationWorkflow.record_event,
            RecordEvent(
                event_id=f"preview-{index}",
                object=definition.object,
                record_id=record_id,
                type=sample.type,
                occurred_at=at,
                record=changed,
                previous=sample.previous,
            ),
        )
        record = changed
    while not await _closed(env, workflow_id) and await env.get_current_time() < end_of_horizon:
        await _sleep_until(
            env, min(end_of_horizon, await env.get_current_time() + timedelta(days=1))
        )
    timeline = await _steps(env, workflow_id, handle.result_run_id) + recorder.effects
    latest = await env.client.get_workflow_handle(workflow_id).describe()
    result: AutomationResult | None = None
    outcome = "running"
    if latest.status == WorkflowExecutionStatus.CANCELED and deleted is not None:
        assert latest.close_time is not None
        outcome = "cancelled"
        timeline.append(deleted)
        timeline.append(
            TimelineEntry(
                latest.close_time, "", "", "end", {"outcome": outcome, "reason": deletion}
            )
        )
    elif latest.status == WorkflowExecutionStatus.COMPLETED:
        result = await env.client.get_workflow_handle_for(
            AutomationWorkflow.run, workflow_id
        ).result()
        assert latest.close_time is not None
        outcome = result.outcome
        timeline.append(
            TimelineEntry(
                latest.close_time, "", result.last_step or "", "end", {"outcome": result.outcome}
            )
        )
    else:
        await env.client.get_workflow_handle(workflow_id).terminate("preview horizon reached")
    for entry in timeline:
        entry.local_time = entry.at.astimezone(zone).isoformat()
    timeline.sort(key=lambda e: e.at)
    return Preview(
        outcome=outcome,
        enrolled_at=enrolled,
        ended_at=latest.close_time if outcome != "running" else None,
        timeline=timeline,
        failure=result.failure if result else None,
    )


def _timed(
    events: Sequence[SampleEvent],
    enrolled: datetime,
    calendar: BusinessCalendar,
    horizon: timedelta,
) -> list[tuple[datetime, SampleEvent]]:
    """Each sample event within ``horizon`` with its instant; SampleEventError for an offset
    the calendar cannot place. Business time is never shorter than as much calendar time, so
    an offset longer than the horizon in calendar time is beyond it."""
    timed = []
    for index, sample in enumerate(events):
        if sample.after.calendar_length() > horizon:
            continue
        try:
            timed.append((sample.after.after(enrolled, calendar), sample))
        except (CalendarError, OverflowError) as err:
            raise SampleEventError(index, str(err)) from None
    return timed


async def _sleep_until(env: WorkflowEnvironment, at: datetime) -> None:
    gap = at - await env.get_current_time()
    if gap > timedelta(0):
        await env.sleep(gap)


async def _closed(env: WorkflowEnvironment, workflow_id: str) -> bool:
    described = await env.client.get_workflow_handle(workflow_id).describe()
    return described.status not in (WorkflowExecutionStatus.RUNNING, None)


#: The steps a run shows that the timeline keeps (emails, tasks, starts and approval requests
#: come from the recorder).
_SHOWN = ("waiting", "wait", "event", "set", "failed", *APPROVAL_OUTCOMES, "withdrawn")


async def _steps(
    env: WorkflowEnvironment, workflow_id: str, first_run: str | None
) -> list[TimelineEntry]:
    """The shown steps of every run of the chain from ``first_run``, through continues-as-new."""
    entries: list[TimelineEntry] = []
    run_id = first_run
    while run_id is not None:
        handle = env.client.get_workflow_handle(workflow_id, run_id=run_id)
        state = await handle.query(AutomationWorkflow.state)
        for shown in state.steps:
            kind, _, step = shown.step.partition(":")
            if kind in _SHOWN:
                entries.append(
                    TimelineEntry(
                        at=shown.at,
                        local_time="",
                        step=step,
                        action=kind,
                        detail={"detail": shown.detail},
                    )
                )
        history = await handle.fetch_history()
        last = history.events[-1]
        attributes = last.workflow_execution_continued_as_new_event_attributes
        run_id = (
            attributes.new_execution_run_id
            if last.HasField("workflow_execution_continued_as_new_event_attributes")
            else None
        )
    return entries
