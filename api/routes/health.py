"""``/healthz`` (the process is up) and ``/readyz`` (Temporal and the database answer).

Both answer a load balancer's or Kubernetes' probe without a key, so neither says more
than ``ok`` or ``unavailable`` per dependency: why a check failed (an address, an error
text) goes to the API's log only.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter
from sqlalchemy import literal
from sqlmodel import select

from api.deps import ContextDep
from api.problems import Problem

router = APIRouter(tags=["health"])
log = logging.getLogger("crmflow.api.health")

CHECK_TIMEOUT_SECONDS = 3.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """200 while the API process runs."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(context: ContextDep) -> dict[str, str]:
    """200 when Temporal and the database both answer; 503 problem+json naming which does not
    (``temporal: unavailable``)."""
    checks = {
        "temporal": await _check_temporal(context),
        "database": await _check_database(context),
    }
    failing = {name: result for name, result in checks.items() if result != "ok"}
    for name, reason in failing.items():
        log.warning("not ready: %s: %s", name, reason)
    checks = {name: "ok" if result == "ok" else "unavailable" for name, result in checks.items()}
    if failing:
        raise Problem(
            503,
            "not-ready",
            "Not ready",
            "; ".join(f"{name}: unavailable" for name in failing),
            checks=checks,
        )
    return {"status": "ready", **checks}


async def _check_temporal(context: ContextDep) -> str:
    try:
        client = await asyncio.wait_for(context.temporal.client(), CHECK_TIMEOUT_SECONDS)
        await asyncio.wait_for(client.service_client.check_health(), CHECK_TIMEOUT_SECONDS)
    except Problem as err:
        return err.detail
    except Exception as err:
        return f"{type(err).__name__}: {err}"
    return "ok"


async def _check_database(context: ContextDep) -> str:
    try:
        await asyncio.wait_for(
            context.database.run(
                lambda session: session.exec(select(literal(1))).one(), write=False
            ),
            CHECK_TIMEOUT_SECONDS,
        )
    except Exception as err:
        return f"{type(err).__name__}: {err}"
    return "ok"
