"""Assigning work to people: least open load first, round-robin on ties."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from sqlalchemy import func, literal, union_all
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from crm.policy import Policy
from crm.store.db import Database, insert_once
from crm.store.models import Assignment as AssignmentRow
from crm.store.models import as_utc, utcnow
from workflows.contracts import (
    ASSIGN_OWNER,
    RELEASE_ASSIGNMENT,
    Assignment,
    AssignmentRequest,
    ReleaseRequest,
)

_NEVER = datetime.min

#: The PostgreSQL advisory lock that serializes choosing assignees across workers.
ASSIGNMENT_LOCK_ID = 0x63726D61  # 'crma'


class AssignmentActivities:
    """Chooses assignees from the policy's pools and records the choice."""

    def __init__(self, database: Database, policy: Policy) -> None:
        self._database = database
        self._policy = policy

    @activity.defn(name=ASSIGN_OWNER)
    async def assign_owner(self, request: AssignmentRequest) -> Assignment:
        """Assign ``request.subject_id`` to a pool member, once per ``request.key``.

        The member with the fewest active assignments wins; ties go to whoever
        was assigned least recently, then to pool order, which makes equal
        loads rotate. Members with all ``request.skills`` are preferred; when
        none has them, the whole pool is eligible. Raises a non-retryable
        ApplicationError of type ``InvalidInput`` for an unknown pool.
        """
        members = self._eligible(request)
        row, open_load, made = await self._database.run(
            lambda session: self._assign(session, request, members)
        )
        activity.logger.info(
            "%s %s to %s from %s",
            "assigned" if made else "already assigned",
            request.subject_id,
            row.assignee_id,
            request.pool,
        )
        return self._describe(row, open_load)

    def _assign(
        self, session: Session, request: AssignmentRequest, members: list[str]
    ) -> tuple[AssignmentRow, int, bool]:
        """The assignment for ``request.key``, its assignee's open load, and whether it is new.

        Choosing reads every load, then inserts, all in one transaction that
        holds the database's assignment lock (SQLite: the write lock taken by
        ``BEGIN IMMEDIATE``; PostgreSQL: a transaction advisory lock), so
        concurrent choices, from any worker, never see the same loads.
        """
        if session.get_bind().dialect.name == "postgresql":
            session.exec(select(func.pg_advisory_xact_lock(ASSIGNMENT_LOCK_ID)))
        existing = session.exec(
            select(AssignmentRow).where(AssignmentRow.key == request.key)
        ).first()
        if existing is not None:
            loads, _ = _loads(session, [existing.assignee_id])
            return existing, loads.get(existing.assignee_id, 0), False
        loads, last_assigned = _loads(session, members)

        def rank(index_and_member: tuple[int, str]) -> tuple[int, datetime, int]:
            index, member = index_and_member
            return loads.get(member, 0), last_assigned.get(member, _NEVER), index

        _, chosen = min(enumerate(members), key=rank)
        row, made = insert_once(
            session,
            AssignmentRow(
                key=request.key,
                process_id=request.process_id,
                pool=request.pool,
                subject_id=request.subject_id,
                assignee_id=chosen,
            ),
        )
        return row, loads.get(chosen, 0) + 1, made

    @activity.defn(name=RELEASE_ASSIGNMENT)
    async def release_assignment(self, request: ReleaseRequest) -> bool:
        """Stop counting an assignment towards its assignee's load; False if already released."""

        def release(session: Session) -> bool:
            row = session.exec(
                select(AssignmentRow).where(AssignmentRow.key == request.key)
            ).first()
            if row is None or not row.active:
                return False
            row.active = False
            row.released_at = utcnow()
            session.add(row)
            return True

        return await self._database.run(release)

    def _eligible(self, request: AssignmentRequest) -> list[str]:
        try:
            pool = list(self._policy.pools[request.pool])
        except KeyError:
            raise ApplicationError(
                f"unknown assignment pool {request.pool!r}; "
                f"known pools: {sorted(self._policy.pools)}",
                type="InvalidInput",
                non_retryable=True,
            ) from None
        if not request.skills:
            return pool
        wanted = set(request.skills)
        skilled = [m for m in pool if wanted <= set(self._policy.member(m).skills)]
        return skilled or pool

    def _describe(self, row: AssignmentRow, open_load: int) -> Assignment:
        member = self._policy.member(row.assignee_id)
        return Assignment(
            key=row.key,
            pool=row.pool,
            assignee_id=member.id,
            assignee_name=member.name,
            assignee_email=member.email,
            manager_id=member.manager_id,
            open_load=open_load,
        )


def _loads(session: Session, members: list[str]) -> tuple[dict[str, int], dict[str, datetime]]:
    """Each member's active assignments, and when each was last assigned anything.

    Two index lookups per member (``ix_assignments_assignee_*``): the count
    reads active rows only, the latest is the last entry of the member's
    ``assigned_at`` index, so neither grows with the assignments that ended.
    """
    counted, latest = _load_statements(tuple(members))
    connection = session.connection()
    loads = {member: int(open_count) for member, open_count in connection.execute(counted)}
    last = {
        member: as_utc(at).replace(tzinfo=None)
        for member, at in connection.execute(latest)
        if at is not None
    }
    return loads, last


@functools.lru_cache(maxsize=256)
def _load_statements(members: tuple[str, ...]) -> tuple[Any, Any]:
    """The two queries of ``_loads`` for a pool's members, built once per pool.

    Building them anew for each choice took most of the CPU of an assignment.
    """
    assignee: Any = col(AssignmentRow.assignee_id)
    active: Any = col(AssignmentRow.active)
    counted = (
        select(assignee, func.count())
        .where(assignee.in_(members), active.is_(True))
        .group_by(assignee)
    )
    latest = union_all(
        *(
            select(
                literal(member).label("member"),
                select(func.max(AssignmentRow.assigned_at))
                .where(assignee == member)
                .scalar_subquery()
                .label("latest"),
            )
            for member in members
        )
    )
    return counted, latest
