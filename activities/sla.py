"""Activities the ticket SLA process needs beyond email and tasks.

Looking up who to escalate to, notifying staff in the app, writing what an escalation
level leaves behind (notice, task, milestone) in one transaction, and recording how a
ticket's SLA ended (for the SLA report too). Writes are keyed by ``{process_id}/{step}``
and safe to retry.
"""

from __future__ import annotations

from sqlmodel import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.process_outcomes import describe_current_run
from activities.tasks import store_task, task_of
from activities.webhook_delivery import emitted_of
from crm.platform.dispatch import wake_endpoints
from crm.policy import Policy
from crm.reports.facts import store_sla_outcome
from crm.store.db import Database, insert_once
from crm.store.models import AuditEntry, Notification, SlaOutcome, as_utc, utcnow
from crm.store.webhooks import emit
from workflows.contracts import (
    LOOK_UP_STAFF,
    NOTIFY_STAFF,
    RECORD_LEVEL,
    RECORD_SLA_OUTCOME,
    LevelRecorded,
    LevelRecords,
    NotificationRequest,
    SlaClockOutcome,
    SlaOutcomeRecord,
    StaffContact,
    StaffLookup,
    TaskRef,
)


class SlaActivities:
    """Staff look-ups from the policy, notifications and SLA outcomes in the database."""

    def __init__(self, database: Database, policy: Policy) -> None:
        self._database = database
        self._policy = policy

    @activity.defn(name=LOOK_UP_STAFF)
    async def look_up_staff(self, lookup: StaffLookup) -> StaffContact:
        """The contact details and manager of a staff member.

        Raises a non-retryable ApplicationError of type ``InvalidInput`` for an
        id the policy does not know.
        """
        return staff_contact(self._policy, lookup.staff_id)

    @activity.defn(name=NOTIFY_STAFF)
    async def notify_staff(self, request: NotificationRequest) -> bool:
        """Store an in-app notification once per key; False when it already existed."""
        notification = notification_of(request)
        _, created = await self._database.run(lambda session: insert_once(session, notification))
        return created

    @activity.defn(name=RECORD_LEVEL)
    async def record_level(self, records: LevelRecords) -> LevelRecorded:
        """Store a level's notice, task (with its ``task.created`` event and audit entry) and
        milestone event in one transaction, each once, then wake the webhook endpoints their
        events go to. A retry finds what the first attempt stored and wakes them again."""
        notification = (
            None if records.notification is None else notification_of(records.notification)
        )
        task_row = None if records.task is None else task_of(records.task)
        milestone = None if records.milestone is None else emitted_of(records.milestone)

        def store(session: Session) -> tuple[TaskRef | None, list[str]]:
            if notification is not None:
                insert_once(session, notification)
            ref: TaskRef | None = None
            endpoints: list[str] = []
            if task_row is not None:
                task, created, endpoints = store_task(session, task_row)
                assert task.id is not None
                ref = TaskRef(task_id=task.id, key=task.key, created=created)
            milestone_endpoints = [] if milestone is None else emit(session, milestone)
            return ref, endpoints + milestone_endpoints

        ref, endpoints = await self._database.run(store)
        if endpoints:  # a retry stores nothing again, and wakes them again
            await wake_endpoints(activity.client(), activity.info().task_queue, endpoints)
        return LevelRecorded(task=ref, endpoints=len(set(endpoints)))

    @activity.defn(name=RECORD_SLA_OUTCOME)
    async def record_sla_outcome(self, record: SlaOutcomeRecord) -> bool:
        """Store how a ticket's SLA ended, under the run's tenant (its memo), add it to the
        SLA report and audit it; False when already recorded. Raises RPCError (retried)
        when Temporal cannot tell the run's tenant."""
        memo_tenant = await (await describe_current_run()).memo_value("tenant", None)
        tenant = str(memo_tenant) if memo_tenant is not None else None
        clocks = {
            clock.clock: {
                "status": clock.status,
                "target_seconds": clock.target_seconds,
                "used_seconds": clock.used_seconds,
                "levels_reached": list(clock.levels_reached),
                "breaches": _breaches(clock),
                "cycles": clock.cycles if clock.cycles is not None else 1,
            }
            for clock in record.clocks
        }
        by_name = {clock.clock: clock for clock in record.clocks}
        first = by_name.get("first_response")
        resolution = by_name.get("resolution")
        outcome = SlaOutcome(
            key=record.key,
            tenant=tenant,
            process_id=record.process_id,
            ticket_id=record.ticket_id,
            customer_id=record.customer_id,
            priority=record.priority,
            tier=record.tier,
            assignee_id=record.assignee_id,
            outcome=record.outcome,
            first_response=first.status if first else "unknown",
            resolution=resolution.status if resolution else "unknown",
            first_response_used_seconds=first.used_seconds if first else 0.0,
            resolution_used_seconds=resolution.used_seconds if resolution else 0.0,
            clocks=clocks,
            escalations=list(record.escalations),
            ended_at=as_utc(record.ended_at) if record.ended_at else utcnow(),
        )
        audit = AuditEntry(
            key=record.key,
            process_id=record.process_id,
            step="sla_outcome",
            detail={"outcome": record.outcome, "clocks": clocks},
        )

        def store(session: Session) -> bool:
            created = store_sla_outcome(session, outcome)
            insert_once(session, audit)
            return created

        return await self._database.run(store)


def _breaches(clock: SlaClockOutcome) -> int:
    """How often ``clock`` breached; a run before SLA policies breached at most once."""
    if clock.breaches is not None:
        return clock.breaches
    return 1 if clock.status == "breached" else 0


def notification_of(request: NotificationRequest) -> Notification:
    """The in-app notification ``request`` asks for."""
    return Notification(
        key=request.key,
        process_id=request.process_id,
        staff_id=request.staff_id,
        kind=request.kind,
        message=request.message,
    )


def staff_contact(policy: Policy, staff_id: str) -> StaffContact:
    """The policy's contact details and manager of ``staff_id``; a non-retryable
    ``InvalidInput`` ApplicationError for an id it does not know."""
    try:
        member = policy.member(staff_id)
    except KeyError:
        raise ApplicationError(
            f"unknown staff member {staff_id!r}", type="InvalidInput", non_retryable=True
        ) from None
    return StaffContact(
        staff_id=member.id, name=member.name, email=member.email, manager_id=member.manager_id
    )
