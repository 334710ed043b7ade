"""The activity behind the daily digest: what is waiting on one staff member this morning.

It counts their open tasks (the overdue ones apart; an approval waiting on
them is an ``approval_<step>`` task of theirs) and their unread
notifications, and writes a line for each task. It reads the CRM database
only, so it is safe to retry and needs no visibility store.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, func, select
from temporalio import activity

from crm.policy import Policy
from crm.store.db import Database
from crm.store.models import Notification, Task, as_utc
from crm.store.people_work import open_tasks_of
from workflows.digest_types import GATHER_DIGEST, DigestContent, DigestRequest
from workflows.task_types import APPROVAL_TASKS

#: The most tasks a digest lists one by one; the counts cover the rest.
LISTED = 20


class DigestActivities:
    """Gathers digests with the worker's database and policy."""

    def __init__(self, database: Database, policy: Policy, digest_at: str | None) -> None:
        """``digest_at``: the time of day digests go out (``CRMFLOW_DAILY_DIGEST_AT``; None:
        no digests)."""
        self._database = database
        self._policy = policy
        self._digest_at = digest_at

    @activity.defn(name=GATHER_DIGEST)
    async def gather_digest(self, request: DigestRequest) -> DigestContent:
        """What is waiting on ``request.staff_id`` now, and the zone and time of their next
        digest; ``stop`` when they left the policy or digests are off."""
        member = next((m for m in self._policy.staff if m.id == request.staff_id), None)
        if member is None or self._digest_at is None:
            return DigestContent(email=None, name=request.staff_id, stop=True)
        now = as_utc(request.at)
        zone = ZoneInfo(member.timezone)

        def read(session: Session) -> tuple[list[Task], int]:
            tasks = open_tasks_of(session, [member.id], None)
            unread = session.exec(
                select(func.count())
                .select_from(Notification)
                .where(Notification.staff_id == member.id, col(Notification.read_at).is_(None))
            ).one()
            return tasks, int(unread)

        tasks, unread = await self._database.run(read, write=False)
        overdue = [task for task in tasks if as_utc(task.due_at) < now]
        approvals = [task for task in tasks if task.kind.startswith(APPROVAL_TASKS)]
        lines = [_task_line(task, now, zone) for task in tasks[:LISTED]]
        if len(tasks) > LISTED:
            lines.append(f"and {len(tasks) - LISTED} more")
        if unread:
            lines.append(f"{unread} unread notification(s)")
        return DigestContent(
            email=member.email,
            name=member.name,
            timezone=member.timezone,
            at=self._digest_at,
            open_tasks=len(tasks),
            overdue_tasks=len(overdue),
            approvals=len(approvals),
            unread=unread,
            lines=lines,
        )


def _task_line(task: Task, now: datetime, zone: ZoneInfo) -> str:
    due = as_utc(task.due_at)
    when = "OVERDUE since" if due < now else "due"
    return f"{task.title} ({when} {due.astimezone(zone):%a %d %b %H:%M})"
