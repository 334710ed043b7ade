"""Assigning work to people: least open load first, round-robin on ties."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from crm.db import Database, insert_once
from crm.models import Assignment as AssignmentRow
from crm.models import as_utc, utcnow
from crm.policy import Policy
from workflows.contracts import (
    ASSIGN_OWNER,
    RELEASE_ASSIGNMENT,
    Assignment,
    AssignmentRequest,
    ReleaseRequest,
)

_NEVER = datetime.min


class AssignmentActivities:
    """Chooses assignees from the policy's pools and records the choice."""

    def __init__(self, database: Database, policy: Policy) -> None:
        self._database = database
        self._policy = policy
        # Choosing reads every load, then inserts: concurrent choices in one
        # worker would all see the same least-loaded member and pick them.
        self._choosing = asyncio.Lock()

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
        async with self._choosing:
            async with self._database.session() as session:
                existing = (
                    await session.exec(
                        select(AssignmentRow).where(AssignmentRow.key == request.key)
                    )
                ).first()
                if existing is not None:
                    return await self._describe(existing)
                loads, last_assigned = await self._load_of(members)

            def rank(index_and_member: tuple[int, str]) -> tuple[int, datetime, int]:
                index, member = index_and_member
                return loads.get(member, 0), last_assigned.get(member, _NEVER), index

            _, chosen = min(enumerate(members), key=rank)
            row, _ = await insert_once(
                self._database,
                AssignmentRow(
                    key=request.key,
                    process_id=request.process_id,
                    pool=request.pool,
                    subject_id=request.subject_id,
                    assignee_id=chosen,
                ),
            )
        activity.logger.info("assigned %s to %s from %s", request.subject_id, chosen, request.pool)
        return await self._describe(row)

    @activity.defn(name=RELEASE_ASSIGNMENT)
    async def release_assignment(self, request: ReleaseRequest) -> bool:
        """Stop counting an assignment towards its assignee's load; False if already released."""
        async with self._database.session() as session:
            row = (
                await session.exec(select(AssignmentRow).where(AssignmentRow.key == request.key))
            ).first()
            if row is None or not row.active:
                return False
            row.active = False
            row.released_at = utcnow()
            session.add(row)
            await session.commit()
            return True

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

    async def _load_of(self, members: list[str]) -> tuple[dict[str, int], dict[str, datetime]]:
        assignee: Any = col(AssignmentRow.assignee_id)
        async with self._database.session() as session:
            active = await session.exec(
                select(assignee, func.count())
                .where(assignee.in_(members), col(AssignmentRow.active))
                .group_by(assignee)
            )
            loads = {member: int(count) for member, count in active}
            latest = await session.exec(
                select(assignee, func.max(AssignmentRow.assigned_at))
                .where(assignee.in_(members))
                .group_by(assignee)
            )
            last = {member: as_utc(at).replace(tzinfo=None) for member, at in latest if at}
        return loads, last

    async def _describe(self, row: AssignmentRow) -> Assignment:
        member = self._policy.member(row.assignee_id)
        loads, _ = await self._load_of([row.assignee_id])
        return Assignment(
            key=row.key,
            pool=row.pool,
            assignee_id=member.id,
            assignee_name=member.name,
            assignee_email=member.email,
            manager_id=member.manager_id,
            open_load=loads.get(member.id, 0),
        )
