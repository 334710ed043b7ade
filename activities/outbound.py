"""Signed POSTs to users' URLs that cannot be aimed inside the network.

Both the automations' ``http`` step (``activities.http_calls``) and webhook
deliveries (``activities.webhook_delivery``) go through ``Outbound``:

- only http(s) URLs with a host and no credentials (``checked_url``);
- the host is resolved here and every address it resolves to must be public
  (``refused_address``: loopback, private, link-local (cloud metadata
  169.254.169.254 included), shared, multicast, reserved and unspecified
  addresses are refused, an IPv4-mapped IPv6 address judged as its IPv4
  one); the connection goes to those very addresses (a resolver that knows
  only them), so a DNS answer that changes between the check and the
  connection (rebinding) cannot redirect it. Hosts the operator allowlists
  are exempt from the address check;
- redirects are not followed, and each request has a connect and a total
  timeout. The answer's body is read up to ``ANSWER_BODY_CAP`` and thrown
  away, so its connection is kept for the next request; a longer body, or one
  slower than the timeout, closes the connection instead (the status stands).

Bodies are signed as the Standard Webhooks specification says:
``webhook-signature`` is ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``,
one per secret, space-separated (two while a secret is being rotated).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import socket
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from crm.platform.urls import allowed, refused_address, url_problem

SECRET_PREFIX = "whsec_"
#: The most of an answer's body read (and thrown away) to keep its connection alive.
ANSWER_BODY_CAP = 64 * 1024


class DestinationRefused(Exception):
    """The URL is not one crmflow calls, or its host has an address inside the network."""


class Unreachable(Exception):
    """The endpoint could not be reached now (DNS, connection, timeout): worth a retry."""


@dataclass(frozen=True)
class Answer:
    """What the endpoint answered: its status, its ``Retry-After`` and how long it took."""

    status: int
    retry_after: str | None
    latency_ms: float


def signing_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret ``whsec_<base64>``; ValueError otherwise."""
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error:
        raise ValueError("the signing secret is whsec_ followed by base64") from None
    if not secret.startswith(SECRET_PREFIX) or len(key) < 24:
        raise ValueError("the signing secret is whsec_ and the base64 of at least 24 bytes")
    return key


def signature(keys: Sequence[bytes], message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header of ``body`` sent as ``message_id`` at ``timestamp``."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        for key in keys
    )


def signed_headers(keys: Sequence[bytes], message_id: str, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers (and the content type) of ``body``, signed now."""
    timestamp = int(time.time())
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(keys, message_id, timestamp, body),
    }


def checked_url(url: str) -> URL:
    """``url`` parsed; DestinationRefused for one ``url_problem`` finds wrong."""
    problem = url_problem(url)
    if problem is not None:
        raise DestinationRefused(f"the URL {url!r} is refused: {problem}")
    return URL(url)


class _VettedResolver(AbstractResolver):
    """A resolver that knows only the addresses already checked for one host."""

    def __init__(self, host: str, addresses: list[ResolveResult]) -> None:
        self._host = host
        self._addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host != self._host:
            raise OSError(f"{host} was not checked")
        return [{**address, "port": port} for address in self._addresses]

    async def close(self) -> None:
        return None


class Outbound:
    """POSTs to one user's URL at a time, to vetted addresses only."""

    def __init__(self, *, allowed_hosts: Sequence[str] = (), timeout_seconds: float = 10.0) -> None:
        """Let ``allowed_hosts`` resolve inside the network; bound each request, connecting
        to reading the answer's status, by ``timeout_seconds``."""
        self._allowed = tuple(allowed_hosts)
        self.timeout_seconds = timeout_seconds

    @asynccontextmanager
    async def session(self, url: URL) -> AsyncIterator[aiohttp.ClientSession]:
        """A session that connects only to the vetted addresses of ``url``'s host (kept
        alive across the requests made in it). Raises DestinationRefused or Unreachable."""
        assert url.raw_host is not None
        addresses = await self._vetted_addresses(url)
        connector = aiohttp.TCPConnector(  # aiohttp resolves the host as DNS writes it
            resolver=_VettedResolver(url.raw_host, addresses), use_dns_cache=False
        )
        timeout = aiohttp.ClientTimeout(
            total=self.timeout_seconds, connect=min(5.0, self.timeout_seconds)
        )
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            yield session

    async def post(
        self, session: aiohttp.ClientSession, url: URL, body: bytes, headers: dict[str, str]
    ) -> Answer:
        """POST ``body`` to ``url`` in ``session``; what it answered. Raises Unreachable."""
        where = str(url.origin())
        started = time.perf_counter()
        try:
            async with session.post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                status, retry_after = response.status, response.headers.get("Retry-After")
                latency_ms = (time.perf_counter() - started) * 1000
                await _discard_body(response)
        except TimeoutError:
            raise Unreachable(f"no answer from {where} within {self.timeout_seconds:g} s") from None
        except (aiohttp.ClientError, OSError) as error:
            raise Unreachable(f"cannot reach {where}: {type(error).__name__}") from None
        return Answer(status, retry_after, latency_ms)

    async def _vetted_addresses(self, url: URL) -> list[ResolveResult]:
        host = url.raw_host
        assert host is not None and url.port is not None
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, url.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
        except OSError as error:
            raise Unreachable(f"cannot resolve {host}: {error}") from None
        except (UnicodeError, ValueError):
            raise DestinationRefused(f"{host} is not a host name DNS can look up") from None
        exempt = allowed(self._allowed, host, url.port)
        addresses: list[ResolveResult] = []
        for family, _, proto, _, sockaddr in infos:
            address = str(sockaddr[0])
            if not exempt and refused_address(address):
                where = f"{host} resolves to {address}," if address != host else host + " is"
                raise DestinationRefused(f"{where} an address inside the network")
            addresses.append(
                ResolveResult(
                    hostname=host,
                    host=address,
                    port=url.port,
                    family=family,
                    proto=proto,
                    flags=socket.AI_NUMERICHOST,
                )
            )
        if not addresses:
            raise Unreachable(f"{host} resolves to no address")
        return addresses


async def _discard_body(response: aiohttp.ClientResponse) -> None:
    """Read the rest of ``response``'s body, up to ``ANSWER_BODY_CAP``, so the session can
    send its next request on the same connection; a longer or stalled body is left, and
    the connection closes when the response is released."""
    left = ANSWER_BODY_CAP
    try:
        while left > 0 and (chunk := await response.content.read(left)):
            left -= len(chunk)
    except (TimeoutError, aiohttp.ClientError, OSError):
        return
