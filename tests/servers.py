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
