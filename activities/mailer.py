"""Sending email over SMTP with aiosmtplib, on reused connections.

Opening an SMTP session costs a TCP connect, the greeting, EHLO and, with a
relay, STARTTLS and AUTH: more than sending a short message. The mailer keeps
up to ``max_idle`` connected sessions and reuses one for the next message,
so a busy worker sends most mail on open sessions. A session idle for more
than ``check_after_seconds`` is reused only after it answers a NOOP (servers
drop idle clients); one that sent its last message just now is reused as it
is, since that round trip cost a busy worker a third of the CPU of sending a
message over an open session. One idle for longer than ``idle_seconds`` is
closed instead, and one that failed in any way is never reused: should the
server drop a session the instant after a message, the next message's
attempt fails before anything is sent, and its retry gets a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from email.header import Header
from email.message import Message

import aiosmtplib


class SmtpMailer:
    """Delivers messages to one SMTP server (the local sink or a relay)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout_seconds: float = 10.0,
        max_idle: int = 8,
        idle_seconds: float = 30.0,
        check_after_seconds: float = 2.0,
    ) -> None:
        self.host = host
        self.port = port
        self._username = username
        self._password = password
        self._starttls = starttls
        self._timeout = timeout_seconds
        self._max_idle = max_idle
        self._idle_seconds = idle_seconds
        self._check_after = check_after_seconds
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []  # (session, idle since)
        self._closed = False

    async def send(self, message: Message[str, str | Header]) -> None:
        """Hand ``message`` to the server; raises aiosmtplib.SMTPException or OSError on failure."""
        session = await self._session()
        try:
            await session.send_message(message, timeout=self._timeout)
        except BaseException:
            _close(session)
            raise
        # Nothing is awaited once the server has the message: a cancellation
        # now would fail an activity whose email went out, and it would be sent again.
        if self._closed or len(self._idle) >= self._max_idle:
            _close(session)
        else:
            self._idle.append((session, time.monotonic()))

    async def aclose(self) -> None:
        """Say QUIT on every idle session; sessions of sends still running are closed after them."""
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(_quit(session) for session, _ in idle))

    async def _session(self) -> aiosmtplib.SMTP:
        now = time.monotonic()
        while self._idle:
            session, since = self._idle.pop()
            if session.is_connected and now - since < self._check_after:
                return session
            if session.is_connected and now - since < self._idle_seconds:
                try:
                    await session.noop(timeout=self._timeout)
                except (aiosmtplib.SMTPException, OSError):
                    _close(session)
                    continue
                except BaseException:  # cancelled: the session is no one's now
                    _close(session)
                    raise
                return session
            _close(session)
        session = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            username=self._username,
            password=self._password,
            start_tls=self._starttls,
            timeout=self._timeout,
        )
        try:
            await session.connect()
        except BaseException:
            _close(session)
            raise
        return session


def _close(session: aiosmtplib.SMTP) -> None:
    """Drop a session without a word to the server (it may be gone already)."""
    if session.is_connected:
        session.close()


async def _quit(session: aiosmtplib.SMTP) -> None:
    with contextlib.suppress(aiosmtplib.SMTPException, OSError):
        await session.quit()
    _close(session)
