"""The CRM database layer on SQLite and PostgreSQL alike.

Every test runs twice: on a fresh SQLite file (the embedded default) and on
PostgreSQL (production), each PostgreSQL run in a schema of its own that is
dropped afterwards. PostgreSQL is found at ``CRMFLOW_TEST_POSTGRES_URL``
(default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``).
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, SQLModel, func, select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.assignment import AssignmentActivities
from activities.records import RecordActivities
from activities.tasks import TaskActivities
from activities.usage import UsageActivities
from crm.platform.principals import hash_key
from crm.policy import Policy
from crm.store.db import Database, Keyed, insert_once
from crm.store.keystore import create_key, list_keys, revoke_key
from crm.store.models import Assignment, AuditEntry, Customer, Task, UsageReport, as_utc
from crm.store.task_completion import complete_task
from workflows.contracts import (
    AssignmentRequest,
    AuditRecord,
    CloseTasksRequest,
    CustomerRecord,
    ReleaseRequest,
    TaskRequest,
    UsageRequest,
    step_key,
)

POSTGRES_URL = os.environ.get(
    "CRMFLOW_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

ModelT = TypeVar("ModelT", bound=SQLModel)
KeyedT = TypeVar("KeyedT", bound=Keyed)


def execute(engine: Engine, statement: str) -> None:
    """Run one ``statement`` in a transaction of its own (blocking)."""
    with engine.begin() as connection:
        connection.execute(text(statement))


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A database with every table created, on the backend named by the parameter."""
    if request.param == "sqlite":
        database = Database.from_url(f"sqlite:///{tmp_path / 'crm.db'}")
        await database.create_tables()
        try:
            yield database
        finally:
            await database.dispose()
        return

    schema = f"t_{uuid.uuid4().hex}"
    admin = create_engine(POSTGRES_URL)
    try:
        await asyncio.to_thread(execute, admin, f'CREATE SCHEMA "{schema}"')
    except OperationalError as err:
        admin.dispose()
        # A required service, not an optional one: a skip would hide what CI must prove.
        pytest.fail(
            f"PostgreSQL not reachable at {POSTGRES_URL}: {err.orig} "
            "(start it, or point CRMFLOW_TEST_POSTGRES_URL at one)"
        )
    database = Database.from_url(f"{POSTGRES_URL}?options=-csearch_path%3D{schema}")
    try:
        await database.create_tables()
        yield database
    finally:
        await database.dispose()
        await asyncio.to_thread(execute, admin, f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def audit_entry(key: str = "onboarding-c-1/enrich", **overrides: Any) -> AuditEntry:
    fields: dict[str, Any] = {
        "key": key,
        "process_id": key.partition("/")[0],
        "step": key.partition("/")[2],
        "detail": {"industry": "Software", "employees": 42, "tags": ["a", "b"]},
    }
    return AuditEntry(**(fields | overrides))


def task_row(key: str = "onboarding-c-1/task_kickoff", **overrides: Any) -> Task:
    fields: dict[str, Any] = {
        "key": key,
        "process_id": key.partition("/")[0],
        "customer_id": "c-1",
        "assignee_id": "csm-ana",
        "kind": "kickoff",
        "title": "Kickoff call with Acme Corp",
        "due_at": datetime(2030, 1, 3, 17, tzinfo=UTC),
    }
    return Task(**(fields | overrides))


def assignment_request(
    subject_id: str, pool: str = "csm-smb", **overrides: Any
) -> AssignmentRequest:
    process_id = f"onboarding-{subject_id}"
    fields: dict[str, Any] = {
        "key": step_key(process_id, "assign_csm"),
        "process_id": process_id,
        "pool": pool,
        "subject_id": subject_id,
    }
    return AssignmentRequest(**(fields | overrides))


async def row_count(database: Database, model: type[Any]) -> int:
    query = select(func.count()).select_from(model)
    return int(await database.run(lambda session: session.exec(query).one()))


async def one_row(database: Database, model: type[ModelT]) -> ModelT:
    """The table's only row; raises unless there is exactly one."""
    return await database.run(lambda session: session.exec(select(model)).one())


async def insert(database: Database, row: KeyedT) -> tuple[KeyedT, bool]:
    """``insert_once`` of ``row`` in a transaction of its own."""
    return await database.run(lambda session: insert_once(session, row))


# Schema


async def test_create_tables_creates_every_table_and_can_run_again(db: Database) -> None:
    await db.create_tables()

    tables = await db.run(lambda session: set(inspect(session.connection()).get_table_names()))

    assert {"customers", "assignments", "tasks", "outbound_emails", "audit_entries"} <= tables


async def test_create_tables_adds_an_optional_column_a_table_gained_keeping_its_rows(
    db: Database,
) -> None:
    # The worker and the API start together: both extend the schema at once.
    # A tasks table from before tasks had a tenant, holding a task.
    def drop_tenant(session: Session) -> None:
        session.connection().exec_driver_sql("DROP INDEX ix_tasks_tenant")
        session.connection().exec_driver_sql("ALTER TABLE tasks DROP COLUMN tenant")

    await db.run(drop_tenant)
    await db.run(
        lambda session: session.connection().exec_driver_sql(
            "INSERT INTO tasks (key, process_id, customer_id, assignee_id, kind, title, detail,"
            " status, due_at, created_at) VALUES ('p/task_kickoff', 'p', 'c-1', 'csm-ana',"
            " 'kickoff', 'Kickoff', '', 'open', '2026-12-01 09:00:00', '2026-11-23 09:00:00')"
        )
    )

    other_process = Database.from_url(db.engine.url.render_as_string(hide_password=False))
    try:
        await asyncio.gather(db.create_tables(), other_process.create_tables())
    finally:
        await other_process.dispose()

    def columns_and_indexes(session: Session) -> tuple[set[str], set[str | None]]:
        inspector = inspect(session.connection())
        return (
            {column["name"] for column in inspector.get_columns("tasks")},
            {index["name"] for index in inspector.get_indexes("tasks")},
        )

    columns, indexes = await db.run(columns_and_indexes)
    assert "tenant" in columns and "ix_tasks_tenant" in indexes
    task = await one_row(db, Task)
    assert (task.key, task.tenant) == ("p/task_kickoff", None)


async def test_a_second_row_with_the_same_key_is_refused_by_the_database(db: Database) -> None:
    await db.run(lambda session: session.add(task_row()))
    with pytest.raises(IntegrityError):
        await db.run(lambda session: session.add(task_row(title="a different title")))

    assert await row_count(db, Task) == 1


async def test_timestamps_and_json_round_trip(db: Database) -> None:
    due = datetime(2030, 1, 3, 18, 30, tzinfo=UTC)
    await insert(db, task_row(due_at=due))
    await insert(db, audit_entry())

    task = await one_row(db, Task)
    entry = await one_row(db, AuditEntry)

    assert as_utc(task.due_at) == due
    assert as_utc(task.due_at).tzinfo == UTC
    assert entry.detail == {"industry": "Software", "employees": 42, "tags": ["a", "b"]}


async def test_a_read_runs_while_a_write_holds_the_database(db: Database) -> None:
    holding, release = threading.Event(), threading.Event()

    def slow_write(session: Session) -> None:
        insert_once(session, audit_entry(key="onboarding-c-1/slow"))
        session.flush()
        holding.set()
        assert release.wait(10), "the read never finished"

    writing = asyncio.ensure_future(db.run(slow_write))
    assert await asyncio.to_thread(holding.wait, 10)
    rows = await asyncio.wait_for(
        db.run(lambda session: list(session.exec(select(AuditEntry))), write=False), 5
    )
    release.set()
    await writing

    assert rows == []  # it did not wait for the write, and does not see it
    assert await row_count(db, AuditEntry) == 1


async def test_waits_on_the_database_have_a_time_limit(db: Database) -> None:
    # A server that stops answering fails the work instead of holding a thread forever.
    postgres = db.engine.dialect.name == "postgresql"
    query = "SHOW statement_timeout" if postgres else "PRAGMA busy_timeout"
    limit = await db.run(lambda session: session.connection().exec_driver_sql(query).scalar())
    assert limit == ("30s" if postgres else 10_000)


async def test_in_memory_sqlite_is_one_database_for_every_unit_of_work() -> None:
    memory = Database.from_url("sqlite://")
    try:
        await memory.create_tables()
        await asyncio.gather(*(insert(memory, audit_entry(key=f"k/{n}")) for n in range(5)))
        assert await row_count(memory, AuditEntry) == 5
    finally:
        await memory.dispose()


# insert_once


async def test_insert_once_inserts_a_new_key_then_returns_the_stored_row(db: Database) -> None:
    first, inserted = await insert(db, audit_entry(detail={"attempt": 1}))
    again, inserted_again = await insert(db, audit_entry(detail={"attempt": 2}))

    assert (inserted, inserted_again) == (True, False)
    assert first.id is not None and again.id == first.id
    assert again.detail == {"attempt": 1}
    assert await row_count(db, AuditEntry) == 1


async def test_insert_once_keeps_rows_with_different_keys(db: Database) -> None:
    results = [await insert(db, audit_entry(key=f"onboarding-c-1/milestone:{n}")) for n in range(3)]

    assert [inserted for _, inserted in results] == [True, True, True]
    assert len({row.id for row, _ in results}) == 3


@pytest.mark.parametrize("model", ["audit", "task"])
async def test_concurrent_insert_once_with_one_key_stores_one_row(db: Database, model: str) -> None:
    def make(attempt: int) -> AuditEntry | Task:
        if model == "audit":
            return audit_entry(detail={"attempt": attempt})
        return task_row(title=f"attempt {attempt}")

    results = await asyncio.gather(*(insert(db, make(n)) for n in range(8)))

    assert sum(inserted for _, inserted in results) == 1
    assert len({row.id for row, _ in results}) == 1
    assert await row_count(db, AuditEntry if model == "audit" else Task) == 1


# Tasks and records through their activities


async def test_create_task_stores_one_task_and_its_audit_entry(db: Database) -> None:
    tasks = TaskActivities(db)
    request = TaskRequest(
        key="onboarding-c-1/task_kickoff",
        process_id="onboarding-c-1",
        customer_id="c-1",
        assignee_id="csm-ana",
        kind="kickoff",
        title="Kickoff call with Acme Corp",
        due_at=datetime(2030, 1, 3, 17, tzinfo=timezone(timedelta(hours=1))),
        detail="Plan starter; contact Ann Lee.",
    )

    refs = await asyncio.gather(
        *(ActivityEnvironment().run(tasks.create_task, request) for _ in range(4))
    )

    assert len({ref.task_id for ref in refs}) == 1
    assert sum(ref.created for ref in refs) == 1
    task = await one_row(db, Task)
    audit = await one_row(db, AuditEntry)
    assert (task.kind, task.status, task.assignee_id) == ("kickoff", "open", "csm-ana")
    assert as_utc(task.due_at) == request.due_at == datetime(2030, 1, 3, 16, tzinfo=UTC)
    assert audit.step == "task:kickoff"
    assert audit.detail == {"task_id": task.id, "assignee_id": "csm-ana"}


async def test_upsert_customer_creates_then_updates_one_record(db: Database) -> None:
    records = RecordActivities(db)
    record = CustomerRecord(
        customer_id="c-1",
        company_name="Acme Corp",
        contact_name="Ann Lee",
        contact_email="ann@acme-corp.io",
        plan="starter",
        stage="onboarding",
        domain="acme-corp.io",
        csm_id="csm-ana",
    )

    await ActivityEnvironment().run(records.upsert_customer, record)
    await ActivityEnvironment().run(
        records.upsert_customer, CustomerRecord(**{**record.__dict__, "stage": "activated"})
    )

    [customer] = await db.run(lambda session: list(session.exec(select(Customer)).all()))
    assert (customer.customer_id, customer.stage, customer.csm_id) == (
        "c-1",
        "activated",
        "csm-ana",
    )


async def test_record_step_is_stored_once_per_key(db: Database) -> None:
    records = RecordActivities(db)
    step = AuditRecord(
        key="onboarding-c-1/outcome",
        process_id="onboarding-c-1",
        step="outcome",
        detail={"outcome": "activated"},
    )

    first = await ActivityEnvironment().run(records.record_step, step)
    again = await ActivityEnvironment().run(records.record_step, step)

    assert (first, again) == (True, False)
    assert await row_count(db, AuditEntry) == 1


# Assignment: least open load first, least recently assigned on ties


async def assign(assignment: AssignmentActivities, subject_id: str, **overrides: Any) -> str:
    chosen = await ActivityEnvironment().run(
        assignment.assign_owner, assignment_request(subject_id, **overrides)
    )
    return chosen.assignee_id


async def release(assignment: AssignmentActivities, subject_id: str) -> bool:
    key = assignment_request(subject_id).key
    released: bool = await ActivityEnvironment().run(
        assignment.release_assignment, ReleaseRequest(key=key)
    )
    return released


async def test_assignment_spreads_equal_loads_in_pool_order(db: Database) -> None:
    assignment = AssignmentActivities(db, Policy())

    chosen = [await assign(assignment, f"c-{n}") for n in range(6)]

    assert chosen == ["csm-ana", "csm-ben", "csm-cleo"] * 2


async def test_simultaneous_assignments_still_spread_the_load(db: Database) -> None:
    assignment = AssignmentActivities(db, Policy())

    chosen = await asyncio.gather(*(assign(assignment, f"c-{n}") for n in range(6)))

    assert Counter(chosen) == {"csm-ana": 2, "csm-ben": 2, "csm-cleo": 2}


async def test_assignments_from_two_workers_at_once_still_spread_the_load(db: Database) -> None:
    # Two workers are two processes with their own connections: the database's
    # lock, not one process's, must keep them from seeing the same loads.
    other_worker = Database.from_url(db.engine.url.render_as_string(hide_password=False))
    workers = [AssignmentActivities(db, Policy()), AssignmentActivities(other_worker, Policy())]
    try:
        chosen = await asyncio.gather(*(assign(workers[n % 2], f"c-{n}") for n in range(12)))
    finally:
        await other_worker.dispose()

    assert Counter(chosen) == {"csm-ana": 4, "csm-ben": 4, "csm-cleo": 4}


async def test_assignment_prefers_the_member_with_the_fewest_active_assignments(
    db: Database,
) -> None:
    assignment = AssignmentActivities(db, Policy())
    for n in range(3):
        await assign(assignment, f"c-{n}")  # ana, ben, cleo: one each

    assert await release(assignment, "c-1") is True  # ben is free again
    assert await assign(assignment, "c-3") == "csm-ben"
    assert await assign(assignment, "c-4") == "csm-ana"


async def work_task(tasks: TaskActivities, subject_id: str, assignee_id: str) -> int:
    """A ``call`` task for ``assignee_id`` that is the work of ``subject_id``'s assignment."""
    request = assignment_request(subject_id)
    created = await ActivityEnvironment().run(
        tasks.create_task,
        TaskRequest(
            key=step_key(request.process_id, "task_call"),
            process_id=request.process_id,
            customer_id=subject_id,
            assignee_id=assignee_id,
            kind="call",
            title=f"Call {subject_id}",
            due_at=datetime.now(UTC),
            assignment_key=request.key,
        ),
    )
    return created.task_id


async def test_a_done_task_ends_the_assignment_it_is_the_work_of(db: Database) -> None:
    assignment, tasks = AssignmentActivities(db, Policy()), TaskActivities(db)
    for n in range(3):
        await assign(assignment, f"c-{n}")  # ana, ben, cleo: one each
    ben_task = await work_task(tasks, "c-1", "csm-ben")
    cleo_task = await work_task(tasks, "c-2", "csm-cleo")

    done = await db.run(lambda session: complete_task(session, ben_task, "csm-ben", "called"))
    assert done is not None
    assert (done.status, done.completed_by) == ("done", "csm-ben")
    assert await assign(assignment, "c-3") == "csm-ben"  # ben's load dropped with the task

    # Completing it again changes nothing: same time, one audit entry.
    again = await db.run(lambda session: complete_task(session, ben_task, "someone-else"))
    assert again is not None
    assert again.completed_at is not None and done.completed_at is not None
    assert (again.completed_by, as_utc(again.completed_at)) == ("csm-ben", done.completed_at)
    audit = await db.all(select(AuditEntry).where(AuditEntry.step == "task_done:call"))
    assert [entry.detail for entry in audit] == [
        {"task_id": ben_task, "by": "csm-ben", "note": "called"}
    ]
    assert await db.run(lambda session: complete_task(session, 10_000, "csm-ben")) is None

    # A process that closes its tasks ends their assignments as well.
    closed = await ActivityEnvironment().run(
        tasks.close_tasks, CloseTasksRequest(process_id="onboarding-c-2", resolution="lost")
    )
    assert closed == 1
    cleo = await db.run(lambda session: session.get(Task, cleo_task))
    assert cleo is not None
    assert (cleo.status, cleo.completed_by) == ("done", "onboarding-c-2")
    assert await assign(assignment, "c-4") == "csm-cleo"


async def test_assignment_ties_go_to_the_least_recently_assigned(db: Database) -> None:
    assignment = AssignmentActivities(db, Policy())
    for n in range(3):
        await assign(assignment, f"c-{n}")
    for n in (2, 0, 1):
        await release(assignment, f"c-{n}")  # all free; ana was assigned first

    assert [await assign(assignment, f"c-{n}") for n in range(3, 6)] == [
        "csm-ana",
        "csm-ben",
        "csm-cleo",
    ]


async def test_assignment_counts_load_across_pools(db: Database) -> None:
    assignment = AssignmentActivities(db, Policy())
    enterprise = [await assign(assignment, f"c-e{n}", pool="csm-enterprise") for n in range(4)]
    assert enterprise == ["csm-dev", "csm-cleo"] * 2

    # cleo carries two enterprise customers, so the smb pool fills ana and ben first.
    assert [await assign(assignment, f"c-{n}") for n in range(3)] == [
        "csm-ana",
        "csm-ben",
        "csm-ana",
    ]


async def test_assignment_is_made_once_per_key_and_released_once(db: Database) -> None:
    assignment = AssignmentActivities(db, Policy())
    request = assignment_request("c-1")

    first = await ActivityEnvironment().run(assignment.assign_owner, request)
    again = await ActivityEnvironment().run(assignment.assign_owner, request)

    assert again.assignee_id == first.assignee_id == "csm-ana"
    assert (first.assignee_name, first.assignee_email, first.manager_id) == (
        "Ana Ruiz",
        "ana.ruiz@example.com",
        "mgr-hana",
    )
    assert first.open_load == 1
    assert await row_count(db, Assignment) == 1
    assert (await release(assignment, "c-1"), await release(assignment, "c-1")) == (True, False)
    row = await one_row(db, Assignment)
    assert row.active is False and row.released_at is not None


async def test_assignment_prefers_members_with_the_requested_skills(db: Database) -> None:
    staff = tuple(
        member.model_copy(update={"skills": ("de",)}) if member.id == "csm-ben" else member
        for member in Policy().staff
    )
    policy = Policy(staff=staff)
    assignment = AssignmentActivities(db, policy)

    assert await assign(assignment, "c-1", skills=["de"]) == "csm-ben"
    assert await assign(assignment, "c-2", skills=["de"]) == "csm-ben"
    # Nobody speaks Japanese: the whole pool is eligible, least loaded first.
    assert await assign(assignment, "c-3", skills=["ja"]) == "csm-ana"
    assert await assign(assignment, "c-4", skills=["ja"]) == "csm-cleo"


async def test_assignment_from_an_unknown_pool_is_invalid_input(db: Database) -> None:
    assignment = AssignmentActivities(db, Policy())

    with pytest.raises(ApplicationError) as caught:
        await assign(assignment, "c-1", pool="csm-mars")

    assert caught.value.type == "InvalidInput"
    assert caught.value.non_retryable is True
    assert "unknown assignment pool 'csm-mars'" in caught.value.message
    assert await row_count(db, Assignment) == 0


# Usage analysis: a renewal counts only its own tenant's reports


async def test_usage_analysis_counts_only_the_reports_of_the_runs_tenant(db: Database) -> None:
    at = datetime(2026, 10, 1, tzinfo=UTC)
    reports = [
        UsageReport(subscription_id="s-1", metric="seats", used=9, included=10, reported_at=at),
        UsageReport(
            subscription_id="s-1", metric="seats", used=2, included=10, reported_at=at, tenant="a"
        ),
        UsageReport(
            subscription_id="s-1", metric="api", used=10, included=10, reported_at=at, tenant="b"
        ),
    ]
    await db.run(lambda session: session.add_all(reports))
    usage = UsageActivities(db)
    since = at - timedelta(days=1)

    async def utilisation_for(tenant: str | None) -> tuple[str | None, float]:
        request = UsageRequest(subscription_id="s-1", since=since, tenant=tenant)
        summary = await ActivityEnvironment().run(usage.analyse_usage, request)
        return summary.metric, summary.utilisation

    assert await utilisation_for("a") == ("seats", 0.2)
    assert await utilisation_for("b") == ("api", 1.0)
    assert await utilisation_for(None) == ("seats", 0.9)


# API keys made with `crmflow api-key`


async def test_api_keys_are_stored_as_hashes_listed_and_revoked_once(db: Database) -> None:
    key = await create_key(db, "svc-billing", ("service",), tenant="acme")

    [stored] = await list_keys(db)
    assert key.startswith(f"crm_{stored.key_id}_")
    assert stored.key_sha256 == hash_key(key) and key not in stored.model_dump_json()
    assert (stored.principal, stored.roles, stored.tenant) == ("svc-billing", ["service"], "acme")
    assert stored.revoked_at is None

    assert await revoke_key(db, stored.key_id) is True
    assert await revoke_key(db, stored.key_id) is False
    assert await revoke_key(db, "nosuch") is False
    [revoked] = await list_keys(db)
    assert revoked.revoked_at is not None
