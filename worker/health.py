"""The worker's probes for a load balancer or Kubernetes: ``/healthz`` and ``/readyz``.

Served on ``CRMFLOW_WORKER_HEALTH_ADDRESS`` (``host:port``; unset: not served). ``/healthz``
answers 200 while the worker's event loop runs; ``/readyz`` answers 200 when Temporal and
the database answer, else 503 naming which one does not (``ok`` or ``unavailable``, never
an address or an error text: the details go to the worker's log). Neither needs a key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web
from sqlalchemy import literal
from sqlmodel import select
from temporalio.client import Client

from crm.store.db import Database

log = logging.getLogger("crmflow.worker.health")

CHECK_TIMEOUT_SECONDS = 3.0


async def readiness(client: Client, database: Database) -> dict[str, str]:
    """``{"temporal": "ok"|"unavailable", "database": "ok"|"unavailable"}``; never raises."""
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(client.service_client.check_health(), CHECK_TIMEOUT_SECONDS)
        checks["temporal"] = "ok"
    except Exception as err:
        log.warning("readiness: Temporal does not answer: %s", err)
        checks["temporal"] = "unavailable"
    try:
        await asyncio.wait_for(
            database.run(lambda session: session.exec(select(literal(1))).one(), write=False),
            CHECK_TIMEOUT_SECONDS,
        )
        checks["database"] = "ok"
    except Exception as err:
        log.warning("readiness: the database does not answer: %s", err)
        checks["database"] = "unavailable"
    return checks


@asynccontextmanager
async def serving_probes(address: str, client: Client, database: Database) -> AsyncIterator[None]:
    """Serve ``/healthz`` and ``/readyz`` on ``address`` (``host:port``) while open.

    Raises OSError when the address cannot be bound.
    """

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        checks = await readiness(client, database)
        ready = all(result == "ok" for result in checks.values())
        return web.json_response(
            {"status": "ready" if ready else "not ready", **checks}, status=200 if ready else 503
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, _, port = address.rpartition(":")
    site = web.TCPSite(runner, host or "0.0.0.0", int(port))
    await site.start()
    try:
        yield
    finally:
        await runner.cleanup()
