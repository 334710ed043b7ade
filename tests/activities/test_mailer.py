"""The SMTP mailer's session reuse, against a real SMTP server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from activities.mailer import SmtpMailer
from devstack.mailsink import MailSink


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


async def test_a_relay_closing_each_connection_after_a_message_still_gets_every_message(
    counting_sink: CountingSink,
) -> None:
    """The relay hangs up when the next message starts on a connection that delivered one;
    the mailer, reusing the session unchecked, sends it on a fresh one within the same call."""
    delivered: set[int] = set()

    async def handle_mail(
        server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if id(session) in delivered:
            server.transport.close()
            return "421 one message per connection"
        delivered.add(id(session))
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    counting_sink.sink.handler.handle_MAIL = handle_mail  # type: ignore[attr-defined]
    mailer = SmtpMailer("127.0.0.1", counting_sink.port)
    for number in range(3):
        await mailer.send(message(number))
    await mailer.aclose()
    assert len(counting_sink.peers) == 3
    assert len(set(counting_sink.peers)) == 3  # each on a connection of its own
