"""The CRM database: one engine per process, units of work on database threads.

The same SQLModel code runs on SQLite (the embedded default) and PostgreSQL
(through psycopg). Database drivers block, so each unit of work — a function
of one session — runs whole on one of the database's threads: an activity
pays one thread hop for all its statements instead of one per statement, as
an async driver would. ``run`` commits when the work returns and rolls back
when it raises.

SQLite is tuned for many concurrent activities: WAL journal, a busy timeout,
foreign keys on, and a unit of work that writes begins ``IMMEDIATE``, so
writers queue for the lock instead of failing when a read turns into a write;
work that only reads (``run(..., write=False)``) runs beside them. On
PostgreSQL connecting and every statement have a time limit, so a server that
stops answering fails the work instead of holding a database thread forever.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Engine, StaticPool, Table, event, inspect
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlmodel import Session, SQLModel, select
from sqlmodel.sql.expression import SelectOfScalar

from crm.store import models  # noqa: F401  (registers the tables on SQLModel.metadata)

SQLITE_BUSY_TIMEOUT_MS = 10_000
POSTGRES_CONNECT_TIMEOUT_SECONDS = 10
POSTGRES_STATEMENT_TIMEOUT_MS = 30_000

#: The PostgreSQL advisory lock held while a process creates or extends the schema.
SCHEMA_LOCK_ID = 0x63726D73  # 'crms'

#: Async drivers named in older settings, and the blocking driver used instead.
_BLOCKING_DRIVERS = {
    "sqlite+aiosqlite": "sqlite",
    "postgresql+asyncpg": "postgresql+psycopg",
    "postgresql+psycopg_async": "postgresql+psycopg",
}

#: Whether the unit of work running on this thread writes (how SQLite begins it).
_unit = threading.local()

T = TypeVar("T")


def database_url(database_url: str) -> URL:
    """``database_url`` parsed, with an async driver replaced by its blocking one.

    Raises sqlalchemy.exc.ArgumentError for a URL SQLAlchemy cannot parse.
    """
    url = make_url(database_url)
    blocking = _BLOCKING_DRIVERS.get(url.drivername)
    return url.set(drivername=blocking) if blocking else url


def create_engine(url: str, *, pool_size: int) -> Engine:
    """An engine for ``url`` holding up to ``pool_size`` connections.

    Raises ValueError for a database other than SQLite and PostgreSQL.
    """
    parsed = database_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return _postgres_engine(parsed, pool_size)
    if backend == "sqlite":
        return _sqlite_engine(parsed, pool_size)
    raise ValueError(
        f"unsupported database {parsed.drivername!r}: "
        "use sqlite:///path/to/crm.db or postgresql+psycopg://user@host/db"
    )


def _postgres_engine(url: URL, pool_size: int) -> Engine:
    engine = create_sync_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_pre_ping=True,
        connect_args={
            "connect_timeout": POSTGRES_CONNECT_TIMEOUT_SECONDS,
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        },
    )

    @event.listens_for(engine, "connect")
    def _limit_statements(dbapi_connection: Any, _record: Any) -> None:
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True  # a SET outside any transaction
        dbapi_connection.execute(f"SET statement_timeout = {POSTGRES_STATEMENT_TIMEOUT_MS}")
        dbapi_connection.autocommit = autocommit

    return engine


def _sqlite_engine(url: URL, pool_size: int) -> Engine:
    connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
    if not url.database or url.database == ":memory:":
        # One connection shared by every thread, or each would see its own empty database.
        engine = create_sync_engine(url, poolclass=StaticPool, connect_args=connect_args)
    else:
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_sync_engine(
            url, pool_size=pool_size, max_overflow=0, connect_args=connect_args
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
    def _begin(connection: Any) -> None:
        writes = getattr(_unit, "writes", True)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")

    return engine


class Database:
    """An engine, and the threads that run units of work on its sessions."""

    def __init__(self, engine: Engine, threads: int) -> None:
        self.engine = engine
        self._threads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="crm-db")

    @classmethod
    def from_url(cls, url: str, threads: int = 8) -> Database:
        """A Database for ``url`` with ``threads`` threads and as many connections.

        An in-memory SQLite database has one connection, so one thread.
        """
        engine = create_engine(url, pool_size=threads)
        return cls(engine, 1 if isinstance(engine.pool, StaticPool) else threads)

    async def run(self, work: Callable[[Session], T], *, write: bool = True) -> T:
        """Run ``work(session)`` in one transaction on a database thread; return its result.

        The transaction commits when ``work`` returns and rolls back when it
        raises. ``write=False`` marks work that only reads; on SQLite it then
        runs beside a writer instead of queueing for the write lock. A
        cancelled caller does not stop work already running: it completes or
        rolls back on its own, so an activity that retries it must be
        idempotent (``insert_once`` makes a write so).
        """
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(
            self._threads, context.run, self._in_transaction, work, write
        )

    async def all(self, statement: SelectOfScalar[T]) -> list[T]:
        """Every row ``statement`` selects (work that only reads)."""
        return await self.run(lambda session: list(session.exec(statement)), write=False)

    def _in_transaction(self, work: Callable[[Session], T], write: bool) -> T:
        _unit.writes = write
        try:
            with Session(self.engine, expire_on_commit=False) as session, session.begin():
                return work(session)
        finally:
            _unit.writes = True

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
    be optional (nullable, no unique or foreign key constraint, no server
    default), so rows written before it stay valid; any other missing column
    raises RuntimeError: that change needs a migration. Processes that start
    together (worker, API, CLI) take turns: on SQLite the unit of work holds
    the write lock, on PostgreSQL an advisory lock.
    """
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_ID})")
    SQLModel.metadata.create_all(connection)
    inspector = inspect(connection)
    for table in SQLModel.metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            if (
                not column.nullable
                or column.unique
                or column.foreign_keys
                or column.server_default is not None
            ):
                raise RuntimeError(
                    f"table {table.name} has no column {column.name}, which is required, "
                    "unique, a foreign key or has a server default: migrate it by hand"
                )
            column_type = column.type.compile(dialect=connection.dialect)
            connection.exec_driver_sql(
                f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {column_type}'
            )
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


def insert_all_once(session: Session, model: type[SQLModel], rows: list[dict[str, Any]]) -> None:
    """Insert each of ``rows`` (column values, the same columns in each) unless a row with
    its ``key`` exists: one ``INSERT ... ON CONFLICT (key) DO NOTHING`` for them all, with
    the columns' defaults of the database only (``created_now`` has none: give it)."""
    if not rows:
        return
    table: Table = model.__table__  # type: ignore[attr-defined]
    connection = session.connection()
    connection.execute(_insert_unless_keyed(table, connection.dialect.name), rows)


def upsert(session: Session, row: SQLModel) -> None:
    """Insert ``row``, or overwrite every column of the row with its primary key.

    One ``INSERT .. ON CONFLICT (primary key) DO UPDATE``: a retry writes the
    same values again, and two writers never both insert.
    """
    table: Table = type(row).__table__  # type: ignore[attr-defined]
    values = {column.name: getattr(row, column.name) for column in table.columns}
    if any(values[column.name] is None for column in table.primary_key):
        raise ValueError(f"upsert into {table.name} needs the row's primary key")
    connection = session.connection()
    connection.execute(_upsert_of(table, connection.dialect.name), values)


@functools.cache
def _upsert_of(table: Table, dialect_name: str) -> Any:
    """``INSERT .. ON CONFLICT (primary key) DO UPDATE SET`` every other column, built once."""
    dialect = _dialect(dialect_name)
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
def _insert_unless_keyed(table: Table, dialect_name: str) -> Any:
    """``INSERT .. ON CONFLICT (key) DO NOTHING`` for ``table``, built once."""
    return _dialect(dialect_name).insert(table).on_conflict_do_nothing(index_elements=["key"])


@functools.cache
def _insert_once_of(table: Table, dialect_name: str) -> Any:
    """``_insert_unless_keyed`` ``RETURNING id``, built once."""
    return _insert_unless_keyed(table, dialect_name).returning(table.c.id)


def _dialect(name: str) -> ModuleType:
    """The SQLAlchemy dialect module with the ``insert .. on_conflict`` of database ``name``."""
    dialects = {"postgresql": postgresql, "sqlite": sqlite}
    if name not in dialects:
        raise ValueError(f"unsupported database {name!r}")
    return dialects[name]
