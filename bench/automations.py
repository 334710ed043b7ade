"""Users' automations vs the hand-coded onboarding, side by side in one run.

    .venv/bin/python -m bench.automations [--count 300] [--concurrency 32] [--rounds 3]
    .venv/bin/python -m bench.automations --parked 10000

Rate (default): each round measures, each on a fresh in-memory dev server with
the SMTP sink, the enrichment provider and one ``crmflow worker`` (real
subprocesses, SQLite), first the one and then the other (the order swaps
every round):
1. ``count`` onboardings through their first phase (enrich over HTTP, assign
   the CSM, save the customer, kickoff task, welcome email over SMTP), timed
   until the last welcome email is recorded as sent;
2. ``count`` runs of ``ONBOARDING_AS_AUTOMATION``: the same kickoff task for a
   CSM assigned from the pool, due in 2 business days, and the same welcome
   email, then a wait like onboarding's. Automations have no enrichment or
   customer-record step, so they make 3 activity calls to onboarding's 5.
Prints first phases per second of each, the ratio per round, and the median
ratio with its range (target >= 90%).

``--parked N``: N runs of each parked on their wait, one after the other on a
file-backed server each, and the worker's resident memory once all are
parked (target: automations within 10% of onboardings).
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from temporalio.client import Client

from bench.first_phase import sent_welcomes, start_all
from bench.harness import onboarding_stack, start_onboarding
from bench.parked import memory_mib
from crm.automations.validation import parse_definition
from crm.policy import Policy
from workflows.automation_types import AutomationInput, RecordEvent, automation_run_id

ONBOARDING_AS_AUTOMATION = {
    "id": "onboarding-first-phase",
    "name": "Onboarding's first phase, as an automation",
    "object": "customer",
    "fields": {"company_name": "string", "contact_name": "string", "contact_email": "string"},
    "trigger": {"types": ["created"]},
    "steps": [
        {
            "id": "kickoff",
            "task": {
                "assignee": {"pool": "csm-smb"},
                "title": "Kickoff call with {{ record.company_name }}",
                "detail": "Contact {{ record.contact_name }}.",
                "due": {"amount": 2, "unit": "business_days"},
            },
        },
        {
            "id": "welcome",
            "email": {
                "to": {"field": "contact_email"},
                "subject": "Welcome to crmflow, {{ record.company_name }}",
                "body": "Hi {{ record.contact_name }},\n\nwelcome aboard.\n",
            },
        },
        {
            "id": "wait_for_activation",
            "wait": {"event": {"types": ["updated"]}, "timeout": {"amount": 3, "unit": "days"}},
        },
    ],
}
AUTOMATION_WELCOMES = (
    "SELECT count(*) FROM outbound_emails "
    "WHERE template = 'onboarding-first-phase.welcome' AND status = 'sent'"
)


Starter = Callable[[int], Awaitable[None]]


def automation_welcomes(database: Path) -> int:
    try:
        with sqlite3.connect(database, timeout=5) as connection:
            return int(connection.execute(AUTOMATION_WELCOMES).fetchone()[0])
    except sqlite3.OperationalError:  # the worker has not created the table yet
        return 0


def automation_starter(client: Client, task_queue: str) -> Starter:
    """Starts run ``i`` of ``ONBOARDING_AS_AUTOMATION`` as the API does for a matched event."""
    policy = Policy()
    definition = parse_definition(ONBOARDING_AS_AUTOMATION, policy)
    calendar = policy.calendars[definition.calendar].spec()

    async def start(i: int) -> None:
        record_id = f"c-{i}"
        record = {
            "company_name": "Bench Co",
            "contact_name": "Bea Bench",
            "contact_email": f"bea.{i}@bench-co.io",
        }
        event = RecordEvent(
            event_id=f"evt-{i}",
            object="customer",
            record_id=record_id,
            type="created",
            occurred_at=datetime.now(UTC),
            record=record,
        )
        await client.start_workflow(
            "AutomationWorkflow",
            AutomationInput(
                automation_id=definition.id,
                version=1,
                definition=definition,
                calendar=calendar,
                record_id=record_id,
                record=record,
                event=event,
                enrolled_at=event.occurred_at,
            ),
            id=automation_run_id(definition.id, "customer", record_id),
            task_queue=task_queue,
        )

    return start


def _runs_of(kind: str, client: Client, task_queue: str) -> tuple[Starter, Callable[[Path], int]]:
    """How to start run ``i`` of ``kind``, and how many have sent their welcome email."""
    if kind == "automation":
        return automation_starter(client, task_queue), automation_welcomes

    async def start_one(i: int) -> None:
        await start_onboarding(client, task_queue, f"bench-{i}")

    return start_one, sent_welcomes


async def measure(kind: str, count: int, concurrency: int) -> float:
    """First phases per second of ``kind`` (``onboarding`` or ``automation``)."""
    task_queue = f"{kind}-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as scratch, ExitStack() as stack:
        state = Path(scratch)
        address, _ = stack.enter_context(onboarding_stack(state, task_queue, persisted=False))
        client = await Client.connect(address)
        start_one, welcomed = _runs_of(kind, client, task_queue)
        await asyncio.sleep(2)  # let the worker create its tables and start polling
        began = time.perf_counter()
        await start_all(count, concurrency, start_one)
        while welcomed(state / "crm.db") < count:  # noqa: ASYNC110 - polling another process
            await asyncio.sleep(0.2)
        return count / (time.perf_counter() - began)


async def rates(count: int, concurrency: int, rounds: int) -> None:
    ratios = []
    for number in range(1, rounds + 1):
        order = ("onboarding", "automation") if number % 2 else ("automation", "onboarding")
        measured = {kind: await measure(kind, count, concurrency) for kind in order}
        ratio = measured["automation"] / measured["onboarding"]
        ratios.append(ratio)
        print(
            f"round {number}: onboarding {measured['onboarding']:.1f}/s, "
            f"automation {measured['automation']:.1f}/s, automation = {100 * ratio:.0f}% "
            f"(first: {order[0]})",
            flush=True,
        )
    print(
        f"{count} first phases x {rounds} rounds, {concurrency} starts in flight: automation = "
        f"{100 * statistics.median(ratios):.0f}% of onboarding (median; range "
        f"{100 * min(ratios):.0f}-{100 * max(ratios):.0f}%; target >= 90%)"
    )


async def parked(kind: str, count: int, concurrency: int, window: int) -> tuple[float, float]:
    """(RSS, peak) in MiB of the worker once ``count`` runs of ``kind`` are parked."""
    task_queue = f"parked-{kind}-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as scratch, ExitStack() as stack:
        state = Path(scratch)
        address, child = stack.enter_context(onboarding_stack(state, task_queue, persisted=True))
        await asyncio.sleep(2)
        client = await Client.connect(address)
        start_one, welcomed = _runs_of(kind, client, task_queue)

        async def start_after(offset: int, i: int) -> None:
            await start_one(offset + i)

        started = done = 0
        while done < count:  # at most ``window`` in their first phase at once
            done = welcomed(state / "crm.db")
            batch = min(count - started, window - (started - done))
            if batch > 0:
                await start_all(batch, concurrency, partial(start_after, started))
                started += batch
            await asyncio.sleep(0.5)
        await asyncio.sleep(5)  # the last workflow tasks finish
        return memory_mib(child.pid)


async def parked_side_by_side(count: int, concurrency: int, window: int) -> None:
    measured = {}
    for kind in ("onboarding", "automation"):
        measured[kind] = await parked(kind, count, concurrency, window)
        rss, peak = measured[kind]
        print(f"{count} {kind} runs parked: worker RSS {rss:.0f} MiB (peak {peak:.0f})", flush=True)
    ratio = measured["automation"][0] / measured["onboarding"][0]
    print(f"automation RSS = {100 * ratio:.0f}% of onboarding's (target <= 110%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--parked", type=int, default=0, help="measure memory with N parked")
    parser.add_argument("--window", type=int, default=200, help="runs in their first phase")
    args = parser.parse_args()
    if args.parked:
        asyncio.run(parked_side_by_side(args.parked, args.concurrency, args.window))
    else:
        asyncio.run(rates(args.count, args.concurrency, args.rounds))


if __name__ == "__main__":
    main()
