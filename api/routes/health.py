"""``/healthz`` (the process is up) and ``/readyz`` (Temporal and the database answer)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from sqlalchemy import literal
from sqlmodel import select

from api.auth import Authenticated
from api.deps import ContextDep
from api.problems import Problem

router = APIRouter(tags=["health"])

CHECK_TIMEOUT_SECONDS = 3.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """200 while the API process runs."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(context: ContextDep, _: Authenticated) -> dict[str, str]:
    """200 when Temporal and the database both answer; 503 problem+json naming what does not."""
    checks = {
        "temporal": await _check_temporal(context),
        "database": await _check_database(context),
    }
    failing = {name: result for name, result in checks.items() if result != "ok"}
    if failing:
        raise Problem(
            503,
            "not-ready",
            "Not ready",
            "; ".join(f"{name}: {result}" for name, result in failing.items()),
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
