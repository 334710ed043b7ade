"""API keys kept in the database: create, list and revoke (``crmflow api-key``)."""

from __future__ import annotations

from sqlmodel import Session, col, select

from crm.platform.principals import Role, new_api_key
from crm.store.db import Database
from crm.store.models import ApiKey, utcnow


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
    row = ApiKey(
        key_id=record.key_id,
        key_sha256=record.key_sha256,
        principal=principal,
        roles=list(roles),
        staff_id=staff_id,
        tenant=tenant,
    )
    await database.run(lambda session: session.add(row))
    return key


async def list_keys(database: Database) -> list[ApiKey]:
    """Every key ever made, revoked ones included, oldest first."""
    statement = select(ApiKey).order_by(col(ApiKey.id))
    return await database.all(statement)


async def revoke_key(database: Database, key_id: str) -> bool:
    """Revoke ``key_id``; False when there is no such active key."""

    def revoke(session: Session) -> bool:
        row = session.exec(
            select(ApiKey).where(ApiKey.key_id == key_id, col(ApiKey.revoked_at).is_(None))
        ).first()
        if row is None:
            return False
        row.revoked_at = utcnow()
        session.add(row)
        return True

    return await database.run(revoke)
