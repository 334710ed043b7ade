"""The crmflow HTTP API: a thin layer that starts processes and forwards events.

``create_app()`` builds the app; ``crmflow api`` serves it with uvicorn on
``CRMFLOW_API_HOST``:``CRMFLOW_API_PORT``. OpenAPI docs are at ``/docs``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware

from api.auth import Authenticator, StartRateLimiter
from api.automation_documents import document_automation_schema
from api.console.app import install_console
from api.deps import AppContext, TemporalConnection
from api.limits import BodySizeLimit
from api.metrics import install_metrics
from api.problems import PROBLEM_RESPONSES, document_problems, install_problem_handlers
from api.routes import (
    approvals,
    attention,
    automation_preview,
    automations,
    codec,
    customers,
    health,
    inbox,
    mail,
    records,
    reports,
    tasks,
    usage,
    webhooks,
)
from api.routes.processes import processes_router
from api.routes.starts import start_router
from crm.platform.codec import parse_codec_keys
from crm.platform.logs import configure_logging
from crm.platform.principals import load_api_keys_file
from crm.platform.settings import Settings, get_settings
from crm.policy import load_policy
from crm.store.db import Database


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API app for ``settings`` (default: from the environment).

    Raises, at start-up: crm.policy.PolicyError when the policy file is invalid,
    crm.platform.codec.CodecKeyError when the payload encryption keys are malformed and
    crm.platform.principals.ApiKeyError when the API keys file is.
    """
    settings = settings or get_settings()
    policy = load_policy(settings.policy_file)
    if settings.codec_keys:
        parse_codec_keys(settings.codec_keys)  # a malformed key stops start-up here
    file_keys = load_api_keys_file(settings.api_keys_file)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database.from_url(settings.database_url)
        await database.create_tables()
        app.state.context = AppContext(
            settings=settings,
            policy=policy,
            database=database,
            temporal=TemporalConnection(settings),
        )
        app.state.authenticator = Authenticator(settings, database, file_keys)
        try:
            yield
        finally:
            await database.dispose()

    app = FastAPI(
        title="crmflow",
        version="1",
        summary="Durable CRM processes on Temporal: onboarding, SLA escalation, renewals.",
        lifespan=lifespan,
        responses=PROBLEM_RESPONSES,
    )
    # Each of the API's replicas takes its share of a principal's start rate.
    app.state.start_limiter = StartRateLimiter(
        settings.start_rate_per_second / settings.api_replicas,
        max(1, settings.start_burst // settings.api_replicas),
    )
    install_problem_handlers(app)
    document_problems(app)
    document_automation_schema(app)
    install_metrics(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    # Report tables and console pages run to tens of KB; the hot small answers stay as they are.
    app.add_middleware(GZipMiddleware, minimum_size=4096)
    app.add_middleware(
        CORSMiddleware,  # the Web UI calls the codec server from its own origin
        allow_origins=list(settings.ui_origins),
        allow_credentials=True,
        allow_methods=["POST", "GET"],
        allow_headers=["Authorization", "Content-Type", "X-Namespace", "X-Api-Key"],
    )
    for router in (
        health.router,
        start_router(policy),
        processes_router(policy),
        customers.router,
        attention.router,
        tasks.router,
        inbox.router,
        approvals.router,
        usage.router,
        automation_preview.router,
        automations.router,
        records.router,
        webhooks.router,
        mail.router,
        mail.links_router,
        reports.router,
        codec.router,
    ):
        app.include_router(router)
    install_console(app)
    return app


def main() -> None:
    """Entry point of ``crmflow api``."""
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        proxy_headers=True,
        forwarded_allow_ips=settings.api_forwarded_allow_ips,
        log_config=None,
        access_log=False,  # paths can hold secrets (the UI's codec key); metrics count requests
    )
