"""Webhook fan-out through crmflow vs a plain aiohttp client, and emission-to-delivery latency.

    .venv/bin/python -m bench.webhooks [--events 1000] [--endpoints 5] [--rounds 3]
                                       [--emit-concurrency 16] [--latency-events 50]
                                       [--workers 1] [--answer-ms 0]
                                       [--receiver-kind bare|sink]
    .venv/bin/python -m bench.webhooks --quick       # 100 events, 2 endpoints, 1 round

Each round runs on a fresh in-memory Temporal dev server, fresh ``crmflow
worker`` processes (``--workers``) and a fresh SQLite file, each a real subprocess as in
``bench.harness``; the receiver is a subprocess too (this module with
``--receiver PORT``). It notes, per path, the first arrival of each
``webhook-id`` on the monotonic clock, which every process on the machine
shares. Which receiver (``--receiver-kind``):

- ``bare`` (the default): an aiohttp server that reads each body and answers
  200, after ``--answer-ms`` (as a receiver that does some work before it
  answers would: both paths then wait on it alike); it costs the least CPU a
  receiver can, so the two paths compare by the CPU each spends per delivery.
- ``sink``: the dev stack's local receiver (``devstack.webhook_sink``, run as
  ``crmflow dev`` runs it): it verifies each signature with the
  ``standardwebhooks`` library against the endpoints' secrets, appends each
  delivery to its file and logs it; an arrival is noted when it answers 200.
  Plain's bodies are signed with the endpoints' own secrets, so they verify.

1. Fan-out: ``events`` events of one tenant with ``endpoints`` endpoints
   subscribed to every type. crmflow: ``emit_event`` (the event and its
   deliveries stored, each endpoint's dispatch workflow signalled-with-start
   unless a drain is running for it)
   with ``emit-concurrency`` emissions in flight, as a process's activities
   would emit them; timed from the first emission to the arrival of the last
   of ``events x endpoints`` deliveries at the receiver. Plain: the same
   bodies, signed the same way (Standard Webhooks headers), POSTed with
   aiohttp, one keep-alive session per endpoint with as many in flight as
   crmflow's rounds allow (``WebhookActivities`` default, 20 per endpoint);
   timed from the first POST to the last arrival. Both paths are warmed up
   first (a few events each) and the one that goes first swaps every round.
   Prints deliveries/s of each, crmflow's share (target: at least 70%), the
   CPU each process used, and how crmflow's dispatch rounds went (from the
   workflows' histories).
2. Latency: ``latency-events`` events emitted one at a time to one endpoint
   of another tenant, each after the previous one arrived and a pause, on
   the then idle stack; from the call to ``emit_event`` to the delivery's
   arrival at the receiver. Prints its median, p99 and maximum.
3. Apart: crmflow's two halves on their own, to say where its time goes:
   ``events`` more events stored as ``emit_event`` stores them but with no
   wake (events/s, the worker idle), then each endpoint woken once and the
   stored backlog drained (deliveries/s, with its rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs

import aiohttp
from aiohttp import web
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import Client

from activities.outbound import signed_headers, signing_key
from activities.webhook_delivery import emit_event
from bench.harness import (
    child_cpu_seconds,
    crmflow_env,
    free_port,
    process,
    temporal_server,
    wait_for_port,
)
from crm.domain.webhook_events import payload
from crm.platform.codec import new_codec_key
from crm.platform.settings import Settings
from crm.platform.temporal import connect
from crm.store.db import Database
from crm.store.emissions import store_event
from crm.store.webhook_deliveries import deliveries_of
from crm.store.webhooks import Emitted, create_endpoint
from devstack import webhook_sink
from workflows.webhook_types import WAKE, DispatchInput, RoundResult, dispatch_id

#: The tenant whose endpoints the fan-out goes to, and the one the latency is measured on.
FAN_OUT, LATENCY = "bench-fanout", "bench-latency"
#: Deliveries in flight per endpoint in one crmflow round (``WebhookActivities``' default).
PER_ENDPOINT = 20
#: Events emitted (and bodies posted) to warm each path up before it is timed.
WARM_UP = 20
#: How long a path may take before the round is given up.
DEADLINE_SECONDS = 600.0


# The receiver, in its own process.


@dataclass
class PathLog:
    """What one path received: each ``webhook-id``'s first arrival, requests and bytes."""

    first: dict[str, float] = field(default_factory=dict)
    requests: int = 0
    body_bytes: int = 0
    last: float = 0.0


class Arrivals:
    """What every path received, noted by either receiver and read through its ``/_stats``,
    ``/_arrivals`` and ``DELETE /_stats`` routes."""

    def __init__(self) -> None:
        self.paths: dict[str, PathLog] = {}

    def note(self, path: str, webhook_id: str, at: float, body_bytes: int) -> None:
        log = self.paths.setdefault(path, PathLog())
        log.first.setdefault(webhook_id, at)
        log.requests += 1
        log.body_bytes += body_bytes
        log.last = at

    def under(self, prefix: str) -> list[PathLog]:
        return [log for path, log in self.paths.items() if path.startswith(prefix)]

    def stats(self, prefix: str) -> dict[str, float]:
        logs = self.under(prefix)
        return {
            "distinct": sum(len(log.first) for log in logs),
            "requests": sum(log.requests for log in logs),
            "body_bytes": sum(log.body_bytes for log in logs),
            "last": max((log.last for log in logs), default=0.0),
        }

    def arrivals(self, prefix: str) -> dict[str, float]:
        return {k: v for log in self.under(prefix) for k, v in log.first.items()}


def serve_receiver(port: int, answer_ms: float = 0.0) -> None:
    """The bare receiver: answer every POST with 200, ``answer_ms`` after it came, and note
    when it came."""
    noted = Arrivals()

    async def deliver(request: web.Request) -> web.Response:
        body = await request.read()
        at = time.monotonic()
        if answer_ms:
            await asyncio.sleep(answer_ms / 1000)
        noted.note(request.path, request.headers.get("webhook-id", ""), at, len(body))
        return web.Response()

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(noted.stats(request.query.get("prefix", "/")))

    async def arrivals(request: web.Request) -> web.Response:
        return web.json_response(noted.arrivals(request.query.get("prefix", "/")))

    async def forget(request: web.Request) -> web.Response:
        noted.paths.clear()
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/_stats", stats)
    app.router.add_get("/_arrivals", arrivals)
    app.router.add_delete("/_stats", forget)
    app.router.add_post("/{tail:.*}", deliver)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def serve_sink(port: int, state: Path) -> None:
    """The dev stack's own receiver (``devstack.webhook_sink``: it verifies each signature
    against the endpoints' secrets in ``CRMFLOW_DATABASE_URL``, appends each delivery to its
    file and logs it), run as ``crmflow dev`` runs it; each delivery is noted once the sink
    has recorded it and answers 200."""
    noted = Arrivals()

    def noting(sink: ASGIApp) -> ASGIApp:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or scope["path"] not in ("/_stats", "/_arrivals"):
                await sink(scope, receive, send if scope["type"] != "http" else note(scope, send))
                return
            prefix = parse_qs(scope["query_string"].decode()).get("prefix", ["/"])[0]
            if scope["method"] == "DELETE":
                noted.paths.clear()
                answer: object = {}
            elif scope["path"] == "/_stats":
                answer = noted.stats(prefix)
            else:
                answer = noted.arrivals(prefix)
            await JSONResponse(answer)(scope, receive, send)

        def note(scope: Scope, send: Send) -> Send:
            headers = dict(scope["headers"])
            size = int(headers.get(b"content-length", b"0"))
            webhook_id = headers.get(b"webhook-id", b"").decode()

            async def sending(message: Message) -> None:
                if message["type"] == "http.response.start" and message["status"] == 200:
                    noted.note(scope["path"], webhook_id, time.monotonic(), size)
                await send(message)

            return sending

        return app

    webhook_sink.serve("127.0.0.1", port, state, wrap=noting)


@dataclass(frozen=True)
class Received:
    """What the paths under a prefix received: distinct webhook-ids, requests, body bytes, and
    the last arrival (monotonic seconds)."""

    distinct: int
    requests: int
    body_bytes: int
    last: float


class ReceiverControl:
    """Reads what the receiver subprocess noted."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self._session = session
        self.base_url = base_url

    async def stats(self, prefix: str) -> Received:
        async with self._session.get(f"{self.base_url}/_stats", params={"prefix": prefix}) as r:
            return Received(**await r.json())

    async def arrivals(self, prefix: str) -> dict[str, float]:
        async with self._session.get(f"{self.base_url}/_arrivals", params={"prefix": prefix}) as r:
            answer: dict[str, float] = await r.json()
            return answer

    async def forget(self) -> None:
        async with self._session.delete(f"{self.base_url}/_stats"):
            pass

    async def wait_for(self, prefix: str, count: int, poll: float = 0.1) -> Received:
        """What the paths under ``prefix`` received, once ``count`` distinct deliveries came."""
        deadline = time.monotonic() + DEADLINE_SECONDS
        while True:
            received = await self.stats(prefix)
            if received.distinct >= count:
                return received
            if time.monotonic() > deadline:
                raise RuntimeError(f"{prefix}: {received.distinct} of {count} deliveries arrived")
            await asyncio.sleep(poll)


# The measurement.


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads), from ``/proc``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Stack:
    """A round's processes and the benchmark's handles on them."""

    client: Client
    database: Database
    task_queue: str
    receiver: ReceiverControl
    pids: dict[str, int]
    workers: list[int]
    fan_out: list[str]
    secrets: list[str]
    latency: str

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of the server, the workers, the receiver and this process."""
        used = {role: cpu_seconds(pid) for role, pid in self.pids.items()}
        for number, pid in enumerate(self.workers):
            used[f"worker {number + 1}"] = cpu_seconds(pid)
        used["worker"] = sum(cpu_seconds(pid) for pid in self.workers)
        used["server"] = child_cpu_seconds().get("server", 0.0)
        return used


def cpu_since(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {role: after[role] - before[role] for role in before}


def event(prefix: str, i: int, tenant: str) -> Emitted:
    """Event ``i``: a ticket's first-response breach, as the SLA process emits it."""
    return Emitted(
        tenant=tenant,
        event_id=f"{prefix}-{i}",
        type="ticket.breached",
        process_id=f"sla-{prefix}-{i}",
        occurred_at=datetime.now(UTC),
        data={"ticket_id": f"T-{i}", "priority": "high", "contact_email": "ann@example.com"},
    )


def body_of(emitted: Emitted) -> bytes:
    """The bytes crmflow POSTs for ``emitted`` to an endpoint without personal data."""
    body = payload(
        emitted.type,
        emitted.event_id,
        emitted.process_id,
        emitted.occurred_at,
        emitted.data,
        personal_data=False,
    )
    return json.dumps(body, separators=(",", ":"), default=str).encode()


async def drain(count: int, concurrency: int, one: Callable[[int], Awaitable[object]]) -> None:
    """``one(0..count-1)`` with ``concurrency`` in flight."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            await one(queue.get_nowait())

    await asyncio.gather(*(worker() for _ in range(concurrency)))


@dataclass(frozen=True)
class Timed:
    """A path's deliveries per second, what arrived, and the CPU each process used."""

    rate: float
    seconds: float
    received: Received
    cpu: dict[str, float]
    emitted_after: float | None = None


async def through_crmflow(
    stack: Stack, events: list[Emitted], concurrency: int, expected: int
) -> Timed:
    """Emit ``events`` with ``concurrency`` in flight; timed to the last arrival."""
    cpu = stack.cpu()
    began = time.monotonic()
    await drain(
        len(events),
        concurrency,
        lambda i: emit_event(stack.client, stack.database, stack.task_queue, events[i]),
    )
    emitted_after = time.monotonic() - began
    received = await stack.receiver.wait_for("/crmflow/", expected)
    seconds = received.last - began
    return Timed(expected / seconds, seconds, received, cpu_since(cpu, stack.cpu()), emitted_after)


@contextlib.asynccontextmanager
async def plain_sessions(count: int) -> AsyncIterator[list[aiohttp.ClientSession]]:
    """One keep-alive session per endpoint, ``PER_ENDPOINT`` connections each."""
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=PER_ENDPOINT),
                    timeout=aiohttp.ClientTimeout(total=10, connect=5),
                )
            )
            for _ in range(count)
        ]


async def post_all(
    sessions: list[aiohttp.ClientSession],
    urls: list[str],
    secrets: list[str],
    bodies: list[bytes],
    prefix: str,
) -> None:
    """POST every body to every URL, signed with its endpoint's secret, ``PER_ENDPOINT`` in
    flight per URL."""
    keys = [signing_key(secret) for secret in secrets]

    async def to_endpoint(j: int) -> None:
        async def post(i: int) -> None:
            headers = signed_headers([keys[j]], f"msg_{prefix}_{i}_{j}", bodies[i])
            async with sessions[j].post(urls[j], data=bodies[i], headers=headers) as answer:
                if answer.status != 200:
                    raise RuntimeError(f"{urls[j]} answered {answer.status}")

        await drain(len(bodies), PER_ENDPOINT, post)

    await asyncio.gather(*(to_endpoint(j) for j in range(len(urls))))


async def through_plain(stack: Stack, bodies: list[bytes], endpoints: int, expected: int) -> Timed:
    """POST ``bodies`` to each plain endpoint path; timed to the last arrival."""
    urls = [f"{stack.receiver.base_url}/plain/{j}" for j in range(endpoints)]
    async with plain_sessions(endpoints) as sessions:
        await post_all(sessions, urls, stack.secrets, bodies[:WARM_UP], "warm")
        await stack.receiver.forget()
        cpu = stack.cpu()
        began = time.monotonic()
        await post_all(sessions, urls, stack.secrets, bodies, "plain")
    received = await stack.receiver.wait_for("/plain/", expected)
    seconds = received.last - began
    return Timed(expected / seconds, seconds, received, cpu_since(cpu, stack.cpu()))


@dataclass(frozen=True)
class Rounds:
    """How the dispatch workflows' rounds went while crmflow was timed."""

    rounds: int
    sizes: list[int]
    schedule_to_start_ms: list[float]
    activity_ms: list[float]
    between_ms: list[float]
    signals: int
    workflow_tasks: int


async def dispatch_rounds(client: Client, endpoint_ids: list[str], since: datetime) -> Rounds:
    """The ``deliver_due`` rounds each endpoint's workflow ran after ``since``, from history."""
    sizes: list[int] = []
    to_start: list[float] = []
    running: list[float] = []
    between: list[float] = []
    signals = workflow_tasks = 0
    for endpoint_id in endpoint_ids:
        history = await client.get_workflow_handle(dispatch_id(endpoint_id)).fetch_history()
        scheduled: dict[int, datetime] = {}
        started: dict[int, datetime] = {}
        completed_at: datetime | None = None
        for e in history.events:
            at = e.event_time.ToDatetime(tzinfo=UTC)
            if at >= since:
                signals += e.HasField("workflow_execution_signaled_event_attributes")
                workflow_tasks += e.HasField("workflow_task_completed_event_attributes")
            if e.HasField("activity_task_scheduled_event_attributes"):
                scheduled[e.event_id] = at
                if completed_at is not None and completed_at >= since:
                    between.append((at - completed_at).total_seconds() * 1000)
            elif e.HasField("activity_task_started_event_attributes"):
                started[e.activity_task_started_event_attributes.scheduled_event_id] = at
            elif e.HasField("activity_task_completed_event_attributes"):
                attributes = e.activity_task_completed_event_attributes
                completed_at = at
                begun = scheduled[attributes.scheduled_event_id]
                if begun < since:
                    continue
                [result] = await client.data_converter.decode(
                    attributes.result.payloads, [RoundResult]
                )
                sizes.append(result.delivered + result.retrying + result.failed)
                start = started[attributes.scheduled_event_id]
                to_start.append((start - begun).total_seconds() * 1000)
                running.append((at - start).total_seconds() * 1000)
    return Rounds(len(sizes), sizes, to_start, running, between, signals, workflow_tasks)


@dataclass(frozen=True)
class Latency:
    """Emission to first delivery attempt, and the ``emit_event`` call alone, in ms."""

    to_arrival_ms: list[float]
    emit_call_ms: list[float]


async def latency(stack: Stack, count: int, pause: float) -> Latency:
    """Emit ``count`` events one at a time to the latency endpoint, each after the last arrived."""
    emitted_at: dict[str, float] = {}
    calls: list[float] = []
    for i in range(-1, count):  # event -1 starts the endpoint's dispatch workflow: not counted
        emitted = event("latency", i, LATENCY)
        began = time.monotonic()
        await emit_event(stack.client, stack.database, stack.task_queue, emitted)
        if i >= 0:
            emitted_at[emitted.event_id] = began
            calls.append((time.monotonic() - began) * 1000)
        await stack.receiver.wait_for("/latency/", i + 2, poll=0.02)
        await asyncio.sleep(pause)
    arrivals = await stack.receiver.arrivals("/latency/")
    logs = await deliveries_of(stack.database, stack.latency, limit=count + 10)
    event_of = {log.delivery.message_id: log.event.event_id for log in logs}
    to_arrival = [
        (at - emitted_at[event_of[message_id]]) * 1000
        for message_id, at in arrivals.items()
        if event_of[message_id] in emitted_at
    ]
    if len(to_arrival) != count:
        raise RuntimeError(f"{len(to_arrival)} of {count} latency deliveries matched their event")
    return Latency(to_arrival, calls)


@contextlib.contextmanager
def receiver_process(
    kind: str, answer_ms: float, state: Path, env: dict[str, str]
) -> Iterator[tuple[str, int]]:
    """The receiver subprocess: the bare one taking ``answer_ms`` over each answer, or the
    dev stack's sink recording under ``state`` (with the stack's ``env``); yields its URL
    and pid."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.webhooks", "--receiver", str(port)]
    argv += ["--receiver-kind", kind, "--answer-ms", str(answer_ms), "--state", str(state)]
    with process(argv, env) as child:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}", child.pid


@contextlib.asynccontextmanager
async def round_stack(state: Path, args: argparse.Namespace) -> AsyncIterator[Stack]:
    """Server, receiver and workers on fresh state; the endpoints created."""
    task_queue = f"bench-webhooks-{uuid.uuid4().hex[:8]}"
    sealing = new_codec_key("bench-1")
    with contextlib.ExitStack() as processes:
        address = processes.enter_context(temporal_server())
        env = crmflow_env(
            address,
            task_queue,
            state,
            CRMFLOW_SEALING_KEYS=sealing,
            CRMFLOW_OUTBOUND_ALLOWED_HOSTS='["127.0.0.1"]',
        )
        receiver_url, receiver_pid = processes.enter_context(
            receiver_process(args.receiver_kind, args.answer_ms, state, env)
        )
        settings = Settings(
            temporal_address=address,
            task_queue=task_queue,
            database_url=env["CRMFLOW_DATABASE_URL"],
        )
        database = Database.from_url(settings.database_url)
        await database.create_tables()
        worker_pids = [
            processes.enter_context(
                process([sys.executable, "-m", "devstack.cli", "worker"], env)
            ).pid
            for _ in range(args.workers)
        ]
        client = await connect(settings)

        async def endpoint(tenant: str, path: str) -> tuple[str, str]:
            row, secret = await create_endpoint(
                database,
                tenant,
                url=f"{receiver_url}{path}",
                event_types=["*"],
                personal_data=False,
                enabled=True,
                codec_keys=sealing,
            )
            return row.endpoint_id, secret

        fan_out = [await endpoint(FAN_OUT, f"/crmflow/{j}") for j in range(args.endpoints)]
        async with aiohttp.ClientSession() as control:
            stack = Stack(
                client=client,
                database=database,
                task_queue=task_queue,
                receiver=ReceiverControl(control, receiver_url),
                pids={"receiver": receiver_pid, "bench": os.getpid()},
                workers=worker_pids,
                fan_out=[endpoint_id for endpoint_id, _ in fan_out],
                secrets=[secret for _, secret in fan_out],
                latency=(await endpoint(LATENCY, "/latency/0"))[0],
            )
            try:
                yield stack
            finally:
                await database.dispose()


@dataclass(frozen=True)
class Breakdown:
    """crmflow's two halves apart: storing the events alone (events/s), and the deliveries/s
    of a stored backlog drained after one wake per endpoint, with its rounds."""

    stored_per_second: float
    store_cpu: dict[str, float]
    drained: Timed
    rounds: Rounds


async def breakdown(
    stack: Stack, count: int, concurrency: int, endpoints: int, settle: float
) -> Breakdown:
    """Store ``count`` events without waking anyone, then wake each endpoint once."""
    events = [event("backlog", i, FAN_OUT) for i in range(count)]
    await stack.receiver.forget()
    cpu = stack.cpu()
    began = time.monotonic()
    await drain(count, concurrency, lambda i: store_event(stack.database, events[i]))
    stored_per_second = count / (time.monotonic() - began)
    store_cpu = cpu_since(cpu, stack.cpu())
    await asyncio.sleep(1.0)
    since = datetime.now(UTC)
    cpu = stack.cpu()
    began = time.monotonic()
    for endpoint_id in stack.fan_out:  # as emit_event wakes them
        await stack.client.start_workflow(
            "WebhookDispatch",
            DispatchInput(endpoint_id),
            id=dispatch_id(endpoint_id),
            task_queue=stack.task_queue,
            start_signal=WAKE,
        )
    received = await stack.receiver.wait_for("/crmflow/", count * endpoints)
    seconds = received.last - began
    drained = Timed(count * endpoints / seconds, seconds, received, cpu_since(cpu, stack.cpu()))
    await asyncio.sleep(settle)  # the last rounds write their results after the last arrival
    rounds = await dispatch_rounds(stack.client, stack.fan_out, since)
    return Breakdown(stored_per_second, store_cpu, drained, rounds)


@dataclass(frozen=True)
class RoundFigures:
    crmflow: Timed
    plain: Timed
    rounds: Rounds
    latency: Latency
    breakdown: Breakdown


async def run_round(args: argparse.Namespace, number: int) -> RoundFigures:
    expected = args.events * args.endpoints
    with tempfile.TemporaryDirectory() as scratch:
        async with round_stack(Path(scratch), args) as stack:
            warm = [event("warm", i, FAN_OUT) for i in range(WARM_UP)]
            for emitted in warm:
                await emit_event(stack.client, stack.database, stack.task_queue, emitted)
            await stack.receiver.wait_for("/crmflow/", WARM_UP * args.endpoints)
            await stack.receiver.forget()
            await asyncio.sleep(args.settle)  # the warm-up's drains let go, as in steady state
            events = [event("fan", i, FAN_OUT) for i in range(args.events)]
            bodies = [body_of(e) for e in events]
            timed: dict[str, Timed] = {}
            since = datetime.now(UTC)
            for path in ("plain", "crmflow") if number % 2 else ("crmflow", "plain"):
                if path == "crmflow":
                    since = datetime.now(UTC)
                    timed[path] = await through_crmflow(
                        stack, events, args.emit_concurrency, expected
                    )
                else:
                    timed[path] = await through_plain(stack, bodies, args.endpoints, expected)
                await asyncio.sleep(args.settle)  # the dispatch workflows' last, empty rounds
            if timed["crmflow"].received.body_bytes != timed["plain"].received.body_bytes:
                raise RuntimeError(
                    "the paths' bodies differ: "
                    f"{timed['crmflow'].received.body_bytes} B against "
                    f"{timed['plain'].received.body_bytes} B"
                )
            rounds = await dispatch_rounds(stack.client, stack.fan_out, since)
            delays = await latency(stack, args.latency_events, args.latency_pause)
            apart = await breakdown(
                stack, args.events, args.emit_concurrency, args.endpoints, args.settle
            )
    return RoundFigures(timed["crmflow"], timed["plain"], rounds, delays, apart)


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def spread(values: list[float], scale: float = 1.0, digits: int = 0) -> str:
    """``median (min-max)``."""
    median, low, high = (scale * v for v in (statistics.median(values), min(values), max(values)))
    return f"{median:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def receiver_text(args: argparse.Namespace) -> str:
    if args.receiver_kind == "sink":
        return "the dev stack's receiver (verifies, records, logs)"
    return f"a bare receiver answering after {args.answer_ms:g} ms"


def cpu_text(cpu: dict[str, float]) -> str:
    each = [role for role in cpu if role.startswith("worker ")]
    split = f" ({', '.join(f'{cpu[role]:.1f}' for role in each)})" if len(each) > 1 else ""
    return ", ".join(
        f"{role} {cpu[role]:.1f} s{split if role == 'worker' else ''}"
        for role in ("server", "worker", "receiver", "bench")
    )


def rounds_text(rounds: Rounds) -> str:
    if not rounds.sizes:
        return "no rounds"
    return (
        f"{rounds.signals} wake signals, {rounds.workflow_tasks} workflow tasks, "
        f"{rounds.rounds} rounds of {statistics.mean(rounds.sizes):.0f} deliveries "
        f"(max {max(rounds.sizes)}); per round: schedule-to-start "
        f"{statistics.median(rounds.schedule_to_start_ms):.0f} ms, activity "
        f"{statistics.median(rounds.activity_ms):.0f} ms, next round scheduled "
        f"{statistics.median(rounds.between_ms or [0.0]):.0f} ms after the last (medians)"
    )


def print_round(number: int, figures: RoundFigures, args: argparse.Namespace) -> None:
    crmflow, plain, rounds, delays = figures.crmflow, figures.plain, figures.rounds, figures.latency
    print(
        f"round {number} (first: {'plain' if number % 2 else 'crmflow'}): "
        f"crmflow {crmflow.rate:.0f}/s ({crmflow.seconds:.2f} s, all emitted after "
        f"{crmflow.emitted_after or 0:.2f} s), plain {plain.rate:.0f}/s ({plain.seconds:.2f} s), "
        f"crmflow = {100 * crmflow.rate / plain.rate:.0f}% of plain",
        flush=True,
    )
    for name, timed in (("crmflow", crmflow), ("plain", plain)):
        if timed.received.requests != timed.received.distinct:
            print(f"  {name}: {timed.received.requests - timed.received.distinct} sent again")
    print(f"  CPU crmflow: {cpu_text(crmflow.cpu)}")
    print(f"  CPU plain:   {cpu_text(plain.cpu)}")
    print(f"  dispatch: {rounds_text(rounds)}")
    print(
        f"  latency, {len(delays.to_arrival_ms)} events one at a time: emission to first "
        f"attempt median {statistics.median(delays.to_arrival_ms):.0f} ms, "
        f"p99 {p99(delays.to_arrival_ms):.0f} ms, max {max(delays.to_arrival_ms):.0f} ms "
        f"(emit_event call median {statistics.median(delays.emit_call_ms):.1f} ms)"
    )
    apart = figures.breakdown
    print(
        f"  apart: stored alone (no wakes) {apart.stored_per_second:.0f} events/s "
        f"= {args.endpoints * apart.stored_per_second:.0f} deliveries/s, CPU "
        f"{cpu_text(apart.store_cpu)}; a stored backlog drained at {apart.drained.rate:.0f}/s "
        f"({apart.drained.seconds:.2f} s), CPU {cpu_text(apart.drained.cpu)}"
    )
    print(f"  backlog dispatch: {rounds_text(apart.rounds)}", flush=True)


async def run(args: argparse.Namespace) -> None:
    figures: list[RoundFigures] = []
    for number in range(1, args.rounds + 1):
        figures.append(await run_round(args, number))
        print_round(number, figures[-1], args)
    crmflow = [f.crmflow.rate for f in figures]
    plain = [f.plain.rate for f in figures]
    ratios = [f.crmflow.rate / f.plain.rate for f in figures]
    medians = [statistics.median(f.latency.to_arrival_ms) for f in figures]
    p99s = [p99(f.latency.to_arrival_ms) for f in figures]
    pooled = [ms for f in figures for ms in f.latency.to_arrival_ms]
    print(
        f"{args.events} events x {args.endpoints} endpoints x {args.rounds} rounds, "
        f"emit concurrency {args.emit_concurrency}, {PER_ENDPOINT} in flight per endpoint, "
        f"{receiver_text(args)}: "
        f"crmflow {spread(crmflow)} deliveries/s, plain aiohttp {spread(plain)} deliveries/s, "
        f"crmflow = {spread(ratios, 100)}% of plain (median (range); target >= 70%)"
    )
    stored = [args.endpoints * f.breakdown.stored_per_second / f.plain.rate for f in figures]
    drained = [f.breakdown.drained.rate / f.plain.rate for f in figures]
    print(
        f"apart: storing the events alone (no wakes, worker idle) = {spread(stored, 100)}% of "
        f"plain's deliveries/s; a stored backlog drained (one wake per endpoint) = "
        f"{spread(drained, 100)}% of plain (median (range))"
    )
    print(
        f"latency on an idle stack, {args.latency_events} events per round: emission to first "
        f"attempt median {spread(medians)} ms, p99 {spread(p99s)} ms (median (range) of rounds); "
        f"all {len(pooled)}: median {statistics.median(pooled):.0f} ms, p99 {p99(pooled):.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--endpoints", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--emit-concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1, help="crmflow worker processes")
    parser.add_argument("--latency-events", type=int, default=50)
    parser.add_argument("--latency-pause", type=float, default=0.2, help="seconds between events")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds between the paths")
    parser.add_argument("--quick", action="store_true", help="100 events, 2 endpoints, 1 round")
    parser.add_argument(
        "--answer-ms", type=float, default=0.0, help="how long the receiver takes to answer"
    )
    parser.add_argument(
        "--receiver-kind",
        choices=("bare", "sink"),
        default="bare",
        help="bare: answers 200 at once (after --answer-ms); sink: the dev stack's receiver",
    )
    parser.add_argument("--receiver", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receiver is not None and args.receiver_kind == "sink":
        serve_sink(args.receiver, args.state)
        return
    if args.receiver is not None:
        serve_receiver(args.receiver, args.answer_ms)
        return
    if args.quick:
        args.events, args.endpoints, args.rounds, args.latency_events = 100, 2, 1, 10
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
