"""Process emails as MIME messages: what a mail client reads back from the bytes sent."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest
from aiosmtplib.email import flatten_message

from activities.message import address_header, plain_text_message

HEADERS = {"Message-ID": "<abc@crmflow.localhost>", "X-Crmflow-Step": "welcome"}


def sent_and_read(**fields: str) -> EmailMessage:
    """The message as flattened for SMTP, parsed back as a mail client would."""
    message = plain_text_message(
        sender=fields.get("sender", address_header("crmflow <noreply@crmflow.localhost>")),
        recipient=fields.get("recipient", "bea@acme.io"),
        subject=fields.get("subject", "Welcome to crmflow, Acme"),
        body=fields.get("body", "Hello Bea,\n\nwelcome aboard.\n"),
        headers=HEADERS,
    )
    raw = flatten_message(message).replace(b"\r\n", b"\n")  # as a mailbox stores it
    read = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(read, EmailMessage)
    return read


def test_an_ascii_email_reads_back_unchanged() -> None:
    read = sent_and_read()
    assert read["From"].addresses[0].addr_spec == "noreply@crmflow.localhost"
    assert read["From"].addresses[0].display_name == "crmflow"
    assert read["To"] == "bea@acme.io"
    assert read["Subject"] == "Welcome to crmflow, Acme"
    assert read["Message-ID"] == "<abc@crmflow.localhost>"
    assert read["X-Crmflow-Step"] == "welcome"
    assert read.get_content_type() == "text/plain"
    assert read["Content-Transfer-Encoding"] == "7bit"
    assert read.get_content() == "Hello Bea,\n\nwelcome aboard.\n"


def test_non_ascii_names_subject_and_body_travel_encoded_and_read_back() -> None:
    read = sent_and_read(
        sender=address_header("Équipe Café <hello@cafe.example>"),
        subject="Willkommen, Jürgen: Ihr Onboarding bei Café Crème beginnt",
        body="Grüße, Jürgen!\n\n— Ihr Team\n",
    )
    assert read["From"].addresses[0].display_name == "Équipe Café"
    assert read["Subject"] == "Willkommen, Jürgen: Ihr Onboarding bei Café Crème beginnt"
    assert read.get_content() == "Grüße, Jürgen!\n\n— Ihr Team\n"
    assert read["Content-Transfer-Encoding"] == "quoted-printable"


def test_a_long_subject_is_folded_and_reads_back_whole() -> None:
    subject = "Your renewal " + "and its terms " * 12
    raw = flatten_message(
        plain_text_message(
            sender="a@b.io", recipient="c@d.io", subject=subject.strip(), body="x\n", headers={}
        )
    )
    assert all(len(line) <= 78 for line in raw.splitlines())  # SMTP sends them as CRLF
    read = email.message_from_bytes(raw, policy=email.policy.default)
    assert read["Subject"] == subject.strip()


def test_an_internationalized_address_is_sent_as_utf8() -> None:
    message = plain_text_message(
        sender="a@b.io", recipient="jürgen@café.example", subject="Hi", body="x\n", headers={}
    )
    raw = flatten_message(message, utf8=True)
    assert "To: jürgen@café.example".encode() in raw


def test_a_body_line_starting_with_from_is_not_mangled() -> None:
    assert sent_and_read(body="Hi,\nFrom now on, Casey is your CSM.\n").get_content() == (
        "Hi,\nFrom now on, Casey is your CSM.\n"
    )


def test_a_long_body_line_is_wrapped_by_quoted_printable_and_reads_back_whole() -> None:
    body = "See " + "https://acme.io/very/long/path/" * 40 + "\n"
    message = plain_text_message(
        sender="a@b.io", recipient="c@d.io", subject="Hi", body=body, headers={}
    )
    raw = flatten_message(message)
    assert max(len(line) for line in raw.splitlines()) <= 78
    read = email.message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=email.policy.default)
    assert isinstance(read, EmailMessage)
    assert read.get_content() == body


@pytest.mark.parametrize("header", ["subject", "recipient"])
@pytest.mark.parametrize("line_break", ["\r\n", "\n", "\x0c", "\x1e", "\u2028"])
def test_a_line_break_in_a_header_is_refused(header: str, line_break: str) -> None:
    fields = {"sender": "a@b.io", "recipient": "c@d.io", "subject": "Hi"}
    fields[header] = f"x{line_break}Bcc: e@f.io"
    with pytest.raises(ValueError, match="one line"):
        plain_text_message(**fields, body="x\n", headers={})


def test_a_sender_with_a_utf8_address_keeps_it_and_encodes_only_the_name() -> None:
    assert (
        address_header("Jürgen <jürgen@café.example>")
        == "=?utf-8?q?J=C3=BCrgen?= <jürgen@café.example>"
    )
    assert address_header("jürgen@café.example") == "jürgen@café.example"


def test_a_sender_that_is_no_address_is_refused() -> None:
    with pytest.raises(ValueError, match="not an email address"):
        address_header("Acme, Inc. <hello@acme.io>")
