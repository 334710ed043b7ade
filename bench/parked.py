"""Worker memory with many onboardings parked on their day-3 timer.

    .venv/bin/python -m bench.parked [--count 10000] [--concurrency 32] [--window 200]

Starts a file-backed dev server (as the dev stack runs it), the SMTP sink,
the enrichment provider and one ``crmflow worker``; starts ``count``
onboardings, waits until every one has finished its first phase (welcome
email sent) and is parked on its timer, then reports the worker's resident
memory (VmRSS) and its peak (VmHWM). Issue target: RSS < 300 MiB at 10,000.

The worker keeps at most ``max_cached_workflows`` (SDK default 1,000) runs in
memory; a parked run outside the cache costs the worker nothing until its
timer fires, when it is replayed from history.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from contextlib import ExitStack
from functools import partial
from pathlib import Path

from temporalio.client import Client

from bench.first_phase import sent_welcomes, start_all
from bench.harness import onboarding_stack, start_onboarding


def memory_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MiB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


async def run(count: int, concurrency: int, window: int) -> None:
    task_queue = f"parked-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as scratch, ExitStack() as stack:
        state = Path(scratch)
        address, child = stack.enter_context(onboarding_stack(state, task_queue, persisted=True))
        await asyncio.sleep(2)
        idle_rss, _ = memory_mib(child.pid)
        client = await Client.connect(address)

        async def start_one(i: int) -> None:
            await start_onboarding(client, task_queue, f"parked-{i}")

        async def start_after(offset: int, i: int) -> None:
            await start_one(offset + i)

        # Sign-ups arrive as fast as the worker takes them (at most ``window`` in their
        # first phase at once), as they would in production; starting all at once
        # would only measure a backlog thrashing the worker's cache.
        began = time.perf_counter()
        last_report = began
        started = done = 0
        while done < count:
            done = sent_welcomes(state / "crm.db")
            batch = min(count - started, window - (started - done))
            if batch > 0:
                await start_all(batch, concurrency, partial(start_after, started))
                started += batch
            if time.perf_counter() - last_report > 30:
                rss, _ = memory_mib(child.pid)
                print(f"  {done} parked, {started} started, worker RSS {rss:.0f} MiB", flush=True)
                last_report = time.perf_counter()
            await asyncio.sleep(0.5)
        elapsed = time.perf_counter() - began
        await asyncio.sleep(5)  # settle: the last workflow tasks finish
        rss, peak = memory_mib(child.pid)
        print(
            f"{count} onboardings parked on their day-3 timer after {elapsed:.0f} s "
            f"({count / elapsed:.1f}/s end to end); worker RSS {rss:.0f} MiB "
            f"(peak {peak:.0f} MiB, idle {idle_rss:.0f} MiB; target < 300 MiB)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--window", type=int, default=200, help="runs in their first phase")
    args = parser.parse_args()
    asyncio.run(run(args.count, args.concurrency, args.window))


if __name__ == "__main__":
    main()
