"""Onboarding throughput with 1, 2 and 3 worker processes on the same dev server, side by side.

    .venv/bin/python -m bench.workers [--count 300] [--rounds 3] [--workers 1,2,3]

Each measurement gets a fresh file-backed dev server (SQLite WAL, as ``crmflow dev``), an
SMTP sink, an enrichment provider, a SQLite CRM database and N ``crmflow worker``
processes on one task queue. ``count`` onboardings are started at once and timed until
the last welcome email is recorded as sent (the first phase: enrich, assign, kickoff
task, welcome email). Every round measures each N once, in a rotated order. Prints the
median runs/s per N with the range over rounds, and the CPU seconds each kind of process
used in the last round.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from temporalio.client import Client

from bench.first_phase import sent_welcomes, start_all
from bench.harness import (
    child_cpu_seconds,
    cpu_used_since,
    crmflow_env,
    free_port,
    process,
    start_onboarding,
    temporal_server,
    wait_for_port,
    worker,
)


@contextlib.contextmanager
def worker_pool(state: Path, task_queue: str, workers: int) -> Iterator[str]:
    """A file-backed dev server, SMTP sink, enrichment provider and ``workers`` workers."""
    smtp_port, provider_port = free_port(), free_port()
    crmflow = [sys.executable, "-m", "devstack.cli"]
    with contextlib.ExitStack() as stack:
        address = stack.enter_context(temporal_server(state / "temporal.db"))
        sink = [*crmflow, "smtp-sink", "--port", str(smtp_port), "--maildir", f"{state}/mail"]
        stack.enter_context(process(sink))
        provider = [*crmflow, "enrichment-provider", "--port", str(provider_port)]
        stack.enter_context(process([*provider, "--rate", "100000", "--burst", "100000"]))
        wait_for_port(smtp_port)
        wait_for_port(provider_port)
        env = crmflow_env(
            address,
            task_queue,
            state,
            CRMFLOW_SMTP_PORT=str(smtp_port),
            CRMFLOW_ENRICHMENT_URL=f"http://127.0.0.1:{provider_port}",
        )
        for _ in range(workers):
            stack.enter_context(worker(env))
        yield address


async def measure(count: int, workers: int) -> tuple[float, str]:
    """Runs/s through the first phase with ``workers`` worker processes, and the CPU used."""
    task_queue = f"bench-workers-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as scratch:
        state = Path(scratch)
        with worker_pool(state, task_queue, workers) as address:
            client = await Client.connect(address)
            await asyncio.sleep(3)  # let every worker start polling
            cpu = child_cpu_seconds()
            began = time.perf_counter()
            await start_all(
                count, 32, lambda i: start_onboarding(client, task_queue, f"w{workers}-{i}")
            )
            while sent_welcomes(state / "crm.db") < count:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            return count / (time.perf_counter() - began), cpu_used_since(cpu)


async def run(count: int, rounds: int, pool_sizes: list[int]) -> None:
    rates: dict[int, list[float]] = {n: [] for n in pool_sizes}
    cpu: dict[int, str] = {}
    for r in range(rounds):
        order = pool_sizes[r % len(pool_sizes) :] + pool_sizes[: r % len(pool_sizes)]
        for workers in order:
            rate, cpu[workers] = await measure(count, workers)
            rates[workers].append(rate)
            print(f"round {r + 1}, {workers} worker(s): {rate:.1f} onboardings/s ({cpu[workers]})")
    print(f"{count} onboardings through the first phase, file-backed dev server, {rounds} rounds:")
    base = statistics.median(rates[pool_sizes[0]])
    for workers in pool_sizes:
        median = statistics.median(rates[workers])
        print(
            f"  {workers} worker(s): median {median:.1f}/s "
            f"(range {min(rates[workers]):.1f}-{max(rates[workers]):.1f}), "
            f"{median / base:.2f}x of {pool_sizes[0]}; last round CPU: {cpu[workers]}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", default="1,2,3", help="pool sizes, comma-separated")
    args = parser.parse_args()
    pool_sizes = [int(n) for n in args.workers.split(",")]
    asyncio.run(run(args.count, args.rounds, pool_sizes))


if __name__ == "__main__":
    main()
