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
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

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
        "--warn-in", type=float, default=150.0, help="seconds from the start to the first warning"
    )
    parser.add_argument("--spread", type=float, default=30.0, help="seconds the warnings span")
    parser.add_argument("--worker-pid", type=int, default=None, help="default: found in /proc")
    parser.add_argument("--maildir", type=Path, default=Path(".crmflow/mail"))
    parser.add_argument("--keep-open", action="store_true", help="leave the tickets running")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return parser.parse_args(argv)


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


async def open_tickets(api: httpx.AsyncClient, tickets: list[Ticket], concurrency: int) -> float:
    """POST every ticket, ``concurrency`` at a time; the elapsed wall time in seconds."""
    queue: asyncio.Queue[Ticket] = asyncio.Queue()
    for ticket in tickets:
        queue.put_nowait(ticket)

    async def opener() -> None:
        while not queue.empty():
            ticket = queue.get_nowait()
            response = await api.post(
                "/v1/tickets",
                json={
                    "ticket_id": ticket.ticket_id,
                    "customer_id": "c-bench",
                    "subject": "Benchmark ticket",
                    "priority": "urgent",
                    "created_at": (ticket.warning_due - WARNING_AFTER).isoformat(),
                    "timezone": "Europe/Stockholm",
                },
            )
            ticket.status = response.status_code
            ticket.started_at = datetime.now(UTC)
            if response.status_code not in (200, 201):
                print(f"{ticket.ticket_id}: {response.status_code} {response.text}", flush=True)

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


def rss_mib(pid: int | None) -> float | None:
    """Resident memory of ``pid`` in MiB (VmRSS), or None if unknown."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
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


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.count < 1:
        sys.exit("--count must be at least 1")
    asyncio.run(main(arguments))
