"""What route handlers depend on, declared once as ``Annotated`` aliases."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from temporalio.client import Client

from api.problems import Problem
from crm.platform.settings import Settings
from crm.platform.temporal import connect
from crm.policy import Policy
from crm.store.db import Database


@dataclass
class TemporalConnection:
    """One Temporal client for the app's life, connected on first use.

    Connecting lazily lets the API start (and report not-ready) while the
    Temporal server is still coming up.
    """

    settings: Settings
    _client: Client | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def client(self) -> Client:
        """The shared client; raises Problem 503 when Temporal cannot be reached."""
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    try:
                        self._client = await connect(self.settings)
                    except RuntimeError as err:
                        raise Problem(
                            503,
                            "temporal-unavailable",
                            "Temporal is unavailable",
                            f"cannot reach {self.settings.temporal_address}: {err}",
                        ) from err
        return self._client


@dataclass
class AppContext:
    """Everything the routes share, built once by the app's lifespan."""

    settings: Settings
    policy: Policy
    database: Database
    temporal: TemporalConnection


async def get_context(request: Request) -> AppContext:
    """The app's context, stored on ``app.state`` by the lifespan."""
    context: AppContext = request.app.state.context
    return context


ContextDep = Annotated[AppContext, Depends(get_context)]


async def get_temporal(context: ContextDep) -> Client:
    """The app's Temporal client."""
    return await context.temporal.client()


async def get_database(context: ContextDep) -> Database:
    """The CRM database; routes run their queries with ``await database.run(...)``."""
    return context.database


async def get_policy(context: ContextDep) -> Policy:
    """The validated business policy."""
    return context.policy


TemporalDep = Annotated[Client, Depends(get_temporal)]
DatabaseDep = Annotated[Database, Depends(get_database)]
PolicyDep = Annotated[Policy, Depends(get_policy)]
