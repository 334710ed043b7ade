"""The Temporal server stops and starts again while processes wait on timers and signals.

A file-backed dev server (as the dev stack runs it) holds five tickets whose
SLA timers fall due a few seconds later and five onboardings waiting for
their milestone signals. The server is stopped before any timer fires and
started again on the same file and port. The worker, which stayed up, picks
the work back up: every timer fires (each ticket warns and escalates, by email),
the onboardings take their signals, and every run completes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.client import Client

from crm.platform.settings import Settings
from crm.policy import Policy, load_policy
from crm.store.db import Database
from devstack.mailsink import MailSink
from tests.conftest import DEV_SERVER
from tests.support.onboarding import onboarding_input, send_event, start_onboarding
from tests.support.servers import free_port
from tests.support.sla import mail_of, start_ticket, ticket_input
from tests.support.sla import send_event as send_ticket_event
from worker.main import running_worker
from workflows.common import SEARCH_ATTRIBUTES

FAST_SLA = """\
sla:
  tiers:
    express:
      targets:
        urgent: {first_response: 8s, resolution: 60s, around_the_clock: true}
"""


class DevServer:
    """``temporal server start-dev`` on a fixed port and database file, restartable."""

    def __init__(self, db_file: Path) -> None:
        self.port = free_port()
        self.db_file = db_file
        self.process: asyncio.subprocess.Process | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        argv = [str(DEV_SERVER), "server", "start-dev", "--headless", "--log-level", "error"]
        argv += ["--ip", "127.0.0.1", "--port", str(self.port), "--db-filename", str(self.db_file)]
        argv += ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]
        for key in SEARCH_ATTRIBUTES:
            argv += ["--search-attribute", f"{key.name}=Keyword"]
        self.process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        for _ in range(300):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            await asyncio.sleep(0.1)
        raise RuntimeError("dev server did not start")

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await asyncio.wait_for(self.process.wait(), 30)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[DevServer]:
    server = DevServer(tmp_path / "temporal.db")
    try:
        yield server
    finally:
        await server.stop()


async def test_timers_fire_and_signals_land_after_a_server_restart(
    server: DevServer,
    settings: Settings,
    database: Database,
    mail_sink: MailSink,
    tmp_path: Path,
) -> None:
    (tmp_path / "policy.yml").write_text(FAST_SLA)
    policy: Policy = load_policy(tmp_path / "policy.yml")
    await server.start()
    client = await Client.connect(server.address)
    customers = [onboarding_input() for _ in range(5)]
    tickets = [ticket_input(priority="urgent", policy=policy, tier="express") for _ in range(5)]

    async with running_worker(client, settings, policy, database):
        onboardings = [await start_onboarding(client, settings.task_queue, c) for c in customers]
        slas = [await start_ticket(client, settings.task_queue, t) for t in tickets]
        await asyncio.sleep(2)  # everything assigned and parked on its timer or signal

        await server.stop()
        await asyncio.sleep(3)
        await server.start()

        for handle in onboardings:
            for milestone in ("account_configured", "first_value"):
                await retrying(lambda h=handle, m=milestone: send_event(h, m))
        for handle in onboardings:
            assert (await asyncio.wait_for(handle.result(), 60)).outcome == "activated"

        for ticket in slas:  # warning at 6 s, breach at 8 s, manager at 12 s
            await wait_until(lambda t=ticket: len(mail_of(mail_sink.maildir, t.id)) >= 3, 60)
            await retrying(lambda t=ticket: send_ticket_event(t, "resolved"))
            await asyncio.wait_for(ticket.result(), 60)


async def retrying(call: object, attempts: int = 50) -> None:
    """Retry a client call while the restarted server is still warming up."""
    for attempt in range(attempts):
        try:
            await call()  # type: ignore[operator]
            return
        except Exception:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.2)


async def wait_until(condition: object, within: float) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.2)
