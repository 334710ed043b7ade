"""``activities.outbound.Outbound``: what an answer's body does to the connection it came on.

A real aiohttp server on 127.0.0.1 notes the client port of each request, so a
test sees whether the session sent its requests on one connection or opened one
per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from yarl import URL

from activities.outbound import ANSWER_BODY_CAP, Outbound


class Answering:
    """A server answering each POST with ``body_bytes`` of body, the last part after
    ``stall_seconds``; the client ports it saw."""

    def __init__(self, body_bytes: int, stall_seconds: float = 0.0) -> None:
        self.body_bytes = body_bytes
        self.stall_seconds = stall_seconds
        self.ports: list[int] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.ports.append(request.transport.get_extra_info("peername")[1])  # type: ignore[union-attr]
        response = web.StreamResponse(status=202)
        response.content_length = self.body_bytes
        await response.prepare(request)
        await response.write(b"x" * (self.body_bytes // 2))
        await asyncio.sleep(self.stall_seconds)
        await response.write(b"x" * (self.body_bytes - self.body_bytes // 2))
        return response


@pytest.fixture
async def serve() -> AsyncIterator[object]:
    runners: list[web.AppRunner] = []

    async def start(answering: Answering) -> URL:
        app = web.Application()
        app.router.add_post("/hooks", answering.handle)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return URL(f"http://127.0.0.1:{port}/hooks")

    yield start
    for runner in runners:
        await runner.cleanup()


async def post_times(outbound: Outbound, url: URL, times: int) -> list[int]:
    async with outbound.session(url) as session:
        answers = [await outbound.post(session, url, b"{}", {}) for _ in range(times)]
    return [answer.status for answer in answers]


async def test_an_answer_with_a_body_keeps_its_connection_for_the_next_request(
    serve: object,
) -> None:
    answering = Answering(body_bytes=20_000, stall_seconds=0.05)  # the body after the status
    url = await serve(answering)  # type: ignore[operator]
    statuses = await post_times(Outbound(allowed_hosts=["127.0.0.1"]), url, 5)
    assert statuses == [202] * 5
    assert len(set(answering.ports)) == 1


async def test_a_body_over_the_cap_closes_the_connection_and_the_status_stands(
    serve: object,
) -> None:
    answering = Answering(body_bytes=4 * ANSWER_BODY_CAP)
    url = await serve(answering)  # type: ignore[operator]
    statuses = await post_times(Outbound(allowed_hosts=["127.0.0.1"]), url, 3)
    assert statuses == [202] * 3
    assert len(set(answering.ports)) == 3


async def test_a_body_slower_than_the_timeout_does_not_undo_the_status_answered(
    serve: object,
) -> None:
    answering = Answering(body_bytes=1_000, stall_seconds=2.0)
    url = await serve(answering)  # type: ignore[operator]
    outbound = Outbound(allowed_hosts=["127.0.0.1"], timeout_seconds=0.5)
    async with outbound.session(url) as session:
        answer = await outbound.post(session, url, b"{}", {})
    assert answer.status == 202
    assert answer.latency_ms < 500  # until the status, not the stalled body
