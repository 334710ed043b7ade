"""The CRM database: one engine per process, units of work on database threads.

The same SQLModel code runs on SQLite (the embedded default) and PostgreSQL
(through psycopg). Database drivers block, so each unit of work — a function
of one session — runs whole on one of the database's threads: an activity
pays one thread hop for all its statements instead of one per statement, as
an async driver would. ``run`` commits when the work returns and rolls back
when it raises.

SQLite is tuned for many concurrent activities: WAL journal, a busy timeout,
foreign keys on, and every transaction begins ``IMMEDIATE`` so that writers
queue for the lock instead of failing when a read turns into a write.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Engine, Table, event, inspect
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlmodel import Session, SQLModel, select

from crm import models  # noqa: F401  (registers the tables on SQLModel.metadata)

SQLITE_BUSY_TIMEOUT_MS = 10_000

#: Async drivers named in older settings, and the blocking driver used instead.
_BLOCKING_DRIVERS = {
    "sqlite+aiosqlite": "sqlite",
    "postgresql+asyncpg": "postgresql+psycopg",
    "postgresql+psycopg_async": "postgresql+psycopg",
}

T = TypeVar("T")


def database_url(database_url: str) -> URL:
    """``database_url`` parsed, with an async driver replaced by its blocking one.

    Raises sqlalchemy.exc.ArgumentError for a URL SQLAlchemy cannot parse.
    """
    url = make_url(database_url)
    blocking = _BLOCKING_DRIVERS.get(url.drivername)
    return url.set(drivername=blocking) if blocking else url


def create_engine(url: str, *, pool_size: int) -> Engine:
    """An engine for ``url`` holding up to ``pool_size`` connections; creates the SQLite folder."""
    parsed = database_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_sync_engine(parsed, pool_size=pool_size, max_overflow=0, pool_pre_ping=True)

    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_sync_engine(
        parsed,
        pool_size=pool_size,
        max_overflow=0,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver's own BEGIN is off; see below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class Database:
    """An engine, and the threads that run units of work on its sessions."""

    def __init__(self, engine: Engine, threads: int) -> None:
        self.engine = engine
        self._threads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="crm-db")

    @classmethod
    def from_url(cls, url: str, threads: int = 8) -> Database:
        """A Database for ``url`` with ``threads`` threads and as many connections."""
        return cls(create_engine(url, pool_size=threads), threads)

    async def run(self, work: Callable[[Session], T]) -> T:
        """Run ``work(session)`` in one transaction on a database thread; return its result.

        The transaction commits when ``work`` returns and rolls back when it
        raises. A cancelled caller does not stop work already running: it
        completes or rolls back on its own, so retries must be idempotent
        (they are: see ``insert_once``).
        """
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(
            self._threads, context.run, self._in_transaction, work
        )

    def _in_transaction(self, work: Callable[[Session], T]) -> T:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            return work(session)

    async def create_tables(self) -> None:
        """Create the tables that do not exist yet, and add what existing ones lack (idempotent)."""
        await self.run(lambda session: create_and_extend_tables(session.connection()))

    async def dispose(self) -> None:
        """Close every pooled connection and stop the threads."""
        await asyncio.get_running_loop().run_in_executor(self._threads, self.engine.dispose)
        self._threads.shutdown(wait=False)


def create_and_extend_tables(connection: Connection) -> None:
    """Create missing tables; add the columns and indexes a table has gained since.

    Changes to the schema are additive only: a column added to a table must
    be optional (nullable), so rows written before it stay valid. A missing
    required column raises RuntimeError: that change needs a migration.
    """
    SQLModel.metadata.create_all(connection)
    inspector = inspect(connection)
    for table in SQLModel.metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        missing = [column for column in table.columns if column.name not in present]
        for column in missing:
            if not column.nullable:
                raise RuntimeError(
                    f"table {table.name} has no column {column.name}, which is required: "
                    "migrate it by hand"
                )
            column_type = column.type.compile(dialect=connection.dialect)
            connection.exec_driver_sql(
                f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {column_type}'
            )
        if missing:
            for index in table.indexes:
                index.create(connection, checkfirst=True)


class Keyed(Protocol):
    """A table row with a unique idempotency ``key`` and a generated ``id``."""

    key: str
    id: int | None


RowT = TypeVar("RowT", bound=Keyed)


def insert_once(session: Session, row: RowT) -> tuple[RowT, bool]:
    """Insert ``row`` unless a row with its ``key`` exists; return (stored row, inserted).

    One ``INSERT ... ON CONFLICT (key) DO NOTHING``, so it is safe under
    concurrent retries and leaves the surrounding transaction usable: when
    two attempts race, one insert wins and the other reads the winner's row.
    A conflict on another unique column is a real error and raises
    IntegrityError.
    """
    model: Any = type(row)
    table = model.__table__
    values = {
        column.name: getattr(row, column.name)
        for column in table.columns
        if not (column.primary_key and getattr(row, column.name) is None)
    }
    connection = session.connection()
    inserted_id = connection.execute(
        _insert_once_of(table, connection.dialect.name), values
    ).scalar()
    if inserted_id is not None:
        row.id = inserted_id
        return row, True
    existing: RowT = session.exec(select(model).where(model.key == row.key)).one()
    return existing, False


def upsert(session: Session, row: SQLModel) -> None:
    """Insert ``row``, or overwrite every column of the row with its primary key.

    One ``INSERT .. ON CONFLICT (primary key) DO UPDATE``: a retry writes the
    same values again, and two writers never both insert.
    """
    table: Table = type(row).__table__  # type: ignore[attr-defined]
    values = {column.name: getattr(row, column.name) for column in table.columns}
    connection = session.connection()
    connection.execute(_upsert_of(table, connection.dialect.name), values)


@functools.cache
def _upsert_of(table: Table, dialect_name: str) -> Any:
    """``INSERT .. ON CONFLICT (primary key) DO UPDATE SET`` every other column, built once."""
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    statement = dialect.insert(table)
    return statement.on_conflict_do_update(
        index_elements=[column.name for column in table.primary_key],
        set_={
            column.name: statement.excluded[column.name]
            for column in table.columns
            if not column.primary_key
        },
    )


@functools.cache
def _insert_once_of(table: Table, dialect_name: str) -> Any:
    """``INSERT .. ON CONFLICT (key) DO NOTHING RETURNING id`` for ``table``, built once."""
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    return (
        dialect.insert(table).on_conflict_do_nothing(index_elements=["key"]).returning(table.c.id)
    )
