"""The CRM database: one async engine per process, short sessions.

The same SQLModel code runs on SQLite (the embedded default, through
aiosqlite) and PostgreSQL (through psycopg). SQLite is tuned for many
concurrent activities: WAL journal, a busy timeout, and foreign keys on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crm import models  # noqa: F401  (registers the tables on SQLModel.metadata)

SQLITE_BUSY_TIMEOUT_MS = 10_000


def create_engine(database_url: str) -> AsyncEngine:
    """An async engine for ``database_url``; creates the SQLite file's folder.

    Raises sqlalchemy.exc.ArgumentError for a URL SQLAlchemy cannot parse.
    """
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True)

    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine.sync_engine, "connect")
    def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


async def create_tables(engine: AsyncEngine) -> None:
    """Create every table that does not exist yet (idempotent)."""
    async with engine.begin() as connection:
        await connection.run_sync(SQLModel.metadata.create_all)


class Database:
    """An engine and its session factory; ``session()`` opens one short session."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)

    @classmethod
    def from_url(cls, database_url: str) -> Database:
        """A Database for ``database_url`` (see ``create_engine``)."""
        return cls(create_engine(database_url))

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session that is closed on exit; callers commit explicitly."""
        async with self._sessions() as session:
            yield session

    async def create_tables(self) -> None:
        """Create the schema if missing."""
        await create_tables(self.engine)

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


class Keyed(Protocol):
    """A table row with a unique idempotency ``key``."""

    key: str


RowT = TypeVar("RowT", bound=Keyed)


async def insert_once(database: Database, row: RowT) -> tuple[RowT, bool]:
    """Insert ``row`` unless a row with its ``key`` exists; return (stored row, inserted).

    Safe under concurrent retries: when two attempts race, the unique
    constraint lets one insert win and the other reads the winner's row. The
    insert is tried first, so the usual case (a first attempt) costs one round
    trip; only a retry pays for reading the row it finds.
    """
    model = type(row)
    key_column: Any = model.key
    async with database.session() as session:
        session.add(row)
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()
            existing = (await session.exec(select(model).where(key_column == row.key))).first()
            if existing is None:  # the conflict was on another unique column: a real error
                raise
            return existing, False
        return row, True
