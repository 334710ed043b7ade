"""The SMTP sink as a real SMTP server: what is sent is what a reader finds."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from io import StringIO
from pathlib import Path

import aiosmtplib
import pytest

from devstack.mailsink import (
    ENVELOPE_TO_HEADER,
    RECEIVED_AT_HEADER,
    MailSink,
    find_message,
    print_mail,
    print_mail_list,
    read_messages,
)


@pytest.fixture
def maildir(tmp_path: Path) -> Path:
    return tmp_path / "mail"


@pytest.fixture
def sink(maildir: Path) -> Iterator[MailSink]:
    with MailSink(maildir) as running:
        yield running


def make_email(
    *,
    to: str = "ann@example.com",
    subject: str = "Welcome to crmflow",
    body: str = "Hello Ann,\nwelcome aboard.\n",
    html: str | None = None,
    sender: str = "crmflow <noreply@crmflow.localhost>",
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(__import__("datetime").datetime.now().astimezone())
    message["Message-ID"] = make_msgid(domain="crmflow.localhost")
    message.set_content(body)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message


async def send(sink: MailSink, message: EmailMessage, **kwargs: object) -> None:
    await aiosmtplib.send(message, hostname=sink.host, port=sink.port, **kwargs)  # type: ignore[arg-type]


async def test_sent_message_is_stored_with_envelope_headers(sink: MailSink, maildir: Path) -> None:
    sent = make_email()

    await send(sink, sent)

    [stored] = read_messages(maildir)
    assert stored.message_id == sent["Message-ID"]
    assert stored.sender == "crmflow <noreply@crmflow.localhost>"
    assert stored.recipients == ["ann@example.com"]
    assert stored.subject == "Welcome to crmflow"
    assert stored.body == "Hello Ann,\nwelcome aboard.\n"
    assert stored.date is not None
    assert stored.received_at is not None
    assert stored.header(ENVELOPE_TO_HEADER) == "ann@example.com"
    assert stored.header(RECEIVED_AT_HEADER) is not None
    # The message itself is kept as sent: the original headers follow the added ones.
    raw = (maildir / "new" / stored.key).read_bytes()
    assert raw.startswith(b"X-Crmflow-Envelope-From: noreply@crmflow.localhost")
    assert f"Message-ID: {sent['Message-ID']}".encode() in raw


async def test_a_long_subject_folded_in_transit_reads_back_as_sent(
    sink: MailSink, maildir: Path
) -> None:
    subject = "SLA warning: ticket t-82e3cff728 first response due Mon 2026-11-23 15:04 CET"

    await send(sink, make_email(subject=subject))

    [stored] = read_messages(maildir)
    assert stored.subject == subject


async def test_find_message_by_index_key_and_message_id(sink: MailSink, maildir: Path) -> None:
    first, second = make_email(subject="first"), make_email(subject="second")
    await send(sink, first)
    await send(sink, second)

    assert [m.subject for m in read_messages(maildir)] == ["first", "second"]
    assert find_message(maildir, 1).subject == "first"
    assert find_message(maildir, "2").subject == "second"
    message_id = second["Message-ID"]
    assert find_message(maildir, message_id).subject == "second"
    assert find_message(maildir, message_id.strip("<>")).subject == "second"
    key = find_message(maildir, 1).key
    assert find_message(maildir, key).subject == "first"


async def test_find_message_names_what_it_could_not_find(sink: MailSink, maildir: Path) -> None:
    await send(sink, make_email())

    with pytest.raises(KeyError, match=r"no message #3 .* there are 1"):
        find_message(maildir, 3)
    with pytest.raises(KeyError, match=r"<nope@example\.com>"):
        find_message(maildir, "<nope@example.com>")


async def test_filter_by_recipient_uses_the_envelope_including_bcc(
    sink: MailSink, maildir: Path
) -> None:
    await send(sink, make_email(to="ann@example.com", subject="for ann"))
    await send(sink, make_email(to="bob@example.com", subject="for bob"))
    await send(
        sink,
        make_email(to="bob@example.com", subject="bob, ann in bcc"),
        recipients=["bob@example.com", "ann@example.com"],
    )

    for_ann = read_messages(maildir, to="Ann@Example.com")
    assert [m.subject for m in for_ann] == ["for ann", "bob, ann in bcc"]
    assert [m.subject for m in read_messages(maildir, to="Bob <bob@example.com>")] == [
        "for bob",
        "bob, ann in bcc",
    ]
    assert read_messages(maildir, to="carol@example.com") == []
    assert find_message(maildir, 2, to="ann@example.com").subject == "bob, ann in bcc"


async def test_multipart_message_body_is_its_text_part(sink: MailSink, maildir: Path) -> None:
    message = make_email(body="Plain version\n", html="<p>HTML <b>version</b></p>")
    message.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="q.pdf")

    await send(sink, message)

    [stored] = read_messages(maildir)
    assert stored.body == "Plain version\n"
    assert stored.html is not None and "<b>version</b>" in stored.html
    assert stored.attachments == ["q.pdf"]


async def test_html_only_message_body_is_flattened_to_text(sink: MailSink, maildir: Path) -> None:
    message = make_email()
    message.set_content(
        "<html><body><p>Your ticket &amp; SLA</p><p>Next line</p></body></html>", subtype="html"
    )

    await send(sink, message)

    [stored] = read_messages(maildir)
    assert stored.body == "Your ticket & SLA\nNext line\n"


async def test_messages_survive_a_restart_of_the_sink(maildir: Path) -> None:
    with MailSink(maildir) as first_sink:
        await send(first_sink, make_email(subject="before restart"))

    with MailSink(maildir) as second_sink:
        assert [m.subject for m in read_messages(maildir)] == ["before restart"]
        await send(second_sink, make_email(subject="after restart"))

    assert [m.subject for m in read_messages(maildir)] == ["before restart", "after restart"]


def test_a_port_in_use_is_an_os_error(maildir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            MailSink(maildir, port=taken.getsockname()[1])


def test_missing_maildir_holds_no_messages(tmp_path: Path) -> None:
    out = StringIO()

    print_mail_list(tmp_path / "nowhere", out=out)

    assert read_messages(tmp_path / "nowhere") == []
    assert "no messages" in out.getvalue() and "does not exist yet" in out.getvalue()


async def test_mail_list_and_show_print_what_was_sent(sink: MailSink, maildir: Path) -> None:
    sent = make_email(subject="Kickoff scheduled", body="See you Monday.\n")
    await send(sink, sent)
    await send(sink, make_email(to="bob@example.com", subject="Other"))

    listing = StringIO()
    print_mail_list(maildir, to="ann@example.com", out=listing)
    shown = StringIO()
    print_mail(maildir, sent["Message-ID"], out=shown)

    header, row = listing.getvalue().splitlines()
    assert header.split() == ["#", "date", "to", "subject", "message-id"]
    assert row.lstrip().startswith("1 ")
    assert "ann@example.com" in row and "Kickoff scheduled" in row and sent["Message-ID"] in row
    assert "Subject: Kickoff scheduled" in shown.getvalue()
    assert "To: ann@example.com" in shown.getvalue()
    assert shown.getvalue().endswith("\n\nSee you Monday.\n")
