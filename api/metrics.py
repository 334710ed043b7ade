"""Prometheus metrics of the API, served at ``GET /metrics``.

- ``crmflow_api_requests_total{method, route, status}``
- ``crmflow_api_request_duration_seconds{method, route}`` (histogram)
- ``crmflow_process_starts_total{process, result}`` with ``result`` ``created``
  (a new run) or ``existing`` (the business key already had one)

Routes are labelled by their template (``/v1/processes/{process_id}``), never
by the concrete path, so the number of series stays bounded. Each app has its
own registry, so several apps (as in tests) do not collide.
"""

from __future__ import annotations

import contextvars
import time

from fastapi import Depends, FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import requires
from crm.platform.logs import bind_process

_current: contextvars.ContextVar[ApiMetrics | None] = contextvars.ContextVar(
    "crmflow_api_metrics", default=None
)


class ApiMetrics:
    """The API's counters and histograms, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "crmflow_api_requests",
            "HTTP requests answered, by route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "crmflow_api_request_duration_seconds",
            "Time to answer an HTTP request, by route template.",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.starts = Counter(
            "crmflow_process_starts",
            "Process start requests, by process and whether a new run was created.",
            ["process", "result"],
            registry=self.registry,
        )


def count_start(process: str, created: bool) -> None:
    """Count a process start in the metrics of the app serving the current request."""
    metrics = _current.get()
    if metrics is not None:
        metrics.starts.labels(process, "created" if created else "existing").inc()


def install_metrics(app: FastAPI) -> ApiMetrics:
    """Measure every request of ``app`` and serve the metrics at ``/metrics``."""
    metrics = ApiMetrics()
    app.state.metrics = metrics

    app.add_middleware(_MeasureRequests, app=app, metrics=metrics)

    @app.get("/metrics", include_in_schema=False, dependencies=[Depends(requires("support"))])
    async def serve_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return metrics


class _MeasureRequests:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware on the start path)."""

    def __init__(self, inner: ASGIApp, *, app: FastAPI, metrics: ApiMetrics) -> None:
        self._inner = inner
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._inner(scope, receive, send)
            return
        _current.set(self._metrics)
        process_id = _path_process_id(scope["path"])
        if process_id:
            bind_process(process_id)
        status = 500

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self._inner(scope, receive, send_and_note_status)
        finally:
            route = _route_template(self._app, scope)
            method = scope["method"]
            self._metrics.latency.labels(method, route).observe(time.perf_counter() - started)
            self._metrics.requests.labels(method, route, str(status)).inc()


def _route_template(app: FastAPI, scope: Scope) -> str:
    route = scope.get("route")
    if route is not None:
        return str(getattr(route, "path", "unmatched"))
    for candidate in app.router.routes:
        match, _ = candidate.matches(scope)
        if match == Match.FULL:
            return str(getattr(candidate, "path", "unmatched"))
    return "unmatched"


def _path_process_id(path: str) -> str | None:
    parts = path.strip("/").split("/")
    if len(parts) >= 3 and parts[:2] == ["v1", "processes"]:
        return parts[2]
    return None
