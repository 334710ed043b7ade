"""The steps several processes take, each one activity: a task, an assignment, a look-up,
an in-app notice, an email, an outcome offered to automations, a milestone emitted.

``ActivitySteps`` adds them to ``ProcessSteps`` (the audit trail, the stage and how a step's
activity runs); a process workflow is built on it. Each step is idempotent under a key of
the run (``ProcessSteps._key``); the ones a run can do without (enrichment, an email, an
outcome offer, a milestone) note their failure and let the run go on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError
from temporalio.workflow import ActivityCancellationType

from workflows.contracts import (
    ASSIGN_OWNER,
    CLOSE_TASKS,
    CREATE_TASK,
    ENRICH_COMPANY,
    LOOK_UP_STAFF,
    NOTIFY_STAFF,
    OFFER_OUTCOME,
    RELEASE_ASSIGNMENT,
    SEND_EMAIL,
    TASK_STATUS,
    Assignment,
    AssignmentRequest,
    CloseTasksRequest,
    CompanyProfile,
    EmailReceipt,
    EmailRequest,
    EnrichmentRequest,
    NotificationRequest,
    OutcomeEvent,
    OutcomeOffered,
    ReleaseRequest,
    StaffContact,
    StaffLookup,
    TaskQuery,
    TaskRef,
    TaskRequest,
)
from workflows.retries import EMAIL_RETRY, ENRICH_RETRY, LOOKUP_RETRY, OFFER_RETRY, RECORD_RETRY
from workflows.steps import ProcessSteps, carry_on_reason
from workflows.webhook_types import EMIT_EVENT, MilestoneEmitted, MilestoneEvent

#: Runs begun before it do not offer their outcomes to automations.
OUTCOME_EVENTS = "outcome-events"

#: Runs begun before it emit no milestone events to webhooks (their outcomes still are).
WEBHOOK_EVENTS = "webhook-events"

#: Runs begun before it emit none of the milestones the reports need besides the webhook
#: events before (``onboarding.started``, ``.milestone_reached``, ``renewal.term_started``,
#: ``.date_changed``, ``.upsell_offered``, ``.upsell_accepted``, ``lead.first_contacted``).
REPORT_MILESTONES = "report-milestones"

#: How long a run tries to offer its outcome before it notes the failure and ends anyway.
OFFER_WITHIN = timedelta(minutes=30)


class ActivitySteps(ProcessSteps):
    """The one-activity steps of a process run, on top of its audit trail and stage."""

    async def _task(
        self,
        step: str,
        request: TaskRequest,
        *,
        summary: str | None = None,
        cancellation_type: ActivityCancellationType = ActivityCancellationType.TRY_CANCEL,
    ) -> TaskRef:
        """Create the task of ``step`` (``_task_request``), once whatever the retries; it is
        noted as ``task:<step>``."""
        task: TaskRef = await self._execute(
            CREATE_TASK,
            request,
            result_type=TaskRef,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RECORD_RETRY,
            summary=summary or f"task {step}",
            cancellation_type=cancellation_type,
        )
        self._show_step(f"task:{step}", f"task {task.task_id} for {request.assignee_id}")
        return task

    def _task_request(
        self,
        step: str,
        *,
        customer_id: str,
        assignee_id: str,
        kind: str,
        title: str,
        due: datetime,
        detail: str,
        assignment_key: str | None = None,
        template_values: dict[str, Any] | None = None,
    ) -> TaskRequest:
        """The task of ``step`` for ``assignee_id``, under the run's tenant. With
        ``assignment_key``, it is the work of that assignment, which ends when the task is
        done. With ``template_values``, ``title`` and ``detail`` are a user's templates,
        rendered with them by the activity."""
        return TaskRequest(
            key=self._key(f"task_{step}"),
            process_id=self._process_id,
            customer_id=customer_id,
            assignee_id=assignee_id,
            kind=kind,
            title=title,
            due_at=due,
            detail=detail,
            tenant=self._tenant(),
            assignment_key=assignment_key,
            template_values=template_values,
        )

    async def _task_done(self, task_id: int) -> bool:
        """Whether the run's task ``task_id`` is done in the CRM database (a person may have
        completed it while the run could not be told)."""
        status: str = await self._execute(
            TASK_STATUS,
            TaskQuery(process_id=self._process_id, task_id=task_id),
            result_type=str,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=LOOKUP_RETRY,
            summary=f"is task {task_id} done?",
        )
        return status == "done"

    async def _close_tasks(self, resolution: str, summary: str) -> None:
        """Mark the run's open tasks done; assignments that were their work end with them."""
        await self._execute(
            CLOSE_TASKS,
            CloseTasksRequest(process_id=self._process_id, resolution=resolution),
            result_type=int,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RECORD_RETRY,
            summary=summary,
        )

    async def _assign_owner(
        self,
        key: str,
        pool: str,
        subject_id: str,
        *,
        summary: str,
        skills: Sequence[str] = (),
        cancellation_type: ActivityCancellationType = ActivityCancellationType.TRY_CANCEL,
    ) -> Assignment:
        """Assign ``subject_id`` to a member of ``pool`` (with ``skills`` first, then the
        least loaded), once per ``key`` whatever the retries."""
        assignment: Assignment = await self._execute(
            ASSIGN_OWNER,
            AssignmentRequest(
                key=key,
                process_id=self._process_id,
                pool=pool,
                subject_id=subject_id,
                skills=list(skills),
            ),
            result_type=Assignment,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RECORD_RETRY,
            summary=summary,
            cancellation_type=cancellation_type,
        )
        return assignment

    async def _release_assignment(self, key: str, summary: str) -> None:
        """End the assignment of ``key``, if made: it stops counting towards its
        assignee's load (once)."""
        await self._execute(
            RELEASE_ASSIGNMENT,
            ReleaseRequest(key=key),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RECORD_RETRY,
            summary=summary,
        )

    async def _look_up_staff(self, staff_id: str) -> StaffContact:
        """Who ``staff_id`` is: name, address and manager; an unknown id fails the step."""
        contact: StaffContact = await self._execute(
            LOOK_UP_STAFF,
            StaffLookup(staff_id=staff_id),
            result_type=StaffContact,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=LOOKUP_RETRY,
            summary=f"look up {staff_id}",
        )
        return contact

    async def _notify_staff(self, step: str, staff_id: str, message: str) -> None:
        """Notify ``staff_id`` in the app of ``step`` (kind ``<process>_<step>``), once, and
        note it as ``notify:<step>``."""
        await self._execute(
            NOTIFY_STAFF,
            self._notification(step, staff_id, message),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RECORD_RETRY,
            summary=f"notify {staff_id}: {step}",
        )
        self._show_step(f"notify:{step}", staff_id)

    def _notification(self, step: str, staff_id: str, message: str) -> NotificationRequest:
        """The in-app notice of ``step`` for ``staff_id`` (kind ``<process>_<step>``)."""
        return NotificationRequest(
            key=self._key(f"notify_{step}"),
            process_id=self._process_id,
            staff_id=staff_id,
            kind=f"{self._state.process}_{step}",
            message=message,
        )

    async def _look_up_company(self, domain: str) -> CompanyProfile | None:
        """The enrichment provider's profile of ``domain``; None, noted as partial
        data, when the run goes on without it (the provider knows nothing or stayed down).
        """
        try:
            company: CompanyProfile = await self._execute(
                ENRICH_COMPANY,
                EnrichmentRequest(domain=domain),
                result_type=CompanyProfile,
                start_to_close_timeout=timedelta(seconds=15),
                retry_policy=ENRICH_RETRY,
                summary=f"enrich {domain}",
            )
        except ActivityError as err:
            self._show_step("enrich", f"partial data: {carry_on_reason(err)}")
            return None
        return company

    async def _email(
        self,
        step: str,
        request: EmailRequest,
        *,
        within: timedelta,
        summary: str | None = None,
        failure_record: str | None = None,
    ) -> EmailReceipt | ActivityError:
        """Send an email the run can do without; the failure when it could not be sent.

        Retried for up to ``within``; then the run goes on: the step is noted
        as not sent and recorded in the audit trail as ``failure_record``
        (default ``email_failed:<step>``). A cancellation of the run is re-raised.
        """
        try:
            receipt: EmailReceipt = await self._execute(
                SEND_EMAIL,
                request,
                result_type=EmailReceipt,
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=within,
                retry_policy=EMAIL_RETRY,
                summary=summary or f"email {step}",
            )
        except ActivityError as err:
            reason = carry_on_reason(err)
            self._show_step(f"email:{step}", f"not sent: {reason}")
            await self._audit_step(failure_record or f"email_failed:{step}", {"reason": reason})
            return err
        self._show_step(f"email:{step}", receipt.subject)
        return receipt

    async def _offer_outcome(
        self, outcome: str, record_id: str, record: dict[str, Any], *, step: str = "outcome"
    ) -> None:
        """Offer ``outcome`` of ``record_id`` to the tenant's automations on
        ``crmflow.<process>``, once, noted as ``offered:<step>``.

        The process does not depend on it: an offer that fails for
        ``OFFER_WITHIN`` is noted (``state`` and the audit trail as
        ``offer_failed:<step>``) and the run goes on. A cancellation of the run
        is re-raised. Runs begun before ``OUTCOME_EVENTS`` offer nothing.
        """
        if not workflow.patched(OUTCOME_EVENTS):
            return
        event = OutcomeEvent(
            event_id=f"{self._key(f'offer_{step}')}@{workflow.info().run_id}",
            process=self._state.process,
            record_id=record_id,
            outcome=outcome,
            occurred_at=workflow.now(),
            record={
                "process_id": self._process_id,
                "customer_id": self._state.customer_id,
                **record,
            },
            tenant=self._tenant(),
        )
        try:
            offered: OutcomeOffered = await self._execute(
                OFFER_OUTCOME,
                event,
                result_type=OutcomeOffered,
                start_to_close_timeout=timedelta(seconds=60),
                schedule_to_close_timeout=OFFER_WITHIN,
                retry_policy=OFFER_RETRY,
                summary=f"offer {outcome} to automations",
            )
        except ActivityError as err:
            reason = carry_on_reason(err)
            self._show_step(f"offered:{step}", f"not offered: {reason}")
            await self._audit_step(f"offer_failed:{step}", {"outcome": outcome, "reason": reason})
            return
        runs = offered.enrolled + offered.delivered
        self._show_step(f"offered:{step}", f"{outcome}: {', '.join(runs) or 'no automation'}")

    async def _emit(
        self, event_type: str, data: dict[str, Any], *, step: str, since: str | None = None
    ) -> None:
        """Emit the milestone ``event_type`` (``crm.domain.webhook_events``) to the tenant's
        webhook endpoints, once per ``step``: the event is stored and its deliveries queued;
        delivering is not the run's concern.

        The run does not depend on it: an emission that fails for ``OFFER_WITHIN`` is
        noted (``state`` and the audit trail as ``emit_failed:<step>``) and the run goes
        on. Runs begun before ``WEBHOOK_EVENTS``, or before the patch ``since`` that
        brought this milestone, emit nothing.
        """
        event = self._milestone(event_type, data, step=step, since=since)
        if event is None:
            return
        try:
            await self._execute(
                EMIT_EVENT,
                event,
                result_type=MilestoneEmitted,
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=OFFER_WITHIN,
                retry_policy=RECORD_RETRY,
                summary=f"emit {event_type}",
            )
        except ActivityError as err:
            reason = carry_on_reason(err)
            self._show_step(f"emitted:{step}", f"not emitted: {reason}")
            await self._audit_step(f"emit_failed:{step}", {"type": event_type, "reason": reason})

    def _milestone(
        self, event_type: str, data: dict[str, Any], *, step: str, since: str | None = None
    ) -> MilestoneEvent | None:
        """The milestone event of ``step`` (see ``_emit``); None for a run begun before
        ``WEBHOOK_EVENTS`` or before the patch ``since``."""
        if since is not None and not workflow.patched(since):
            return None
        if not workflow.patched(WEBHOOK_EVENTS):
            return None
        return MilestoneEvent(
            event_id=f"{self._key(f'emit_{step}')}@{workflow.info().run_id}",
            type=event_type,
            process_id=self._process_id,
            occurred_at=workflow.now(),
            data={"process_id": self._process_id, "customer_id": self._state.customer_id, **data},
            tenant=self._tenant(),
        )
