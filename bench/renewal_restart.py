"""A renewal's 60-day timer survives a restart of the Temporal dev server.

Starts its own file-backed dev server (``temporal server start-dev
--db-filename <tmp>/temporal.db``), an SMTP sink, a SQLite CRM database and
the crmflow worker; reports seat usage above the starter plan's upsell
threshold and starts a renewal whose 60-day mark is a few seconds away. It
then stops the server with SIGTERM while the renewal waits on that timer,
keeps it down past the mark, starts it again on the same file and port, and
checks that the timer fired after all: the 60-day reminder and the upsell
offer reach the customer's inbox. Prints a timeline; exits 1 on failure.

    .venv/bin/python -m bench.renewal_restart [--mark-in 8] [--down-for 12]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.service import RPCError

from crm.platform.settings import Settings
from crm.policy import Policy
from crm.store.db import Database
from crm.store.models import UsageReport
from devstack.mailsink import MailSink, read_messages
from processes.renewals import build_renewal_input
from tests.support.servers import free_port
from worker.main import running_worker
from workflows.common import SEARCH_ATTRIBUTES, ProcessState
from workflows.renewal import RenewalWorkflow
from workflows.renewal_types import renewal_id

TEMPORAL = Path(sys.executable).parent / "temporal"
SHOWN_EVENTS = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
    EventType.EVENT_TYPE_TIMER_STARTED,
    EventType.EVENT_TYPE_TIMER_FIRED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
}
STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", flush=True)


def start_server(db_file: Path, port: int) -> subprocess.Popen[bytes]:
    command = [
        str(TEMPORAL),
        "server",
        "start-dev",
        "--db-filename",
        str(db_file),
        "--headless",
        "--port",
        str(port),
        "--http-port",
        str(free_port()),
        "--metrics-port",
        str(free_port()),
        "--log-level",
        "error",
        *(f"--search-attribute={key.name}=Keyword" for key in SEARCH_ATTRIBUTES),
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def wait_for_server(address: str) -> Client:
    deadline = time.monotonic() + 30
    while True:
        try:
            return await Client.connect(address)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def wait_until_idle_on_a_timer(client: Client, process_id: str) -> None:
    """Wait until the run has started a timer and has no workflow task or activity pending."""
    handle = client.get_workflow_handle(process_id)
    while True:
        description = await handle.describe()
        raw = description.raw_description
        history = await handle.fetch_history()
        types = [e.event_type for e in history.events]
        waiting = types[-1] == EventType.EVENT_TYPE_TIMER_STARTED
        if waiting and not raw.pending_activities and not raw.HasField("pending_workflow_task"):
            return
        await asyncio.sleep(0.2)


async def renewal_state(client: Client, process_id: str) -> ProcessState | None:
    try:
        handle = client.get_workflow_handle_for(RenewalWorkflow.run, process_id)
        return await handle.query(RenewalWorkflow.state, rpc_timeout=timedelta(seconds=2))
    except (RPCError, RuntimeError):
        return None


async def main(mark_in: float, down_for: float) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="crmflow-restart-"))
    db_file, port = workdir / "temporal.db", free_port()
    address = f"127.0.0.1:{port}"
    server = start_server(db_file, port)
    say(f"dev server pid {server.pid} on {address}, persistence {db_file}")
    client = await wait_for_server(address)
    say("dev server ready")

    with MailSink(workdir / "mail") as sink:
        settings = Settings(
            temporal_address=address,
            task_queue=f"bench-{uuid.uuid4().hex[:8]}",
            database_url=f"sqlite:///{workdir / 'crm.db'}",
            smtp_host=sink.host,
            smtp_port=sink.port,
            worker_graceful_shutdown_seconds=5,
        )
        database = Database.from_url(settings.database_url)
        await database.create_tables()
        policy = Policy()
        subscription_id = f"sub-bench-{uuid.uuid4().hex[:8]}"
        report = UsageReport(subscription_id=subscription_id, metric="seats", used=47, included=50)
        await database.run(lambda session: session.add(report))
        renewal_date = datetime.now(UTC) + timedelta(days=60, seconds=mark_in)
        term = build_renewal_input(
            policy,
            subscription_id=subscription_id,
            customer_id="c-bench",
            company_name="Bench Corp",
            contact_name="Ben Chu",
            contact_email="ben.chu@bench-corp.io",
            renewal_date=renewal_date,
            plan="starter",
            annual_value=6000,
            owner_id="csm-ben",
            auto_renew=True,
        )
        process_id = renewal_id(subscription_id)
        ok = False
        try:
            async with running_worker(client, settings, policy, database):
                say(f"worker polling {settings.task_queue}")
                await client.start_workflow(
                    RenewalWorkflow.run, term, id=process_id, task_queue=settings.task_queue
                )
                say(f"started {process_id}, renewal date {renewal_date:%Y-%m-%d %H:%M:%S} UTC")
                await wait_until_idle_on_a_timer(client, process_id)
                state = await renewal_state(client, process_id)
                assert state is not None
                mark = state.due["usage_analysis"]
                say(
                    f"waiting on its 60-day timer, due {mark:%H:%M:%S} UTC "
                    f"(in {(mark - datetime.now(UTC)).total_seconds():.1f}s); "
                    f"reminders sent {state.details['reminders_sent']}"
                )

                server.send_signal(signal.SIGTERM)
                code = server.wait(timeout=30)
                say(f"dev server stopped with SIGTERM (exit {code}); staying down {down_for}s")
                await asyncio.sleep(down_for)
                say(f"the 60-day mark passed {(datetime.now(UTC) - mark).total_seconds():.1f}s ago")
                server = start_server(db_file, port)
                say(f"dev server restarted, pid {server.pid}, same file and port")

                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    state = await renewal_state(client, process_id)
                    if state and state.details["upsell"] == "offered":
                        ok = True
                        break
                    await asyncio.sleep(0.5)
                if state is not None:
                    say(
                        f"state: stage={state.stage} reminders_sent="
                        f"{state.details['reminders_sent']} usage="
                        f"{(state.details['usage'] or {}).get('utilisation')} "
                        f"upsell={state.details['upsell']}"
                    )
                    for step in state.steps:
                        say(f"  step {step.at:%H:%M:%S} {step.step} {step.detail}")
                history = await client.get_workflow_handle(process_id).fetch_history()
                for e in history.events:
                    if e.event_type in SHOWN_EVENTS:
                        at = e.event_time.ToDatetime(UTC)
                        name = EventType.Name(e.event_type).removeprefix("EVENT_TYPE_")
                        say(f"  event {e.event_id:3} {at:%H:%M:%S.%f} {name}")
                fired_after_restart = [
                    e
                    for e in history.events
                    if e.event_type == EventType.EVENT_TYPE_TIMER_FIRED
                    and e.event_time.ToDatetime(UTC) > mark
                ]
                ok = ok and bool(fired_after_restart)
                for message in read_messages(sink.maildir):
                    say(f"  mail to {message.recipients[0]}: {message.subject}")
                await client.get_workflow_handle(process_id).terminate("bench over")
        finally:
            await database.dispose()
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    say("PASS: the 60-day timer fired after the restart" if ok else "FAIL: no 60-day step")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mark-in", type=float, default=8.0, help="seconds to the 60-day mark")
    parser.add_argument("--down-for", type=float, default=12.0, help="seconds the server is down")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.mark_in, args.down_for)))
