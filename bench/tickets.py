"""Benchmark: open many tickets through the API and watch their SLA warnings fire.

Against a running stack (``crmflow dev``: API on :8000, Temporal on :7233,
SMTP sink writing to .crmflow/mail), it

1. opens ``--count`` urgent tickets with ``POST /v1/tickets`` (``--concurrency``
   requests in flight) and reports starts per second;
2. once every run has assigned its ticket and parked on its SLA timer, reads
   the worker's resident memory (``--worker-pid``, or found by its command
   line) and compares it with the memory before the tickets were opened;
3. waits for the first-response warnings to fire and reports how late, in wall
   time, each fired after its due time: the timer (when the run noticed the
   75 % mark), the email arriving at the SMTP sink (``--maildir``), and the run
   recording the email activity as done;
4. resolves every ticket, so nothing escalates later (``--keep-open`` skips it).

Urgent tickets have a one-hour first-response target around the clock, so
the warning is due 45 minutes after ``created_at``. The script backdates
``created_at`` so that the warnings come due ``--warn-in`` seconds after the
start, spread evenly over ``--spread`` seconds. Tickets that start after their
own due time are counted apart, not as late.

    python bench/tickets.py --count 1000
    python bench/tickets.py --count 200 --api http://127.0.0.1:18000 \
        --keys-file /tmp/s/state/dev-api-keys.yml --maildir /tmp/s/state/mail

``--four-clocks`` (issue 20) starts a stack of its own per round (file-backed dev
server, SMTP sink, API, worker) with a policy file that gives urgent tickets all
four clocks around the clock, opens the tickets over ``--spread`` seconds, sends
each an agent and a customer reply, and reports how late each warning and breach
was done (its notification or task row) after its due instant, per kind and
overall, the most actions due in any 10 s (per second), the workers' peak RSS, the
CPU each process used, the workers' SDK counters (workflow tasks, activities, cache)
and the events of a sample of runs by type. ``--workers`` and ``--worker-env``
compare worker processes and settings, rounds alternating:

    python -m bench.tickets --four-clocks --count 1000 --rounds 2 --workers 1 2 \
        --worker-env "" --worker-env CRMFLOW_WORKER_MAX_CONCURRENT_ACTIVITIES=200
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

WARNING_AFTER = timedelta(minutes=45)  # 75 % of the urgent one-hour first response


@dataclass
class Ticket:
    ticket_id: str
    warning_due: datetime
    started_at: datetime | None = None
    status: int | None = None
    fired_at: datetime | None = None
    emailed_at: datetime | None = None
    received_at: datetime | None = None


@dataclass
class Report:
    figures: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, value: Any) -> None:
        self.figures[name] = value
        print(f"  {name}: {value}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", default="http://127.0.0.1:8000", help="the crmflow API")
    parser.add_argument("--api-key", default=None, help="a key with the service role")
    parser.add_argument(
        "--keys-file",
        type=Path,
        default=Path(".crmflow/dev-api-keys.yml"),
        help="where `crmflow dev` keeps its keys; its service key is used without --api-key",
    )
    parser.add_argument("--count", type=int, default=1000, help="tickets to open")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument(
        "--warn-in",
        type=float,
        default=None,
        help="seconds from the start to the first warning (150; --four-clocks: 65)",
    )
    parser.add_argument(
        "--spread",
        type=float,
        default=None,
        help="seconds the first warnings span (30; --four-clocks: 240)",
    )
    parser.add_argument("--worker-pid", type=int, default=None, help="default: found in /proc")
    parser.add_argument("--maildir", type=Path, default=Path(".crmflow/mail"))
    parser.add_argument("--keep-open", action="store_true", help="leave the tickets running")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    four = parser.add_argument_group("four clocks (issue 20): a stack of its own per round")
    four.add_argument(
        "--four-clocks", action="store_true", help="run the four-clock SLA policy bench"
    )
    four.add_argument("--rounds", type=int, default=1, help="rounds per worker variant")
    four.add_argument(
        "--worker-env",
        action="append",
        default=None,
        metavar="K=V,K=V",
        help="a worker variant's settings (repeat to compare; rounds alternate)",
    )
    four.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[1],
        help="worker processes on the task queue (several: one variant each)",
    )
    four.add_argument(
        "--stretch",
        type=float,
        default=1.0,
        help="make the clocks' targets this many times longer (fewer actions due at once)",
    )
    four.add_argument("--grace", type=float, default=60.0, help="seconds to wait for late actions")
    args = parser.parse_args(argv)
    if args.warn_in is None:
        args.warn_in = 65.0 if args.four_clocks else 150.0
    if args.spread is None:
        args.spread = 240.0 if args.four_clocks else 30.0
    return args


async def main(args: argparse.Namespace) -> Report:
    report = Report()
    run = uuid.uuid4().hex[:8]
    start = datetime.now(UTC)
    first_due = start + timedelta(seconds=args.warn_in)
    tickets = [
        Ticket(
            ticket_id=f"bench-{run}-{index:05d}",
            warning_due=first_due + timedelta(seconds=args.spread * index / max(args.count, 1)),
        )
        for index in range(args.count)
    ]
    api_key = args.api_key or dev_service_key(args.keys_file)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(
        max_connections=args.concurrency, max_keepalive_connections=args.concurrency
    )
    worker_pid = args.worker_pid or find_worker_pid()
    print(f"bench run {run}: {args.count} urgent tickets via {args.api}", flush=True)
    report.add("tickets", args.count)
    report.add("worker_pid", worker_pid)
    report.add("worker_rss_mib_before", rss_mib(worker_pid))

    async with httpx.AsyncClient(
        base_url=args.api, headers=headers, limits=limits, timeout=60
    ) as api:
        elapsed = await open_tickets(api, tickets, args.concurrency)
        failed = [t for t in tickets if t.status not in (200, 201)]
        report.add("start_seconds", round(elapsed, 2))
        report.add("starts_per_second", round(args.count / elapsed, 1))
        report.add("start_failures", len(failed))
        report.add(
            "started_since_begin_ms_p50_p95",
            percentiles(
                [(t.started_at - start).total_seconds() * 1000 for t in tickets if t.started_at],
                (50, 95),
            ),
        )

        await wait_until_parked(api, tickets, deadline=first_due)
        await asyncio.sleep(2)  # let the worker settle after the last activity
        report.add("worker_rss_mib_parked", rss_mib(worker_pid))
        report.add("now_vs_first_due_s", round((datetime.now(UTC) - first_due).total_seconds(), 1))

        last_due = max(t.warning_due for t in tickets)
        pause = (last_due - datetime.now(UTC)).total_seconds() + 5
        if pause > 0:
            print(f"waiting {pause:.0f} s for the warnings to come due", flush=True)
            await asyncio.sleep(pause)
        await collect_warnings(api, tickets, within=120)
        read_arrivals(args.maildir, tickets)

        punctual = [t for t in tickets if t.started_at and t.started_at < t.warning_due]
        report.add("tickets_started_after_their_due_time", len(tickets) - len(punctual))
        report.add("warnings_fired", sum(1 for t in punctual if t.fired_at))
        for name, attribute in (
            ("timer_lateness_s", "fired_at"),
            ("email_activity_done_lateness_s", "emailed_at"),
            ("email_received_lateness_s", "received_at"),
        ):
            lateness = [
                (getattr(t, attribute) - t.warning_due).total_seconds()
                for t in punctual
                if getattr(t, attribute) is not None
            ]
            report.add(name, percentiles(lateness, (50, 95, 99, 100)) if lateness else "n/a")
        report.add("worker_rss_mib_after", rss_mib(worker_pid))

        if not args.keep_open:
            await send_all(api, tickets, args.concurrency, {"type": "resolved"})
            print("resolved every bench ticket", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report.figures, indent=2, default=str), encoding="utf-8")
    return report


async def post_ticket(
    api: httpx.AsyncClient, ticket_id: str, created_at: datetime, tags: list[str] | None = None
) -> int:
    """``POST /v1/tickets`` for an urgent bench ticket; the status code (a failure printed)."""
    body: dict[str, Any] = {
        "ticket_id": ticket_id,
        "customer_id": "c-bench",
        "subject": "Benchmark ticket",
        "priority": "urgent",
        "created_at": created_at.isoformat(),
        "timezone": "Europe/Stockholm",
    }
    if tags:
        body["tags"] = tags
    response = await api.post("/v1/tickets", json=body)
    if response.status_code not in (200, 201):
        print(f"{ticket_id}: {response.status_code} {response.text}", flush=True)
    return response.status_code


async def open_tickets(api: httpx.AsyncClient, tickets: list[Ticket], concurrency: int) -> float:
    """POST every ticket, ``concurrency`` at a time; the elapsed wall time in seconds."""
    queue: asyncio.Queue[Ticket] = asyncio.Queue()
    for ticket in tickets:
        queue.put_nowait(ticket)

    async def opener() -> None:
        while not queue.empty():
            ticket = queue.get_nowait()
            created_at = ticket.warning_due - WARNING_AFTER
            ticket.status = await post_ticket(api, ticket.ticket_id, created_at)
            ticket.started_at = datetime.now(UTC)

    began = time.perf_counter()
    await asyncio.gather(*(opener() for _ in range(concurrency)))
    return time.perf_counter() - began


async def wait_until_parked(
    api: httpx.AsyncClient, tickets: list[Ticket], deadline: datetime
) -> None:
    """Wait until every run has assigned its ticket (or the first warning is due)."""
    pending = [t for t in tickets if t.status in (200, 201)]
    while pending and datetime.now(UTC) < deadline:
        views = await asyncio.gather(*(view(api, t.ticket_id) for t in pending[:50]))
        done = {
            v["process_id"]
            for v in views
            if v and (v.get("state") or {}).get("stage", "") not in ("starting", "assigning")
        }
        pending = [t for t in pending if f"sla-{t.ticket_id}" not in done]
        if pending and not done:
            await asyncio.sleep(0.5)


async def collect_warnings(api: httpx.AsyncClient, tickets: list[Ticket], within: float) -> None:
    """Read from each run's state when its warning fired and when its email went out."""
    semaphore = asyncio.Semaphore(32)
    stop_at = time.monotonic() + within

    async def collect(ticket: Ticket) -> None:
        while time.monotonic() < stop_at:
            async with semaphore:
                body = await view(api, ticket.ticket_id)
            state = (body or {}).get("state") or {}
            for escalation in state.get("details", {}).get("escalations", []):
                if escalation["level"] == "warning" and escalation["clock"] == "first_response":
                    ticket.fired_at = datetime.fromisoformat(escalation["at"])
            for step in state.get("steps", []):
                if step["step"] == "email:first_response_warning":
                    ticket.emailed_at = datetime.fromisoformat(step["at"])
            if ticket.emailed_at or not ticket.status or ticket.status not in (200, 201):
                return
            await asyncio.sleep(1)

    await asyncio.gather(*(collect(ticket) for ticket in tickets))


def read_arrivals(maildir: Path, tickets: list[Ticket]) -> None:
    """When each warning email arrived at the SMTP sink (its X-Crmflow-Received-At)."""
    if not maildir.is_dir():
        print(f"no maildir at {maildir}; skipping arrival times", flush=True)
        return
    from devstack.mailsink import read_messages

    by_process = {f"sla-{t.ticket_id}": t for t in tickets}
    for message in read_messages(maildir):
        ticket = by_process.get(message.header("X-Crmflow-Process") or "")
        if ticket and message.header("X-Crmflow-Step") == "email_first_response_warning":
            ticket.received_at = message.received_at


async def send_all(
    api: httpx.AsyncClient, tickets: list[Ticket], concurrency: int, event: dict[str, Any]
) -> None:
    semaphore = asyncio.Semaphore(concurrency)

    async def send(ticket: Ticket) -> None:
        async with semaphore:
            await api.post(f"/v1/processes/sla-{ticket.ticket_id}/events", json=event)

    await asyncio.gather(*(send(t) for t in tickets if t.status in (200, 201)))


async def view(api: httpx.AsyncClient, ticket_id: str) -> dict[str, Any] | None:
    response = await api.get(f"/v1/processes/sla-{ticket_id}")
    if response.status_code != 200:
        return None
    body: dict[str, Any] = response.json()
    return body


def dev_service_key(keys_file: Path) -> str | None:
    """The ``service`` key the dev stack made, if its keys file is there."""
    if not keys_file.is_file():
        return None
    import yaml

    keys = yaml.safe_load(keys_file.read_text(encoding="utf-8")) or {}
    key = keys.get("service")
    return str(key) if key else None


def find_worker_pid() -> int | None:
    """The pid of a process running the crmflow worker, from /proc command lines."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv if a]
        command = " ".join(words)
        runs_cli = "crmflow" in command or "devstack.cli" in command
        if (runs_cli and "worker" in words) or "worker.main" in command:
            return int(entry.name)
    return None


def rss_mib(pid: int | None, field: str = "VmRSS") -> float | None:
    """Resident memory of ``pid`` in MiB (``VmRSS``, or its peak ``VmHWM``), or None if
    unknown."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def percentiles(values: list[float], points: tuple[int, ...]) -> dict[str, float]:
    """``{"p50": ..., "p95": ...}`` (p100 is the maximum), rounded to milliseconds."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return {f"p{p}": round(ordered[0], 3) for p in points}
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return {f"p{p}": round(ordered[-1] if p == 100 else cuts[p - 1], 3) for p in points}


# Four clocks under an SLA policy (issue 20): ``--four-clocks``.

#: Business-time targets of the bench's policy in seconds, around the clock. Each ticket's
#: instants, from its first-response warning: breach +20 s; the agent's and the customer's
#: reply at +30 s start the periodic update (warning +90 s, breach +110 s) and the next
#: reply (+120 s, +150 s); resolution warns at +135 s and breaches at +200 s.
FOUR_CLOCK_TARGETS = {
    "first_response": 80.0,
    "next_reply": 120.0,
    "periodic_update": 80.0,
    "resolution": 260.0,
}
WARNING_SHARE = 0.75
REPLIES_AFTER_WARNING = timedelta(seconds=30)


def stretch_schedule(factor: float) -> None:
    """Make every target and the replies' delay ``factor`` times longer (``--stretch``):
    the same tickets and actions over a longer time, fewer falling due at once."""
    global REPLIES_AFTER_WARNING
    for clock, seconds in FOUR_CLOCK_TARGETS.items():
        FOUR_CLOCK_TARGETS[clock] = seconds * factor
    REPLIES_AFTER_WARNING = REPLIES_AFTER_WARNING * factor


LEVELS = ("warning", "breach")
ACTION_KINDS = tuple(f"{clock}_{level}" for clock in FOUR_CLOCK_TARGETS for level in LEVELS)
#: What shows that an action was taken: the warning's in-app notification, the breach's
#: task for the team lead; both come after the action's email.
DONE_ROW = {"warning": "notify", "breach": "task"}


def four_clock_policy() -> dict[str, Any]:
    """The policy file's ``sla:`` section: urgent tickets tagged ``bench`` run all four
    clocks around the clock, each warning the assignee at 75 % and telling the team lead
    (email and task) at the breach."""
    ladder = [
        {"name": "warning", "at": f"{WARNING_SHARE:.0%}", "action": "notify_assignee"},
        {"name": "breach", "at": "100%", "action": "notify_role", "role": "team_lead"},
    ]
    clocks = {
        clock: {"targets": {"urgent": f"{seconds:g}s"}, "ladder": [dict(level) for level in ladder]}
        for clock, seconds in FOUR_CLOCK_TARGETS.items()
    }
    policy = {
        "name": "bench-four-clocks",
        "when": {"tags": ["bench"]},
        "around_the_clock": ["urgent"],
        "clocks": clocks,
    }
    return {"sla": {"policies": [policy]}}


@dataclass
class PolicyTicket:
    """A bench ticket under the four-clock policy: when each action is due, and when its
    look (the run seeing the level reached), email and final row happened."""

    ticket_id: str
    created_at: datetime
    replies_at: datetime
    status: int | None = None
    started_at: datetime | None = None
    #: When the API had taken both replies (``replies_at`` is when they happened).
    replied_at: datetime | None = None
    due: dict[str, datetime] = field(default_factory=dict)
    looked: dict[str, datetime] = field(default_factory=dict)
    emailed: dict[str, datetime] = field(default_factory=dict)
    done: dict[str, datetime] = field(default_factory=dict)

    @property
    def process_id(self) -> str:
        return f"sla-{self.ticket_id}"

    def __post_init__(self) -> None:
        """Every action's due instant (24x7: business time is wall time): first response
        and resolution count from the opening, next reply and periodic update from the
        replies (stamped ``replies_at``)."""
        starts = {"first_response": self.created_at, "resolution": self.created_at}
        starts |= {"next_reply": self.replies_at, "periodic_update": self.replies_at}
        for clock, start in starts.items():
            target = timedelta(seconds=FOUR_CLOCK_TARGETS[clock])
            self.due[f"{clock}_warning"] = start + target * WARNING_SHARE
            self.due[f"{clock}_breach"] = start + target


def four_clock_tickets(
    count: int, run: str, first_due: datetime, spread: float
) -> list[PolicyTicket]:
    """``count`` tickets whose first-response warnings fall due from ``first_due`` on,
    spread evenly over ``spread`` seconds: each is opened its warning's 75 % of the first
    response target before (60 s unstretched; a ``created_at`` in the future would count
    from the start instead)."""
    warn_after = timedelta(seconds=FOUR_CLOCK_TARGETS["first_response"] * WARNING_SHARE)
    tickets = []
    for index in range(count):
        anchor = first_due + timedelta(seconds=spread * index / max(count, 1))
        tickets.append(
            PolicyTicket(
                ticket_id=f"bench-{run}-{index:05d}",
                created_at=anchor - warn_after,
                replies_at=anchor + REPLIES_AFTER_WARNING,
            )
        )
    return tickets


@dataclass
class FourClockStack:
    """The API's URL, a service key, the worker, its Prometheus metrics and the server."""

    url: str
    key: str
    workers: list[subprocess.Popen[bytes]]
    metrics: list[str]
    temporal_address: str


@contextlib.contextmanager
def four_clock_stack(
    state: Path, worker_env: dict[str, str], workers: int
) -> Iterator[FourClockStack]:
    """A file-backed dev server, SMTP sink, ``crmflow api`` and ``workers`` ``crmflow
    worker`` processes on one task queue, reading the four-clock policy file."""
    from bench.harness import (
        api_server,
        bench_api_key,
        crmflow_env,
        free_port,
        process,
        temporal_server,
        wait_for_port,
        worker,
    )

    policy_file = state / "policy.yml"
    policy_file.write_text(yaml.safe_dump(four_clock_policy(), sort_keys=False), encoding="utf-8")
    smtp_port = free_port()
    with contextlib.ExitStack() as stack:
        address = stack.enter_context(temporal_server(state / "temporal.db"))
        sink = ["smtp-sink", "--port", str(smtp_port), "--maildir", f"{state}/mail"]
        stack.enter_context(process([sys.executable, "-m", "devstack.cli", *sink]))
        wait_for_port(smtp_port)
        key = bench_api_key(state)
        env = crmflow_env(
            address,
            f"bench-tickets-{uuid.uuid4().hex[:8]}",
            state,
            CRMFLOW_SMTP_PORT=str(smtp_port),
            CRMFLOW_POLICY_FILE=str(policy_file),
            CRMFLOW_MAIL_SINK_DIR=str(state / "mail"),
        )
        url = stack.enter_context(api_server(env))
        metrics = [f"127.0.0.1:{free_port()}" for _ in range(workers)]
        processes = [
            stack.enter_context(
                worker({**env, "CRMFLOW_WORKER_METRICS_ADDRESS": where, **worker_env})
            )
            for where in metrics
        ]
        yield FourClockStack(url, key, processes, [f"http://{m}/metrics" for m in metrics], address)


async def four_clock_round(
    args: argparse.Namespace, worker_env: dict[str, str], workers: int
) -> dict[str, Any]:
    """One round on a fresh stack: open the tickets, reply on schedule, wait for every
    action, and read when each happened; the round's figures."""
    from bench.harness import child_cpu_seconds, cpu_used_since

    figures: dict[str, Any] = {"load_before": load_average()}
    with tempfile.TemporaryDirectory(prefix="crmflow-bench-tickets-") as scratch:
        state = Path(scratch)
        with four_clock_stack(state, worker_env, workers) as stack:
            await asyncio.sleep(3)  # let the worker start polling
            cpu_before = child_cpu_seconds()
            run = uuid.uuid4().hex[:8]
            start = datetime.now(UTC)
            tickets: list[PolicyTicket] = four_clock_tickets(
                args.count, run, start + timedelta(seconds=args.warn_in), args.spread
            )
            headers = {"Authorization": f"Bearer {stack.key}"}
            limits = httpx.Limits(
                max_connections=args.concurrency, max_keepalive_connections=args.concurrency
            )
            rss = RssWatch([w.pid for w in stack.workers])
            async with httpx.AsyncClient(
                base_url=stack.url, headers=headers, limits=limits, timeout=60
            ) as api:
                watching = asyncio.create_task(rss.watch())
                elapsed = await open_and_reply(api, tickets, args.concurrency)
                figures["opening_seconds"] = round(elapsed, 1)
                figures["start_failures"] = sum(1 for t in tickets if t.status not in (200, 201))
                last_due = max(due for t in tickets for due in t.due.values())
                await asyncio.sleep(max((last_due - datetime.now(UTC)).total_seconds(), 0) + 2)
                await wait_for_actions(state / "crm.db", tickets, within=args.grace)
                figures["cpu_s"] = cpu_used_since(cpu_before)
                figures["load_after"] = load_average()
                watching.cancel()
                figures["worker_rss_mib_parked"] = rss.parked
                figures["worker_rss_mib_peak"] = rss.peak()
                figures["worker_counters"] = await worker_counters(api, stack.metrics)
                await read_looks(api, tickets)
                figures["history_sample"] = await history_sample(stack.temporal_address, tickets)
                figures["late_looks"] = await late_looks_explained(stack.temporal_address, tickets)
                figures["failed_runs"] = await failed_runs(stack.temporal_address)
    figures.update(four_clock_lateness(tickets))
    return figures


async def open_and_reply(
    api: httpx.AsyncClient, tickets: list[PolicyTicket], concurrency: int
) -> float:
    """Open each ticket (urgent, tagged ``bench``) at its ``created_at``, then, at its
    ``replies_at``, send a public agent reply (the periodic update starts) and a customer
    reply (the next reply starts), both stamped ``replies_at`` however late they are posted,
    as a helpdesk stamps them; ``concurrency`` requests in flight at most, a refused reply
    printed. Every ticket keeps its own schedule: a reply does not wait for later tickets
    to open. The seconds from the first opening to the last."""
    semaphore = asyncio.Semaphore(concurrency)
    opened: list[float] = []

    async def one(ticket: PolicyTicket) -> None:
        await asyncio.sleep(max((ticket.created_at - datetime.now(UTC)).total_seconds(), 0))
        async with semaphore:
            ticket.status = await post_ticket(api, ticket.ticket_id, ticket.created_at, ["bench"])
        ticket.started_at = datetime.now(UTC)
        opened.append(time.perf_counter())
        if ticket.status not in (200, 201):
            return
        await asyncio.sleep(max((ticket.replies_at - datetime.now(UTC)).total_seconds(), 0))
        path = f"/v1/processes/{ticket.process_id}/events"
        when = ticket.replies_at.isoformat()
        agent = {"type": "agent_replied", "data": {"public": True}, "occurred_at": when}
        async with semaphore:
            for event in (agent, {"type": "customer_replied", "occurred_at": when}):
                response = await api.post(path, json=event)
                if response.status_code != 202:
                    print(f"{ticket.ticket_id}: {event['type']}: {response.status_code}")
        ticket.replied_at = datetime.now(UTC)

    began = time.perf_counter()
    await asyncio.gather(*(one(ticket) for ticket in tickets))
    return max(opened, default=began) - began


async def wait_for_actions(database: Path, tickets: list[PolicyTicket], within: float) -> None:
    """Read each action's email and final row (notification, task) from the CRM database
    until every due action has them, or ``within`` seconds have passed."""
    by_process = {t.process_id: t for t in tickets}
    expected = sum(len(t.due) for t in tickets)
    stop_at = time.monotonic() + within
    while True:
        rows = read_rows(database)
        for process_id, kind, step, created_at in rows:
            ticket = by_process.get(process_id)
            if ticket is None:
                continue
            if kind == "email":
                ticket.emailed[step] = created_at
            elif DONE_ROW.get(step.rsplit("_", 1)[-1]) == kind:
                ticket.done[step] = created_at
        done = sum(len(t.done) for t in tickets)
        if done >= expected or time.monotonic() > stop_at:
            return
        await asyncio.sleep(2)


def read_rows(database: Path) -> list[tuple[str, str, str, datetime]]:
    """``(process_id, kind, step, created_at)`` of the bench's emails, notifications and
    tasks; ``step`` from the row's idempotency key (``{process_id}/{kind}_{step}``)."""
    rows = []
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        for kind, table in (
            ("email", "outbound_emails"),
            ("notify", "notifications"),
            ("task", "tasks"),
        ):
            for process_id, key, created_at in db.execute(
                f"SELECT process_id, key, created_at FROM {table} "
                "WHERE process_id LIKE 'sla-bench-%'"
            ):
                step = key.rsplit("/", 1)[-1].removeprefix(f"{kind}_")
                rows.append((process_id, kind, step, as_utc(created_at)))
    return rows


async def read_looks(api: httpx.AsyncClient, tickets: list[PolicyTicket]) -> None:
    """When each run saw each level reached (``at`` of its escalations in ``state``).

    Lateness is measured from the bench's own schedule, so a run that counted a clock from
    a later instant than the reply's stamp shows as late; the runs' due instants are not
    read back (a breached clock shows none)."""
    semaphore = asyncio.Semaphore(16)

    async def read(ticket: PolicyTicket) -> None:
        async with semaphore:
            body = await view(api, ticket.ticket_id)
        details = ((body or {}).get("state") or {}).get("details", {})
        for escalation in details.get("escalations", []):
            step = f"{escalation['clock']}_{escalation['level']}"
            ticket.looked[step] = datetime.fromisoformat(escalation["at"])

    await asyncio.gather(*(read(t) for t in tickets if t.status in (200, 201)))


def four_clock_lateness(tickets: list[PolicyTicket]) -> dict[str, Any]:
    """Lateness in seconds of every action (its final row after its due instant), p50 / p99
    / max per kind and overall; the look and the email, overall, to tell where it went."""
    punctual = [t for t in tickets if t.started_at and t.started_at < min(t.due.values())]
    figures: dict[str, Any] = {
        "tickets_started_late": len(tickets) - len(punctual),
        "actions_due": sum(len(t.due) for t in punctual),
        "actions_done": sum(len(t.done.keys() & t.due.keys()) for t in punctual),
        "due_per_second_peak": peak_rate([due for t in punctual for due in t.due.values()]),
    }
    taken = [(t.replied_at - t.replies_at).total_seconds() for t in punctual if t.replied_at]
    figures["replies_taken_late"] = percentiles(taken, (50, 99, 100)) if taken else None
    every: dict[str, list[float]] = {"looked": [], "emailed": [], "done": []}
    for kind in ACTION_KINDS:
        lateness = late(punctual, kind, "done")
        figures[f"done_{kind}"] = percentiles(lateness, (50, 99, 100)) if lateness else None
        for part in every:
            every[part] += late(punctual, kind, part)
    for part, values in every.items():
        figures[f"{part}_all"] = percentiles(values, (50, 99, 100)) if values else None
    return figures


def peak_rate(instants: list[datetime], window: float = 10.0) -> float:
    """The most instants falling in any ``window`` seconds, per second."""
    times = sorted(instant.timestamp() for instant in instants)
    most, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] > window:
            start += 1
        most = max(most, end - start + 1)
    return round(most / window, 1)


def late(tickets: list[PolicyTicket], kind: str, part: str) -> list[float]:
    """Seconds from each ticket's ``kind`` due instant to its ``part`` (looked, emailed, done)."""
    return [
        (getattr(t, part)[kind] - t.due[kind]).total_seconds()
        for t in tickets
        if kind in t.due and kind in getattr(t, part)
    ]


#: The workers' SDK counters a round reports (without their ``temporal_`` prefix, ``_total``
#: suffix and a histogram's unit): workflow tasks run and replayed, activities and local
#: activities, and how the cache of workflow runs fared (a miss replays the whole history).
WORKER_COUNTERS = (
    "workflow_task_execution_latency_count",
    "workflow_task_replay_latency_count",
    "activity_execution_latency_count",
    "local_activity_total",
    "sticky_cache_hit",
    "sticky_cache_miss",
    "sticky_cache_total_forced_eviction",
)


async def worker_counters(api: httpx.AsyncClient, metrics: list[str]) -> dict[str, float]:
    """``WORKER_COUNTERS`` from the workers' Prometheus endpoints, summed over their labels
    and the workers."""
    text = "\n".join([(await api.get(url)).text for url in metrics])
    totals: dict[str, float] = {}
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0].removeprefix("temporal_")
        short = name.removesuffix("_total").replace("_seconds_count", "_count")
        if short in WORKER_COUNTERS:
            totals[short] = totals.get(short, 0.0) + float(line.rsplit(" ", 1)[-1])
    return totals


def event_name(event: HistoryEvent) -> str:
    """``timer_fired`` for ``EVENT_TYPE_TIMER_FIRED``."""
    return EventType.Name(event.event_type).removeprefix("EVENT_TYPE_").lower()


async def history_sample(
    address: str, tickets: list[PolicyTicket], size: int = 20
) -> dict[str, float]:
    """Events per ticket run by type, averaged over ``size`` runs spread over the round."""
    from temporalio.client import Client

    client = await Client.connect(address)
    sample = tickets[:: max(len(tickets) // size, 1)][:size]
    counts: dict[str, int] = {}
    for ticket in sample:
        history = await client.get_workflow_handle(ticket.process_id).fetch_history()
        for event in history.events:
            name = event_name(event)
            counts[name] = counts.get(name, 0) + 1
    counts["all"] = sum(counts.values())
    return {name: round(count / len(sample), 1) for name, count in sorted(counts.items())}


#: The history events that schedule a workflow task (what woke the run).
WAKERS = {
    EventType.EVENT_TYPE_TIMER_FIRED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
}


async def late_looks_explained(
    address: str, tickets: list[PolicyTicket], over: float = 0.5, most: int = 40
) -> dict[str, Any]:
    """Where the time of the latest looks went (``most`` of those more than ``over`` s after
    their due instant), read from each run's history: the workflow task the look happened in,
    what woke it (a timer, a signal), and in seconds after the due instant when its timer
    fired (``fired``) and the task was scheduled (``scheduled``); then how long the task
    waited for a worker (``queued``) and ran before the look (``in_task``). A timer's part
    splits in two: the instant the run's timer was set for (its start plus its duration;
    ``set_for``, after the due instant, with how long the workflow task that set it ran,
    ``setting_task``) and how long after that instant the server fired it
    (``fired_after_set_for``). Medians and maxima; the runs' failed or timed-out workflow
    tasks counted."""
    from temporalio.client import Client

    looks = sorted(
        (
            ((t.looked[kind] - t.due[kind]).total_seconds(), t, kind)
            for t in tickets
            for kind in t.looked.keys() & t.due.keys()
        ),
        key=lambda look: look[0],
    )
    looks = [look for look in looks if look[0] > over][-most:]
    if not looks:
        return {}
    client = await Client.connect(address)
    parts: dict[str, list[float]] = {
        name: []
        for name in (
            "set_for",
            "setting_task",
            "fired_after_set_for",
            "fired",
            "scheduled",
            "queued",
            "in_task",
        )
    }
    woken_by: dict[str, int] = {}
    for _, ticket, kind in looks:
        history = await client.get_workflow_handle(ticket.process_id).fetch_history()
        events = {event.event_id: event for event in history.events}
        at = {i: e.event_time.ToDatetime(tzinfo=UTC) for i, e in events.items()}
        due, looked = ticket.due[kind], ticket.looked[kind]
        started = max(
            i
            for i, e in events.items()
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
            and at[i] <= looked + timedelta(milliseconds=1)
        )
        scheduled = events[started].workflow_task_started_event_attributes.scheduled_event_id
        previous = max(
            (
                i
                for i, e in events.items()
                if i < scheduled and e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
            ),
            default=0,
        )
        wakers = [
            events[i] for i in range(previous + 1, scheduled) if events[i].event_type in WAKERS
        ]
        for event in wakers:
            name = event_name(event)
            woken_by[name] = woken_by.get(name, 0) + 1
        fired = [e for e in wakers if e.event_type == EventType.EVENT_TYPE_TIMER_FIRED]
        if fired:
            parts["fired"].append((at[fired[0].event_id] - due).total_seconds())
            set_by = events[fired[0].timer_fired_event_attributes.started_event_id]
            timer = set_by.timer_started_event_attributes
            set_for = at[set_by.event_id] + timer.start_to_fire_timeout.ToTimedelta()
            parts["set_for"].append((set_for - due).total_seconds())
            parts["fired_after_set_for"].append((at[fired[0].event_id] - set_for).total_seconds())
            completed = events[timer.workflow_task_completed_event_id]
            task_started = completed.workflow_task_completed_event_attributes.started_event_id
            parts["setting_task"].append(
                (at[completed.event_id] - at[task_started]).total_seconds()
            )
        parts["scheduled"].append((at[scheduled] - due).total_seconds())
        parts["queued"].append((at[started] - at[scheduled]).total_seconds())
        parts["in_task"].append((looked - at[started]).total_seconds())
        for event in history.events:
            if event.event_type in (
                EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
                EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
            ):
                name = event_name(event)
                woken_by[f"run_had_{name}"] = woken_by.get(f"run_had_{name}", 0) + 1
    figures: dict[str, Any] = {"looks": len(looks), "woken_by": woken_by}
    for part, values in parts.items():
        if values:
            figures[part] = percentiles(values, (50, 100))
    return figures


async def failed_runs(address: str, limit: int = 5) -> dict[str, int]:
    """The round's failed runs by failure message (at most ``limit`` histories read)."""
    from temporalio.client import Client

    client = await Client.connect(address)
    messages: dict[str, int] = {}
    async for run in client.list_workflows('ExecutionStatus = "Failed"', limit=limit):
        history = await client.get_workflow_handle(run.id, run_id=run.run_id).fetch_history()
        failed = history.events[-1].workflow_execution_failed_event_attributes.failure
        message = (
            f"{failed.message} ({failed.cause.message})" if failed.cause.message else failed.message
        )
        messages[message[:200]] = messages.get(message[:200], 0) + 1
    return messages


class RssWatch:
    """The workers' resident memory, added up: once all tickets are parked, and the sum of
    their peaks (VmHWM)."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.parked: float | None = None

    async def watch(self) -> None:
        await asyncio.sleep(60)
        self.parked = round(sum(rss_mib(pid) or 0.0 for pid in self.pids), 1)

    def peak(self) -> float | None:
        peaks = [rss_mib(pid, "VmHWM") for pid in self.pids]
        return None if None in peaks else round(sum(p or 0.0 for p in peaks), 1)


def as_utc(value: str | datetime) -> datetime:
    """A stored timestamp (SQLite keeps them without a zone: UTC) as an aware datetime."""
    instant = datetime.fromisoformat(value) if isinstance(value, str) else value
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def four_clocks(args: argparse.Namespace) -> list[dict[str, Any]]:
    """``--rounds`` rounds per variant (``--workers`` x ``--worker-env``), alternating;
    prints each round and the medians with their ranges."""
    stretch_schedule(args.stretch)
    variants = [
        (f"{workers} worker(s), {name}", env, workers)
        for name, env in (parse_env(spec) for spec in (args.worker_env or [""]))
        for workers in args.workers
    ]
    results: dict[str, list[dict[str, Any]]] = {}
    for round_number in range(1, args.rounds + 1):
        for name, env, workers in variants:
            print(f"round {round_number}, {name}", flush=True)
            figures = asyncio.run(four_clock_round(args, env, workers))
            for key, value in figures.items():
                print(f"  {key}: {value}", flush=True)
            results.setdefault(name, []).append(figures)
    for name, rounds in results.items():
        print(f"\n{name}: {len(rounds)} round(s), medians (range)", flush=True)
        for key in rounds[0]:
            print(f"  {key}: {summarise([r[key] for r in rounds])}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    return [r for rounds in results.values() for r in rounds]


def parse_env(spec: str) -> tuple[str, dict[str, str]]:
    """``"K=V,K2=V2"`` as a variant's name and its worker environment (empty: defaults)."""
    pairs = [item.split("=", 1) for item in spec.split(",") if item]
    return (spec or "defaults"), {key: value for key, value in pairs}


def summarise(values: list[Any]) -> str:
    """The median and range of numbers or of percentile dicts, else the values."""
    if all(isinstance(v, int | float) for v in values):
        return f"{statistics.median(values):g} ({min(values):g}-{max(values):g})"
    if all(isinstance(v, dict) and v.keys() == values[0].keys() for v in values) and all(
        isinstance(n, int | float) for v in values for n in v.values()
    ):
        return ", ".join(
            f"{point} {statistics.median(v[point] for v in values):.3f}"
            f" ({min(v[point] for v in values):.3f}-{max(v[point] for v in values):.3f})"
            for point in values[0]
        )
    return " | ".join(str(v) for v in values)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.count < 1:
        sys.exit("--count must be at least 1")
    if arguments.four_clocks:
        four_clocks(arguments)
    else:
        asyncio.run(main(arguments))
