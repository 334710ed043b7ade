"""``/v1/inbox`` and ``/v1/notifications``: a staff member's work, and reading a notification."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from api.auth import StaffMember
from api.deps import DatabaseDep, PolicyDep, TemporalDep
from api.inbox import Inbox, InboxNotification, inbox_of
from api.problems import Problem
from crm.store.models import as_utc
from crm.store.people_work import mark_read

router = APIRouter(tags=["inbox"])


@router.get("/v1/inbox", response_model=Inbox)
async def get_inbox(
    client: TemporalDep, database: DatabaseDep, policy: PolicyDep, principal: StaffMember
) -> Inbox:
    """The caller's work as a staff member: open tasks (overdue first; a manager's team's
    too), approvals waiting on them or on those they deputise for, the approvals they
    asked for, and notifications (unread first), in their time zone."""
    return await inbox_of(client, database, policy, principal)


@router.post("/v1/notifications/{notification_id}/read", response_model=InboxNotification)
async def read_notification(
    database: DatabaseDep,
    principal: StaffMember,
    notification_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
) -> InboxNotification:
    """Mark one of the caller's notifications read; 404 for anyone else's."""
    staff = principal.staff_id or ""
    row = await database.run(lambda session: mark_read(session, staff, notification_id))
    if row is None:
        raise Problem(
            404,
            "notification-not-found",
            "Notification not found",
            f"no notification {notification_id}",
        )
    return InboxNotification(
        id=row.id or 0,
        process_id=row.process_id,
        kind=row.kind,
        message=row.message,
        created_at=as_utc(row.created_at),
        read=row.read_at is not None,
    )
