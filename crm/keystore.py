"""API keys kept in the database: create, list and revoke (``crmflow api-key``)."""

from __future__ import annotations

from sqlmodel import col, select

from crm.db import Database
from crm.models import ApiKey, utcnow
from crm.principals import Role, new_api_key


async def create_key(
    database: Database,
    principal: str,
    roles: tuple[Role, ...],
    *,
    staff_id: str | None = None,
    tenant: str | None = None,
) -> str:
    """Store a new key's hash and return the key itself, which is never stored."""
    key, record = new_api_key(principal, roles, staff_id=staff_id, tenant=tenant)
    async with database.session() as session:
        session.add(
            ApiKey(
                key_id=record.key_id,
                key_sha256=record.key_sha256,
                principal=principal,
                roles=list(roles),
                staff_id=staff_id,
                tenant=tenant,
            )
        )
        await session.commit()
    return key


async def list_keys(database: Database) -> list[ApiKey]:
    async with database.session() as session:
        return list(await session.exec(select(ApiKey).order_by(col(ApiKey.id))))


async def revoke_key(database: Database, key_id: str) -> bool:
    """Revoke ``key_id``; False when there is no such active key."""
    async with database.session() as session:
        row = (
            await session.exec(
                select(ApiKey).where(ApiKey.key_id == key_id, col(ApiKey.revoked_at).is_(None))
            )
        ).first()
        if row is None:
            return False
        row.revoked_at = utcnow()
        session.add(row)
        await session.commit()
        return True
