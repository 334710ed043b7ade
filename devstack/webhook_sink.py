"""A local webhook receiver that records every delivery and answers as it is told.

The dev stack's webhook endpoints point here (``http://<host>:<port>/<any path>``).
Each POST is checked with the ``standardwebhooks`` library against the signing
secrets the sink knows, appended as one JSON line to
``<state>/webhooks/deliveries.jsonl`` (so it survives a restart and other
processes, tests and ``crmflow webhooks``, can read it while the sink runs),
and answered: 200, or 401 when no known secret verifies it. A record names the
secret that verified it by ``secret_fingerprint``, never by the secret itself.

How a path answers can be changed through the control API under ``/_sink/``::

    POST   /_sink/behaviour    {"path": "/hooks/x", "statuses": [503, 503],
                                "stall_seconds": 0, "retry_after": 5,
                                "reject_unverified": true}
    GET    /_sink/behaviour    the plans in force, with the statuses still to answer
    DELETE /_sink/behaviour    forget every plan (``?path=`` only that path's)
    GET    /_sink/deliveries   the deliveries, oldest first (``?path=`` only that path's)
    DELETE /_sink/deliveries   forget every delivery

A plan answers its ``statuses`` in turn, then 200; every answer on its path
waits ``stall_seconds`` first, and 429 and 503 answers carry ``Retry-After:
<retry_after>`` when it is set. With ``reject_unverified: false`` an unverified
delivery gets the planned answer instead of 401. Plans live in memory only.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import uvicorn
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlmodel import col, select
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from crm.platform.codec import CodecKeyError
from crm.platform.sealing import SealingUnavailable
from crm.store.db import Database
from crm.store.models import WebhookEndpoint
from crm.store.webhooks import signing_secrets

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8025
CONTROL_PREFIX = "/_sink/"
WEBHOOK_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
#: How long the known secrets are reused before they are read again.
SECRETS_CACHE_SECONDS = 5.0
#: A delivery no cached secret verifies reads the secrets again, at most this often, so an
#: endpoint created a moment ago is verified on its first delivery.
SECRETS_RELOAD_AFTER_MISS_SECONDS = 0.5

SecretsSource = Callable[[], Awaitable[list[str]]]


def deliveries_file(state: Path) -> Path:
    """Where the sink running with state folder ``state`` appends its deliveries."""
    return Path(state) / "webhooks" / "deliveries.jsonl"


def secret_fingerprint(secret: str) -> str:
    """A name for ``secret`` that does not reveal it: ``sha256:`` and 12 hex digits."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Delivery:
    """One POST the sink received, and how it answered.

    ``verified`` is the fingerprint of the secret that verified the signature,
    or None with the library's reason in ``unverified_reason``. ``status`` is
    the answer given after ``stall_seconds`` (a sender that timed out first
    never saw it).
    """

    received_at: str
    path: str
    webhook_id: str | None
    webhook_timestamp: str | None
    webhook_signature: str | None
    body: str
    verified: str | None
    unverified_reason: str | None
    status: int
    stall_seconds: float

    @property
    def event_type(self) -> str | None:
        """The ``type`` of a Standard Webhooks JSON body; None for any other body."""
        try:
            parsed = json.loads(self.body)
        except ValueError:
            return None
        kind = parsed.get("type") if isinstance(parsed, dict) else None
        return kind if isinstance(kind, str) else None


def read_deliveries(state: Path, *, path: str | None = None) -> list[Delivery]:
    """The deliveries recorded under ``state``, oldest first; only those to ``path`` if given.

    A file that does not exist yet holds none; a line that is not a whole
    record (one being written) is skipped.
    """
    try:
        lines = deliveries_file(state).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    deliveries = []
    for line in lines:
        try:
            delivery = Delivery(**json.loads(line))
        except (ValueError, TypeError):
            continue
        if path is None or delivery.path == path:
            deliveries.append(delivery)
    return deliveries


class _DeliveryLog:
    """The JSON-lines file of deliveries, appended to from worker threads one line at a time."""

    def __init__(self, state: Path) -> None:
        self.state = Path(state)
        self.file = deliveries_file(self.state)
        self.file.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    async def append(self, delivery: Delivery) -> None:
        line = json.dumps(asdict(delivery), ensure_ascii=False) + "\n"
        await asyncio.to_thread(self._write, line, "a")

    async def clear(self) -> None:
        await asyncio.to_thread(self._write, "", "w")

    def _write(self, text: str, mode: str) -> None:
        with self._lock, self.file.open(mode, encoding="utf-8") as log:
            log.write(text)


class Behaviour(BaseModel):
    """How deliveries to ``path`` are answered (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, max_length=2000)
    statuses: list[int] = Field(default_factory=list, max_length=1000)
    stall_seconds: float = Field(default=0.0, ge=0, le=600)
    retry_after: int | None = Field(default=None, ge=0)
    reject_unverified: bool = True

    @field_validator("path")
    @classmethod
    def _path(cls, path: str) -> str:
        if not path.startswith("/") or path.startswith(CONTROL_PREFIX):
            raise ValueError(f"a path starting with / and not with {CONTROL_PREFIX}")
        return path

    @field_validator("statuses")
    @classmethod
    def _statuses(cls, statuses: list[int]) -> list[int]:
        if any(not 200 <= status <= 599 for status in statuses):
            raise ValueError("HTTP statuses from 200 to 599")
        return statuses


class _Plan:
    """A behaviour in force, with the statuses it has still to answer."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.remaining = deque(behaviour.statuses)

    def next_status(self) -> int:
        return self.remaining.popleft() if self.remaining else 200

    def view(self) -> dict[str, Any]:
        return {**self.behaviour.model_dump(), "statuses": list(self.remaining)}


class _CachedSecrets:
    """The secrets of ``load``, reused for ``SECRETS_CACHE_SECONDS``.

    A failing ``load`` is logged and leaves the secrets known before, so the
    sink keeps recording (and answers 401) while the database is unreadable.
    """

    def __init__(self, load: SecretsSource) -> None:
        self._load = load
        self._secrets: list[str] = []
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()

    async def get(self, *, after_miss: bool = False) -> list[str]:
        async with self._lock:
            age = None if self._loaded_at is None else time.monotonic() - self._loaded_at
            limit = SECRETS_RELOAD_AFTER_MISS_SECONDS if after_miss else SECRETS_CACHE_SECONDS
            if age is None or age > limit:
                try:
                    self._secrets = list(await self._load())
                except Exception as error:
                    logger.warning("cannot read the signing secrets: %s", error)
                self._loaded_at = time.monotonic()
            return self._secrets


def _verify(
    body: bytes, headers: Mapping[str, str], secrets: Sequence[str]
) -> tuple[str | None, str]:
    """The fingerprint of the secret that signed ``body``, else None and why not."""
    reason = "the sink knows no signing secret"
    for secret in secrets:
        try:
            Webhook(secret).verify(body, dict(headers), json_parse=False)
        except WebhookVerificationError as error:
            reason = str(error)
        except (ValueError, EmptyWebhookSecretError):  # not a whsec_ secret: it signs nothing
            continue
        else:
            return secret_fingerprint(secret), ""
    return None, reason


def _status(plan: _Plan | None, verified: bool) -> int:
    """The status to answer: 401 for an unverified delivery the plan (if any) rejects, else
    the plan's next status, else 200."""
    if not verified and (plan is None or plan.behaviour.reject_unverified):
        return 401
    return plan.next_status() if plan is not None else 200


def create_sink_app(state: Path, secrets: SecretsSource) -> Starlette:
    """The sink's ASGI app, recording under ``state`` and verifying with ``secrets()``.

    ``secrets`` returns the plain ``whsec_`` secrets that may sign deliveries;
    it is called at most every ``SECRETS_CACHE_SECONDS``, and again soon after
    a delivery none of them verified. Raises OSError when the deliveries
    folder cannot be made.
    """
    log = _DeliveryLog(state)
    known = _CachedSecrets(secrets)
    plans: dict[str, _Plan] = {}

    async def receive(request: Request) -> Response:
        path = request.url.path
        if path.startswith(CONTROL_PREFIX):
            return JSONResponse({"detail": f"no control route {path}"}, status_code=404)
        body = await request.body()
        headers = {name: value for name in WEBHOOK_HEADERS if (value := request.headers.get(name))}
        verified, reason = _verify(body, headers, await known.get())
        if verified is None and len(headers) == len(WEBHOOK_HEADERS):
            verified, reason = _verify(body, headers, await known.get(after_miss=True))
        plan = plans.get(path)
        status = _status(plan, verified is not None)
        stall = plan.behaviour.stall_seconds if plan is not None else 0.0
        delivery = Delivery(
            received_at=datetime.now(UTC).isoformat(),
            path=path,
            webhook_id=headers.get("webhook-id"),
            webhook_timestamp=headers.get("webhook-timestamp"),
            webhook_signature=headers.get("webhook-signature"),
            body=body.decode("utf-8", "replace"),
            verified=verified,
            unverified_reason=None if verified else reason,
            status=status,
            stall_seconds=stall,
        )
        await log.append(delivery)
        logger.info(
            "%s %s %s %s -> %d",
            path,
            delivery.webhook_id or "-",
            delivery.event_type or "-",
            "verified" if verified else f"unverified ({reason})",
            status,
        )
        if stall:
            await asyncio.sleep(stall)
        answer_headers: dict[str, str] = {}
        if plan is not None and plan.behaviour.retry_after is not None and status in (429, 503):
            answer_headers["Retry-After"] = str(plan.behaviour.retry_after)
        detail = None if verified else f"signature not verified: {reason}"
        return JSONResponse(
            {"status": status, "verified": verified is not None, "detail": detail},
            status_code=status,
            headers=answer_headers,
        )

    async def set_behaviour(request: Request) -> Response:
        try:
            behaviour = Behaviour.model_validate_json(await request.body())
        except ValidationError as error:
            problems = [
                {"field": ".".join(str(part) for part in e["loc"]), "problem": e["msg"]}
                for e in error.errors()
            ]
            return JSONResponse({"detail": problems}, status_code=422)
        plans[behaviour.path] = _Plan(behaviour)
        return JSONResponse(plans[behaviour.path].view())

    async def show_behaviour(request: Request) -> Response:
        return JSONResponse([plan.view() for plan in plans.values()])

    async def forget_behaviour(request: Request) -> Response:
        path = request.query_params.get("path")
        if path is None:
            plans.clear()
        else:
            plans.pop(path, None)
        return Response(status_code=204)

    async def list_deliveries(request: Request) -> Response:
        path = request.query_params.get("path")
        found = await asyncio.to_thread(read_deliveries, log.state, path=path)
        return JSONResponse([asdict(delivery) for delivery in found])

    async def forget_deliveries(request: Request) -> Response:
        await log.clear()
        return Response(status_code=204)

    return Starlette(
        routes=[
            Route("/_sink/behaviour", set_behaviour, methods=["POST"]),
            Route("/_sink/behaviour", show_behaviour, methods=["GET"]),
            Route("/_sink/behaviour", forget_behaviour, methods=["DELETE"]),
            Route("/_sink/deliveries", list_deliveries, methods=["GET"]),
            Route("/_sink/deliveries", forget_deliveries, methods=["DELETE"]),
            Route("/{path:path}", receive, methods=["POST"]),
        ]
    )


def database_secrets(
    database: Database, codec_keys: str | None, also: Sequence[str] = ()
) -> SecretsSource:
    """A source of every endpoint's current signing secrets (``signing_secrets``), read
    from ``database``, and the secrets ``also`` (the automations' ``http`` steps' one). An
    endpoint whose sealed secret does not open is skipped (logged)."""

    async def load() -> list[str]:
        rows = await database.all(
            select(WebhookEndpoint).where(col(WebhookEndpoint.deleted_at).is_(None))
        )
        now = datetime.now(UTC)
        found = list(also)
        for row in rows:
            try:
                found += signing_secrets(row, now, codec_keys)
            except (CodecKeyError, SealingUnavailable) as error:
                logger.warning("endpoint %s: %s", row.endpoint_id, error)
        return found

    return load


def serve(
    host: str, port: int, state: Path, *, wrap: Callable[[ASGIApp], ASGIApp] | None = None
) -> None:
    """Run the sink on ``host:port`` until SIGINT or SIGTERM, verifying with the secrets of
    the database ``CRMFLOW_DATABASE_URL`` (opened with the sealing keys, ``CRMFLOW_SEALING_KEYS``
    or ``CRMFLOW_CODEC_KEYS``) and the automations' ``CRMFLOW_AUTOMATION_HTTP_SECRET``.
    ``wrap``, if given, wraps the sink's app (the webhook benchmark notes arrivals with it).

    Raises OSError when the deliveries folder cannot be made; uvicorn exits
    the process when the address cannot be bound.
    """
    from crm.platform.settings import Settings

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    logger.setLevel(logging.INFO)
    settings = Settings()
    database = Database.from_url(settings.database_url, threads=1)
    http_steps = [settings.automation_http_secret] if settings.automation_http_secret else []
    app: ASGIApp = create_sink_app(
        state, database_secrets(database, settings.secret_keys, http_steps)
    )
    if wrap is not None:
        app = wrap(app)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            access_log=False,
            log_level="warning",
            timeout_graceful_shutdown=5,  # a stalled answer does not hold up the stack's stop
        )
    )

    async def run() -> None:
        logger.info(
            "webhook sink listening on http://%s:%d, recording to %s",
            host,
            port,
            deliveries_file(state).resolve(),
        )
        try:
            await server.serve()
        finally:
            await database.dispose()

    asyncio.run(run())


def print_deliveries(
    state: Path, *, path: str | None = None, limit: int = 20, out: TextIO | None = None
) -> None:
    """Print a table of the last ``limit`` deliveries under ``state``, newest last (for
    ``crmflow webhooks``): time, path, webhook-id, event type, verified, status."""
    out = out or sys.stdout
    deliveries = read_deliveries(state, path=path)[-limit:] if limit > 0 else []
    if not deliveries:
        where = deliveries_file(state)
        out.write(f"no deliveries{f' to {path}' if path else ''} in {where}\n")
        return
    rows = [
        (
            _local_time(delivery.received_at),
            delivery.path,
            delivery.webhook_id or "-",
            delivery.event_type or "-",
            "yes" if delivery.verified else "no",
            str(delivery.status),
        )
        for delivery in deliveries
    ]
    header = ("time", "path", "webhook-id", "type", "verified", "status")
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    for row in [header, *rows]:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        out.write("  ".join(cells).rstrip() + "\n")


def print_delivery(state: Path, webhook_id: str, *, out: TextIO | None = None) -> int:
    """Print every delivery under ``state`` with ``webhook_id`` (a retried event arrives
    again under the same id): when and where it came, its headers, whether its signature
    verified, the answer, and its body as indented JSON. 1 if none came, else 0."""
    out = out or sys.stdout
    deliveries = [d for d in read_deliveries(state) if d.webhook_id == webhook_id]
    if not deliveries:
        out.write(f"no delivery with webhook-id {webhook_id} in {deliveries_file(state)}\n")
        return 1
    for number, delivery in enumerate(deliveries, 1):
        verified = (
            f"yes, by the secret {delivery.verified}"
            if delivery.verified
            else f"no: {delivery.unverified_reason}"
        )
        lines = [
            f"arrival {number} of {len(deliveries)} under this webhook-id",
            f"received           {_local_time(delivery.received_at)} on {delivery.path}",
            f"webhook-id         {delivery.webhook_id}",
            f"webhook-timestamp  {delivery.webhook_timestamp or '-'}",
            f"webhook-signature  {delivery.webhook_signature or '-'}",
            f"verified           {verified}",
            f"answered           {delivery.status}"
            + (f" after {delivery.stall_seconds:g} s" if delivery.stall_seconds else ""),
            "",
            _readable(delivery.body),
            "",
        ]
        out.write("\n".join(lines) + "\n")
    return 0


def _readable(body: str) -> str:
    """A JSON body indented, any other as it came."""
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return body


def _local_time(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return iso


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m devstack.webhook_sink --host --port --state DIR``."""
    parser = argparse.ArgumentParser(prog="webhook_sink", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--state", type=Path, default=Path(".crmflow"))
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.state)


if __name__ == "__main__":
    main()
