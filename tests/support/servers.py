"""Real HTTP servers for tests: any ASGI app served by uvicorn in a background thread.

Tests that exercise code over the network (the enrichment activity, the API,
webhooks) start the app here instead of mocking the client, so status codes,
headers, timeouts and connection errors behave as they do in production::

    with run_asgi_server(create_provider_app()) as base_url:
        httpx.get(f"{base_url}/healthz")

The server has its own event loop in its own thread, so it keeps answering
while the test's event loop awaits the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free a moment ago.

    Another process may take it before it is used; prefer ``run_asgi_server``,
    which keeps its socket bound. Useful for a port nothing listens on, or for
    servers started by other means. Raises ``OSError`` if no port can be bound.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def run_asgi_server(
    app: Any,
    *,
    host: str = "127.0.0.1",
    startup_timeout: float = 5.0,
    shutdown_timeout: float = 5.0,
) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free port of ``host`` and yield its base URL.

    The socket is bound before the server starts, so there is no race for the
    port, and the URL is yielded only once the server accepts connections. On
    exit the server is asked to stop (open connections get up to
    ``shutdown_timeout`` seconds) and the thread is joined. Raises
    ``RuntimeError`` if the server does not start within ``startup_timeout``
    seconds (for example, when the app's lifespan startup fails) or does not
    stop.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_config=None,  # leave the test process's logging configuration alone
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=int(shutdown_timeout),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{port}", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                raise RuntimeError(f"ASGI server on {host}:{port} did not start")
            time.sleep(0.01)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(shutdown_timeout + 1.0)
        if thread.is_alive():
            server.force_exit = True
            thread.join(1.0)
        sock.close()
        if thread.is_alive():
            raise RuntimeError(f"ASGI server on {host}:{port} did not stop")


class TcpProxy:
    """A TCP proxy to ``target`` that a test can cut and restore, to simulate an outage.

    ``cut()`` drops every open connection and refuses new ones (the port is
    closed, as when the server is down); ``restore()`` listens again on the
    same port. Runs on the test's event loop.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def restore(self) -> None:
        """Accept connections (again) on ``self.port``."""
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def cut(self) -> None:
        """Close the port and every open connection through it."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, upstream_writer))
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()
