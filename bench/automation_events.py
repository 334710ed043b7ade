"""Record events through the API vs raw ``client.start_workflow``, and the cost of matching.

    .venv/bin/python -m bench.automation_events [--count 500] [--rounds 3] [--events 300]
                                                [--matching 200] [--concurrency 16]

Each round runs on a fresh in-memory Temporal dev server and a fresh
``crmflow api`` (real subprocesses, SQLite). As in ``bench.starts``, no
worker polls the task queue: both paths are measured up to the server
accepting the start, and no worker competes with them for the two cores.

1. Starts: ``count`` runs of one active automation (created and activated
   through the API) started by ``count`` ``POST /v1/records/events``, each
   with its own event id and record id, against ``count`` raw
   ``client.start_workflow("AutomationWorkflow", ...)`` with the input, id,
   id policy, search attributes and summary ``crm.automations.enrolment.enroll``
   gives; ``concurrency`` in flight, HTTP load from aiohttp. The path that
   goes first swaps every round. Prints starts/s of each, the API's share
   per round, and its median and range (target: at least 85%).
2. Matching: ``events`` events that enrol nobody, posted for a tenant with
   ``matching`` active automations on the event's object (each trigger's
   condition ``record.amount > <a large number>`` is evaluated and is false)
   and for a tenant with one such automation; the API process's CPU seconds
   (``/proc/<pid>/stat``) per event of each, and the difference
   (target: under 2 ms per event added). Each answer must be a 202 that
   enrolled nobody.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy

from bench.harness import crmflow_env, free_port, process, temporal_server, wait_for_port
from crm.automations.validation import parse_definition
from crm.platform.principals import new_api_key, write_api_keys_file
from crm.policy import Policy
from workflows.automation_types import AutomationInput, RecordEvent, automation_run_id
from workflows.common import AUTOMATION_ID, AUTOMATION_VERSION, PROCESS, RECORD_ID, STAGE

OBJECT = "deal"
#: The automation the starts enrol in: a task for the deal's owner's pool and an email,
#: no wait for events (so the API sends the event to no run).
ENROLLING = {
    "id": "deal-created",
    "name": "New deal follow-up",
    "object": OBJECT,
    "fields": {"name": "string", "amount": "double", "contact_email": "string"},
    "trigger": {"types": ["created"], "condition": "record.amount >= 1000.0"},
    "steps": [
        {
            "id": "follow_up",
            "task": {
                "assignee": {"pool": "csm-smb"},
                "title": "Follow up on {{ record.name }}",
                "due": {"amount": 2, "unit": "business_days"},
            },
        },
        {
            "id": "thanks",
            "email": {
                "to": {"field": "contact_email"},
                "subject": "Thanks for your interest, {{ record.name }}",
                "body": "We will be in touch.\n",
            },
        },
    ],
}
#: Tenants of the matching measurement: one with ``--matching`` automations, one with one.
MANY, ONE = "bench-many", "bench-one"


def matching_automation(i: int) -> dict[str, Any]:
    """Automation ``i`` of the matching measurement: its condition is false for every event."""
    return {
        **ENROLLING,
        "id": f"match-{i:03d}",
        "name": f"Large deal {i}",
        "trigger": {"types": ["created"], "condition": f"record.amount > {10**9 + i}.0"},
    }


def deal(i: int) -> dict[str, Any]:
    return {"name": f"Deal {i}", "amount": 5000.0, "contact_email": f"buyer{i}@bench-co.io"}


def event_body(prefix: str, i: int) -> dict[str, Any]:
    return {
        "event_id": f"evt-{prefix}-{i}",
        "object": OBJECT,
        "record_id": f"{prefix}-{i}",
        "type": "created",
        "occurred_at": datetime.now(UTC).isoformat(),
        "record": deal(i),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads), from ``/proc``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def timed(count: int, concurrency: int, start_one: Callable[[int], Awaitable[None]]) -> float:
    """Run ``start_one(0..count-1)`` with ``concurrency`` in flight; returns calls per second."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def drain() -> None:
        while not queue.empty():
            await start_one(queue.get_nowait())

    began = time.perf_counter()
    await asyncio.gather(*(drain() for _ in range(concurrency)))
    return count / (time.perf_counter() - began)


Post = Callable[[str, str, dict[str, Any] | None], Awaitable[dict[str, Any]]]


@contextlib.asynccontextmanager
async def poster(base_url: str, concurrency: int) -> AsyncIterator[Post]:
    """``post(key, path, json)``: the JSON answer of a 2xx, else RuntimeError."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base_url, connector=connector) as session:

        async def post(key: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
            headers = {"Authorization": f"Bearer {key}"}
            async with session.post(path, json=body, headers=headers) as response:
                if response.status // 100 != 2:
                    raise RuntimeError(f"{path}: {response.status} {await response.text()}")
                answer: dict[str, Any] = await response.json()
                return answer

        yield post


@contextlib.contextmanager
def api_process(env: dict[str, str]) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``crmflow api`` (as ``bench.harness.api_server``); yields its URL and its process."""
    port = free_port()
    argv = [sys.executable, "-m", "devstack.cli", "api"]
    with process(argv, {**env, "CRMFLOW_API_PORT": str(port)}) as child:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}", child


async def define(post: Post, key: str, definition: dict[str, Any]) -> None:
    """Create and activate ``definition`` through the API."""
    await post(key, "/v1/automations", definition)
    await post(key, f"/v1/automations/{definition['id']}/activate", None)


def raw_starter(client: Client, task_queue: str) -> Callable[[str, int], Awaitable[None]]:
    """Starts record ``prefix-i``'s run as ``crm.automations.enrolment.enroll`` does (no tenant)."""
    policy = Policy()
    definition = parse_definition(ENROLLING, policy)
    calendar = policy.calendars[definition.calendar].spec()

    async def start(prefix: str, i: int) -> None:
        body = event_body(prefix, i)
        record_id = body["record_id"]
        event = RecordEvent(
            event_id=body["event_id"],
            object=OBJECT,
            record_id=record_id,
            type="created",
            occurred_at=datetime.fromisoformat(body["occurred_at"]),
            record=body["record"],
        )
        await client.start_workflow(
            "AutomationWorkflow",
            AutomationInput(
                automation_id=definition.id,
                version=1,
                definition=definition,
                calendar=calendar,
                record_id=record_id,
                record=body["record"],
                event=event,
                enrolled_at=datetime.now(UTC),
            ),
            id=automation_run_id(definition.id, OBJECT, record_id),
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(PROCESS, "automation"),
                    SearchAttributePair(AUTOMATION_ID, definition.id),
                    SearchAttributePair(AUTOMATION_VERSION, "1"),
                    SearchAttributePair(RECORD_ID, record_id),
                    SearchAttributePair(STAGE, "enrolled"),
                ]
            ),
            static_summary=f"{definition.name}: {OBJECT} {record_id}",
        )

    return start


async def starts(
    post: Post, key: str, client: Client, task_queue: str, args: argparse.Namespace, number: int
) -> tuple[float, float]:
    """(raw starts/s, API starts/s) of round ``number``."""
    start_raw = raw_starter(client, task_queue)

    async def via_api(prefix: str, i: int) -> None:
        answer = await post(key, "/v1/records/events", event_body(prefix, i))
        if len(answer["enrolled"]) != 1:
            raise RuntimeError(f"expected one run enrolled: {answer}")

    await define(post, key, ENROLLING)
    await timed(50, args.concurrency, lambda i: via_api("warm-api", i))
    await timed(50, args.concurrency, lambda i: start_raw("warm-raw", i))
    rate: dict[str, float] = {}
    order = ("raw", "api") if number % 2 else ("api", "raw")
    for path in order:
        if path == "raw":
            rate[path] = await timed(args.count, args.concurrency, lambda i: start_raw("raw", i))
        else:
            rate[path] = await timed(args.count, args.concurrency, lambda i: via_api("api", i))
    return rate["raw"], rate["api"]


async def matching(
    post: Post, keys: dict[str, str], pid: int, args: argparse.Namespace, number: int
) -> dict[str, float]:
    """API CPU ms per event of each tenant (``MANY``, ``ONE``) in round ``number``."""

    async def via_api(tenant: str, prefix: str, i: int) -> None:
        answer = await post(keys[tenant], "/v1/records/events", event_body(prefix, i))
        if answer["enrolled"] or answer["errors"] or answer["skipped"]:
            raise RuntimeError(f"expected nothing to enrol: {answer}")

    async def one_each(tenant: str, ids: range) -> None:
        await asyncio.gather(*(define(post, keys[tenant], matching_automation(i)) for i in ids))

    await one_each(ONE, range(1))
    for first in range(0, args.matching, 8):  # 8 definitions in flight
        await one_each(MANY, range(first, min(first + 8, args.matching)))
    for tenant in (MANY, ONE):  # each version's definition is read, each condition compiled
        await timed(20, 8, partial(via_api, tenant, f"warm-{tenant}"))
    per_event: dict[str, float] = {}
    order = (MANY, ONE) if number % 2 else (ONE, MANY)
    for tenant in order:
        used = cpu_seconds(pid)
        await timed(args.events, 8, partial(via_api, tenant, f"m-{tenant}"))
        per_event[tenant] = 1000 * (cpu_seconds(pid) - used) / args.events
    return per_event


async def run_round(args: argparse.Namespace, number: int) -> tuple[float, float, dict[str, float]]:
    task_queue = f"bench-events-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as scratch, contextlib.ExitStack() as stack:
        state = Path(scratch)
        address = stack.enter_context(temporal_server())
        keys: dict[str, str] = {}
        records = []
        for tenant in (None, MANY, ONE):
            key, record = new_api_key("bench", ("service", "admin"), tenant=tenant)
            keys[tenant or ""] = key
            records.append(record)
        write_api_keys_file(state / "api-keys.yml", records)
        base_url, api = stack.enter_context(api_process(crmflow_env(address, task_queue, state)))
        client = await Client.connect(address)
        async with poster(base_url, args.concurrency) as post:
            raw, via_api = await starts(post, keys[""], client, task_queue, args, number)
            per_event = await matching(post, keys, api.pid, args, number)
    return raw, via_api, per_event


def spread(values: list[float], scale: float = 1.0, digits: int = 0) -> str:
    """``median (min-max)``."""
    median, low, high = (scale * v for v in (statistics.median(values), min(values), max(values)))
    return f"{median:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


async def run(args: argparse.Namespace) -> None:
    raws: list[float] = []
    apis: list[float] = []
    ratios: list[float] = []
    many: list[float] = []
    one: list[float] = []
    added: list[float] = []
    for number in range(1, args.rounds + 1):
        raw, via_api, per_event = await run_round(args, number)
        raws.append(raw)
        apis.append(via_api)
        ratios.append(via_api / raw)
        many.append(per_event[MANY])
        one.append(per_event[ONE])
        added.append(per_event[MANY] - per_event[ONE])
        print(
            f"round {number}: raw SDK {raw:.0f}/s, API {via_api:.0f}/s, "
            f"API = {100 * via_api / raw:.0f}% (first: {'raw' if number % 2 else 'API'}); "
            f"API CPU per event: {args.matching} automations {per_event[MANY]:.2f} ms, "
            f"1 automation {per_event[ONE]:.2f} ms, added {added[-1]:.2f} ms",
            flush=True,
        )
    print(
        f"in-memory dev server, no worker, {args.count} starts x {args.rounds} rounds, "
        f"concurrency {args.concurrency}, aiohttp: raw SDK {spread(raws)} starts/s, "
        f"API {spread(apis)} starts/s, API = {spread(ratios, 100)}% of raw "
        f"(median (range); target >= 85%)"
    )
    print(
        f"matching, {args.events} events per tenant per round, nothing enrolled: API CPU per event "
        f"{spread(many, digits=2)} ms with {args.matching} active automations, "
        f"{spread(one, digits=2)} ms with 1; added {spread(added, digits=2)} ms "
        f"(median (range); target < 2 ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--matching", type=int, default=200)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
