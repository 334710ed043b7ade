"""How long choosing an assignee takes as the assignments table grows.

    .venv/bin/python -m bench.assignments [--rows 100000] [--choices 50] [--postgres]

Fills a fresh database (a SQLite file, or a scratch schema in the local
PostgreSQL) with ``rows`` past assignments of the ``csm-smb`` pool, 10% of
them still active, then times ``choices`` calls of the ``assign_owner``
activity, each a new subject. Every choice reads each member's open load
and latest assignment under the database's assignment lock, so its cost
bounds how many assignments per second all workers together can make.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import insert
from sqlmodel import Session
from temporalio.testing import ActivityEnvironment

from activities.assignment import AssignmentActivities
from bench.first_phase import POSTGRES, postgres_schema
from crm.policy import Policy
from crm.store.db import Database
from crm.store.models import Assignment
from workflows.contracts import AssignmentRequest


@contextmanager
def database_url(postgres: bool) -> Iterator[str]:
    if postgres:
        with postgres_schema() as schema:
            yield POSTGRES.replace("postgresql://", "postgresql+psycopg://") + (
                f"?options=-csearch_path%3D{schema}"
            )
        return
    with tempfile.TemporaryDirectory() as scratch:
        yield f"sqlite:///{scratch}/crm.db"


async def time_choices(url: str, rows: int, choices: int) -> float:
    """Milliseconds per assignment after ``rows`` past assignments."""
    database = Database.from_url(url)
    await database.create_tables()
    policy = Policy()
    members = policy.pools["csm-smb"]
    now = datetime.now(UTC)
    past = [
        {
            "key": f"past-{i}",
            "process_id": f"onboarding-past-{i}",
            "pool": "csm-smb",
            "subject_id": f"past-{i}",
            "assignee_id": members[i % len(members)],
            "active": i % 10 == 0,
            "assigned_at": now,
        }
        for i in range(rows)
    ]

    def fill(session: Session) -> None:
        for start in range(0, rows, 5000):
            session.execute(insert(Assignment), past[start : start + 5000])

    try:
        await database.run(fill)
        assignment = AssignmentActivities(database, policy)
        environment = ActivityEnvironment()
        began = time.perf_counter()
        for i in range(choices):
            await environment.run(
                assignment.assign_owner,
                AssignmentRequest(
                    key=f"new-{i}",
                    process_id=f"onboarding-new-{i}",
                    pool="csm-smb",
                    subject_id=f"new-{i}",
                ),
            )
        return (time.perf_counter() - began) / choices * 1000
    finally:
        await database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--choices", type=int, default=50)
    parser.add_argument("--postgres", action="store_true", help="the local PostgreSQL, not SQLite")
    args = parser.parse_args()
    with database_url(args.postgres) as url:
        per_choice = asyncio.run(time_choices(url, args.rows, args.choices))
    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"{backend}, {args.rows} past assignments: {per_choice:.1f} ms per assignment "
        f"({args.choices} choices)"
    )


if __name__ == "__main__":
    main()
