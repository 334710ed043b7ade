"""An HTTP endpoint for outbound calls in tests: it records every request and answers
each path with the statuses planned for it, in turn (then 200)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.support.servers import run_asgi_server


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Planned:
    """An answer: its status, its headers, and how long to wait before giving it."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    stall_seconds: float = 0.0


@dataclass
class Receiver:
    """An ASGI endpoint answering each path with its planned answers in turn (then 200).

    ``received`` holds every request in arrival order; ``by_id`` the requests
    of each ``webhook-id``.
    """

    planned: dict[str, list[Planned | int]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)

    def by_id(self) -> dict[str, list[Received]]:
        seen: dict[str, list[Received]] = {}
        for request in self.received:
            seen.setdefault(request.headers.get("webhook-id", ""), []).append(request)
        return seen

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {name.decode(): value.decode() for name, value in scope["headers"]}
        self.received.append(Received(scope["path"], headers, body))
        plan = self.planned.get(scope["path"], [])
        answer = plan.pop(0) if plan else Planned(200)
        if isinstance(answer, int):
            answer = Planned(answer)
        if answer.stall_seconds:
            await asyncio.sleep(answer.stall_seconds)
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [(k.encode(), v.encode()) for k, v in answer.headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": b""})


@contextmanager
def running_receiver() -> Iterator[tuple[Receiver, str]]:
    """A Receiver on a real server on 127.0.0.1, and its base URL."""
    app = Receiver()
    with run_asgi_server(app) as base_url:
        yield app, base_url
