"""The SMTP mailer's session reuse, against a real SMTP server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from activities.mailer import SmtpMailer
from crm.mailsink import MailSink


class CountingSink:
    """A MailSink that notes each message's connection and each NOOP it answers."""

    def __init__(self, maildir: Path, port: int = 0) -> None:
        self.sink = MailSink(maildir, port=port)
        self.port = self.sink.port
        self.peers: list[Any] = []
        self.noops = 0
        store = self.sink.handler.handle_DATA

        async def handle_data(server: Any, session: Any, envelope: Any) -> str:
            self.peers.append(session.peer)
            return await store(server, session, envelope)

        async def handle_noop(server: Any, session: Any, envelope: Any, arg: str) -> str:
            self.noops += 1
            return "250 OK"

        self.sink.handler.handle_DATA = handle_data  # type: ignore[method-assign]
        self.sink.handler.handle_NOOP = handle_noop  # type: ignore[attr-defined]


@pytest.fixture
def counting_sink(tmp_path: Path) -> Iterator[CountingSink]:
    sink = CountingSink(tmp_path / "mail")
    yield sink
    sink.sink.stop()


def message(number: int) -> EmailMessage:
    sent = EmailMessage()
    sent["From"], sent["To"], sent["Subject"] = "a@crmflow.localhost", "b@acme.io", f"#{number}"
    sent.set_content("x\n")
    return sent


async def test_back_to_back_messages_share_one_session_without_a_noop(
    counting_sink: CountingSink,
) -> None:
    mailer = SmtpMailer("127.0.0.1", counting_sink.port)
    for number in range(3):
        await mailer.send(message(number))
    await mailer.aclose()
    assert len(counting_sink.peers) == 3
    assert len(set(counting_sink.peers)) == 1
    assert counting_sink.noops == 0


async def test_a_session_idle_for_a_while_is_checked_with_a_noop_first(
    counting_sink: CountingSink,
) -> None:
    mailer = SmtpMailer("127.0.0.1", counting_sink.port, check_after_seconds=0.05)
    await mailer.send(message(1))
    await asyncio.sleep(0.1)
    await mailer.send(message(2))
    await mailer.aclose()
    assert len(set(counting_sink.peers)) == 1
    assert counting_sink.noops == 1


async def test_an_idle_session_the_server_dropped_is_replaced(tmp_path: Path) -> None:
    first = CountingSink(tmp_path / "mail")
    mailer = SmtpMailer("127.0.0.1", first.port, check_after_seconds=0.05)
    await mailer.send(message(1))
    first.sink.stop()  # the server goes away, and with it the idle session
    restarted = CountingSink(tmp_path / "mail", port=first.port)
    try:
        await asyncio.sleep(0.1)
        await mailer.send(message(2))
        await mailer.aclose()
    finally:
        restarted.sink.stop()
    assert len(restarted.peers) == 1
    assert restarted.peers[0] != first.peers[0]
