"""Console sign-in sessions: an API key (or JWT) exchanged for a cookie.

The cookie holds a random token; only its SHA-256 is stored, with the
principal the key identified, the key's id (a revoked key ends its sessions)
and the session's CSRF token, so a copy of the database signs nobody in. A
session signed in with a token ends when the token expires, if that is
sooner than ``SESSION_LIFETIME``. Sessions live in the database, not in one API
process, so every API replica honours them and signing out ends them
everywhere.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import JSON, Column, DateTime, delete
from sqlmodel import Field, Session, SQLModel, col, select

from crm.platform.principals import Principal
from crm.store.db import Database
from crm.store.models import as_utc, utcnow

#: How long a console session lasts from sign-in.
SESSION_LIFETIME = timedelta(hours=8)


class ConsoleSession(SQLModel, table=True):
    """A signed-in console user: who, with which roles, until when."""

    __tablename__ = "console_sessions"

    token_sha256: str = Field(primary_key=True, max_length=64)
    principal: str = Field(max_length=100)
    roles: list[str] = Field(sa_column=Column(JSON, nullable=False))
    staff_id: str | None = Field(default=None, max_length=100)
    tenant: str | None = Field(default=None, max_length=100)
    #: The API key signed in with (None: a JWT): a revoked key ends the session.
    key_id: str | None = Field(default=None, max_length=32)
    csrf_token: str = Field(max_length=64)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    expires_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, index=True)
    )


@dataclass(frozen=True)
class SignedIn:
    """A live session: the principal it stands for and the token its forms must carry."""

    principal: Principal
    csrf_token: str
    key_id: str | None = None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def open_session(
    database: Database,
    principal: Principal,
    *,
    key_id: str | None = None,
    until: datetime | None = None,
) -> tuple[str, SignedIn]:
    """Start a session for ``principal``, signed in with API key ``key_id`` (None: a token
    that expires ``until``); the cookie's token and the session. It lasts
    ``SESSION_LIFETIME``, or until the token expires if that is sooner.

    Expired sessions are swept in the same transaction.
    """
    token = secrets.token_urlsafe(32)
    expires_at = utcnow() + SESSION_LIFETIME
    if until is not None:
        expires_at = min(expires_at, as_utc(until))
    row = ConsoleSession(
        token_sha256=_digest(token),
        principal=principal.id,
        roles=sorted(principal.roles),
        staff_id=principal.staff_id,
        tenant=principal.tenant,
        key_id=key_id,
        csrf_token=secrets.token_urlsafe(24),
        expires_at=expires_at,
    )

    def store(session: Session) -> None:
        session.execute(delete(ConsoleSession).where(col(ConsoleSession.expires_at) < utcnow()))
        session.add(row)

    await database.run(store)
    return token, SignedIn(principal, row.csrf_token, key_id)


async def session_of(database: Database, token: str) -> SignedIn | None:
    """The live session of a cookie's ``token``; None when unknown or expired."""
    statement = select(ConsoleSession).where(ConsoleSession.token_sha256 == _digest(token))
    row = await database.run(lambda session: session.exec(statement).first(), write=False)
    if row is None or as_utc(row.expires_at) <= utcnow():
        return None
    principal = Principal(
        id=row.principal,
        roles=frozenset(row.roles),
        staff_id=row.staff_id,
        tenant=row.tenant,
    )
    return SignedIn(principal, row.csrf_token, row.key_id)


async def close_session(database: Database, token: str) -> None:
    """End the session of ``token`` (signing out); nothing when there is none."""
    statement = delete(ConsoleSession).where(col(ConsoleSession.token_sha256) == _digest(token))
    await database.run(lambda session: session.execute(statement))
