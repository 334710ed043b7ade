"""Onboarding's first phase end to end vs a raw-SDK workflow of five no-op activities.

    .venv/bin/python -m bench.first_phase [--count 300] [--concurrency 32] [--postgres]
        [--rounds 1] [--raw-unsandboxed]

Side by side in one run, each on its own fresh dev server:
1. raw SDK, in-memory server: ``RawFirstPhase`` (bench/raw_workflow.py), five
   no-op activities, ``count`` runs to completion, on a worker with the SDK's
   defaults (and, with ``--raw-unsandboxed``, on one that runs workflows outside
   the sandbox, as crmflow's worker does by default: CRMFLOW_WORKER_SANDBOX);
2. the onboarding workflow itself with its five activities as stubs that do
   no I/O (bench/stub_activities.py), in-memory server: what the
   orchestration costs apart from the activities' work;
3. crmflow onboarding, in-memory server: ``count`` onboardings through their
   first phase (enrich over HTTP, assign the CSM, save the customer, kickoff
   task, welcome email over SMTP; SQLite database), timed until the last
   welcome email is recorded as sent;
4. crmflow onboarding on the file-backed server of the dev stack (SQLite
   with WAL), the same way.
Every process (server, worker, SMTP sink, enrichment provider) is a real
subprocess. Prints runs/s of each and the two ratios the issue targets:
onboarding >= 80% of raw, persisted >= 80% of in-memory.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from temporalio.client import Client

from bench.harness import (
    child_cpu_seconds,
    cpu_used_since,
    onboarding_stack,
    process,
    start_onboarding,
    temporal_server,
)

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass
class Measured:
    """Runs per second, and the CPU each process used while they ran."""

    rate: float
    cpu: str


async def start_all(count: int, concurrency: int, start_one: object) -> None:
    semaphore = asyncio.Semaphore(concurrency)

    async def bounded(i: int) -> None:
        async with semaphore:
            await start_one(i)  # type: ignore[operator]

    await asyncio.gather(*(bounded(i) for i in range(count)))


async def raw_rate(count: int, concurrency: int, sandboxed: bool = True) -> Measured:
    """The raw-SDK baseline (bench/raw_workflow.py): the SDK's defaults, or unsandboxed."""
    task_queue = f"raw-{uuid.uuid4().hex[:8]}"
    with temporal_server() as address:
        worker = [sys.executable, "-m", "bench.raw_workflow", address, task_queue]
        with process(worker if sandboxed else [*worker, "unsandboxed"]):
            client = await Client.connect(address)
            handles = []

            async def start_one(i: int) -> None:
                handles.append(
                    await client.start_workflow(
                        "RawFirstPhase", f"raw-{i}", id=f"raw-{i}", task_queue=task_queue
                    )
                )

            cpu = child_cpu_seconds()
            began = time.perf_counter()
            await start_all(count, concurrency, start_one)
            await asyncio.gather(*(handle.result() for handle in handles))
            return Measured(count / (time.perf_counter() - began), cpu_used_since(cpu))


async def stub_rate(count: int, concurrency: int) -> Measured:
    """Onboarding's workflow with stub activities (bench/stub_activities.py), in-memory server."""
    task_queue = f"stub-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as scratch:
        done = Path(scratch) / "welcomed"
        done.touch()
        worker = [sys.executable, "-m", "bench.stub_activities"]
        with temporal_server() as address, process([*worker, address, task_queue, str(done)]):
            client = await Client.connect(address)

            async def start_one(i: int) -> None:
                await start_onboarding(client, task_queue, f"stub-{i}")

            await asyncio.sleep(2)  # let the worker start polling
            cpu = child_cpu_seconds()
            began = time.perf_counter()
            await start_all(count, concurrency, start_one)
            while len(done.read_text().splitlines()) < count:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            return Measured(count / (time.perf_counter() - began), cpu_used_since(cpu))


SENT_WELCOMES = (
    "SELECT count(*) FROM outbound_emails WHERE template = 'welcome' AND status = 'sent'"
)


def sent_welcomes(database: Path | str) -> int:
    """Welcome emails sent, from the SQLite file or PostgreSQL schema the worker writes."""
    if isinstance(database, str):  # a PostgreSQL schema
        with psycopg.connect(POSTGRES, options=f"-csearch_path={database}") as connection:
            try:
                row = connection.execute(SENT_WELCOMES).fetchone()
            except psycopg.errors.UndefinedTable:
                return 0
            return int(row[0]) if row else 0
    try:
        with sqlite3.connect(database, timeout=5) as connection:
            return int(connection.execute(SENT_WELCOMES).fetchone()[0])
    except sqlite3.OperationalError:  # the worker has not created the table yet
        return 0


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh schema in the local PostgreSQL for the worker's tables, dropped after."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield schema
        finally:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


async def onboarding_rate(
    count: int, concurrency: int, persisted: bool, postgres: bool = False
) -> Measured:
    task_queue = f"onb-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as scratch, ExitStack() as stack:
        state = Path(scratch)
        database: Path | str = state / "crm.db"
        extra = {}
        if postgres:
            database = stack.enter_context(postgres_schema())
            extra["CRMFLOW_DATABASE_URL"] = (
                f"postgresql+psycopg://postgres@127.0.0.1:5432/test"
                f"?options=-csearch_path%3D{database}"
            )
        address, _ = stack.enter_context(
            onboarding_stack(state, task_queue, persisted=persisted, **extra)
        )
        client = await Client.connect(address)

        async def start_one(i: int) -> None:
            await start_onboarding(client, task_queue, f"bench-{i}")

        await asyncio.sleep(2)  # let the worker create its tables and start polling
        cpu = child_cpu_seconds()
        began = time.perf_counter()
        await start_all(count, concurrency, start_one)
        while sent_welcomes(database) < count:  # noqa: ASYNC110 - polling another process
            await asyncio.sleep(0.2)
        return Measured(count / (time.perf_counter() - began), cpu_used_since(cpu))


async def one_round(
    count: int, concurrency: int, with_postgres: bool, raw_unsandboxed: bool
) -> tuple[float, float, float | None]:
    """Every measurement once; returns (onboarding / raw, persisted / in-memory,
    onboarding / raw without the sandbox if measured)."""
    raw = await raw_rate(count, concurrency)
    print(f"raw SDK, in-memory server:      {raw.rate:6.1f} workflows/s (5 no-op activities)")
    print(f"  CPU: {raw.cpu}")
    unsandboxed = await raw_rate(count, concurrency, sandboxed=False) if raw_unsandboxed else None
    if unsandboxed:
        print(
            f"raw SDK, workflows outside the sandbox: {unsandboxed.rate:6.1f} workflows/s "
            f"({100 * unsandboxed.rate / raw.rate:.0f}% of the SDK's defaults)"
        )
        print(f"  CPU: {unsandboxed.cpu}")
    stubbed = await stub_rate(count, concurrency)
    print(
        f"onboarding workflow, 5 stub activities: {stubbed.rate:6.1f} first phases/s "
        f"({100 * stubbed.rate / raw.rate:.0f}% of raw: "
        "crmflow's orchestration without the activities' I/O)"
    )
    print(f"  CPU: {stubbed.cpu}")
    memory = await onboarding_rate(count, concurrency, persisted=False)
    print(f"onboarding, in-memory server:   {memory.rate:6.1f} first phases/s")
    print(f"  CPU: {memory.cpu}")
    persisted = await onboarding_rate(count, concurrency, persisted=True)
    print(f"onboarding, file-backed (WAL):  {persisted.rate:6.1f} first phases/s")
    print(f"  CPU: {persisted.cpu}")
    if with_postgres:
        on_postgres = await onboarding_rate(count, concurrency, persisted=False, postgres=True)
        print(
            f"onboarding, in-memory server, PostgreSQL CRM database: {on_postgres.rate:6.1f} "
            f"first phases/s ({100 * on_postgres.rate / raw.rate:.0f}% of raw)"
        )
        print(f"  CPU: {on_postgres.cpu} (PostgreSQL's own not counted)")
    print(
        f"onboarding = {100 * memory.rate / raw.rate:.0f}% of raw (target >= 80%); "
        f"persisted = {100 * persisted.rate / memory.rate:.0f}% of in-memory (target >= 80%); "
        f"{count} runs each, {concurrency} starts in flight"
    )
    if unsandboxed:
        ratio = memory.rate / unsandboxed.rate
        print(f"onboarding = {100 * ratio:.0f}% of raw without the sandbox")
    return (
        memory.rate / raw.rate,
        persisted.rate / memory.rate,
        memory.rate / unsandboxed.rate if unsandboxed else None,
    )


async def run(
    count: int, concurrency: int, with_postgres: bool, rounds: int, raw_unsandboxed: bool
) -> None:
    ratios = []
    for number in range(1, rounds + 1):
        if rounds > 1:
            print(f"round {number} of {rounds}")
        ratios.append(await one_round(count, concurrency, with_postgres, raw_unsandboxed))
    if rounds > 1:
        print(
            f"median of {rounds} rounds: onboarding = {spread([r[0] for r in ratios])} of raw "
            f"(target >= 80%); persisted = {spread([r[1] for r in ratios])} of in-memory "
            "(target >= 80%)"
        )
        if raw_unsandboxed:
            unsandboxed = spread([r[2] or 0.0 for r in ratios])
            print(f"median: onboarding = {unsandboxed} of raw without the sandbox")


def spread(ratios: list[float]) -> str:
    """``85% (72-104%, 4 of 5 rounds >= 80%)``: the median, the range, the rounds on target."""
    on_target = sum(ratio >= 0.8 for ratio in ratios)
    return (
        f"{100 * statistics.median(ratios):.0f}% ({100 * min(ratios):.0f}-"
        f"{100 * max(ratios):.0f}%, {on_target} of {len(ratios)} rounds >= 80%)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--postgres", action="store_true", help="also run onboarding on the local PostgreSQL"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure everything this many times and report the median ratios "
        "(a shared machine's speed drifts between runs)",
    )
    parser.add_argument(
        "--raw-unsandboxed",
        action="store_true",
        help="also measure the raw worker with its workflows outside the sandbox, "
        "as crmflow's worker runs them",
    )
    args = parser.parse_args()
    asyncio.run(run(args.count, args.concurrency, args.postgres, args.rounds, args.raw_unsandboxed))


if __name__ == "__main__":
    main()
