"""Sending email over SMTP with aiosmtplib, on reused connections.

Opening an SMTP session costs a TCP connect, the greeting, EHLO and, with a
relay, STARTTLS and AUTH: more than sending a short message. The mailer keeps
up to ``max_idle`` connected sessions and reuses one for the next message,
so a busy worker sends most mail on open sessions. A session idle for more
than ``check_after_seconds`` is reused only after it answers a NOOP (servers
drop idle clients); one that sent its last message just now is reused as it
is, since that round trip cost a busy worker a third of the CPU of sending a
message over an open session; should the server have closed it meanwhile,
the message goes on a fresh session instead (a disconnect in the middle of
a message may then deliver it twice, with one Message-ID). One idle for
longer than ``idle_seconds`` is closed instead, and one that failed in any
way is never reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from email.message import EmailMessage

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

    async def send(self, message: EmailMessage) -> None:
        """Hand ``message`` to the server; raises aiosmtplib.SMTPException or OSError on failure.

        A session reused without a NOOP that turns out closed (a relay that
        ends each connection after a message, a server restarted) is
        replaced by a fresh one once, within the same call.
        """
        session, checked = await self._session()
        try:
            await self._send_on(session, message)
        except aiosmtplib.SMTPServerDisconnected:
            if checked:
                raise
            session = await self._connect()
            await self._send_on(session, message)
        # Nothing is awaited once the server has the message: a cancellation
        # now would fail an activity whose email went out, and it would be sent again.
        if self._closed or len(self._idle) >= self._max_idle:
            _close(session)
        else:
            self._idle.append((session, time.monotonic()))

    async def _send_on(self, session: aiosmtplib.SMTP, message: EmailMessage) -> None:
        """Send ``message`` on ``session``; a session that failed in any way is closed."""
        try:
            await session.send_message(message, timeout=self._timeout)
        except BaseException:
            _close(session)
            raise

    async def aclose(self) -> None:
        """Say QUIT on every idle session; sessions of sends still running are closed after them."""
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(_quit(session) for session, _ in idle))

    async def _session(self) -> tuple[aiosmtplib.SMTP, bool]:
        """A connected session, and whether it is known to be alive (new, or it answered a NOOP)."""
        now = time.monotonic()
        while self._idle:
            session, since = self._idle.pop()
            if session.is_connected and now - since < self._check_after:
                return session, False
            if session.is_connected and now - since < self._idle_seconds:
                try:
                    await session.noop(timeout=self._timeout)
                except (aiosmtplib.SMTPException, OSError):
                    _close(session)
                    continue
                except BaseException:  # cancelled: the session is no one's now
                    _close(session)
                    raise
                return session, True
            _close(session)
        return await self._connect(), True

    async def _connect(self) -> aiosmtplib.SMTP:
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
