"""The steps several processes take, each one activity: a task, an assignment, a look-up,
an in-app notice, an email.

``ActivitySteps`` adds them to ``PublishingSteps`` (outcome offers and milestones, on
``ProcessSteps``: the audit trail, the stage and how a step's activity runs); a process
workflow is built on it. Each step is idempotent under a key of the run
(``ProcessSteps._key``); the ones a run can do without (enrichment, an email) note their
failure and let the run go on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from temporalio.exceptions import ActivityError
from temporalio.workflow import ActivityCancellationType

from workflows.contracts import (
    ASSIGN_OWNER,
    CLOSE_TASKS,
    CREATE_TASK,
    ENRICH_COMPANY,
    LOOK_UP_STAFF,
    NOTIFY_STAFF,
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
    ReleaseRequest,
    StaffContact,
    StaffLookup,
    TaskQuery,
    TaskRef,
    TaskRequest,
)
from workflows.publishing_steps import PublishingSteps
from workflows.retries import EMAIL_RETRY, ENRICH_RETRY, LOOKUP_RETRY, RECORD_RETRY
from workflows.steps import carry_on_reason


class ActivitySteps(PublishingSteps):
    """The one-activity steps of a process run, on top of what it publishes."""

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
            await self._carry_on(
                err, f"email:{step}", "not sent", failure_record or f"email_failed:{step}", {}
            )
            return err
        self._show_step(f"email:{step}", receipt.subject)
        return receipt
