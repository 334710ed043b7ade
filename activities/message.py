"""A process email as a MIME message: plain text or text and HTML alternatives, a few headers.

The values are crmflow's own (a validated address, a one-line subject, a
rendered body), so they are stored as they are, not parsed: an
``EmailMessage`` with the ``compat32`` policy, whose header assignment is a
plain store. The modern policy parses every header through its registry,
which was a quarter of the CPU of sending an email. Non-ASCII header text is
encoded as RFC 2047 words, a body that is not short-lined ASCII as
quoted-printable; an internationalized address is left as UTF-8, which the
mailer sends with SMTPUTF8. aiosmtplib flattens an ``EmailMessage`` with the
SMTP policy: CRLF line ends, and no ``>From`` mangling of the body.
"""

from __future__ import annotations

import email.policy
import hashlib
from email.charset import QP, Charset
from email.header import Header
from email.message import EmailMessage, Message
from email.utils import formataddr, parseaddr

#: UTF-8 bodies as quoted-printable: readable in the raw message, safe over 7-bit relays.
_UTF8_BODY = Charset("utf-8")
_UTF8_BODY.body_encoding = QP

#: Longest body line sent as 7-bit text; longer ones are wrapped by quoted-printable.
MAX_PLAIN_LINE = 78

ADDRESS_HEADERS = frozenset({"From", "To", "Cc", "Reply-To"})


def address_header(address: str) -> str:
    """``address`` (``Name <addr>`` or ``addr``) as a header value, its name RFC 2047-encoded.

    Raises ValueError when it holds no email address (``Acme, Inc. <a@b.io>``
    needs quotes around the name).
    """
    name, addr = parseaddr(address)
    if "@" not in addr:
        raise ValueError(f"{address!r} is not an email address")
    if addr.isascii():
        return formataddr((name, addr), charset="utf-8")
    # formataddr refuses a UTF-8 address; only the name is encoded, the address goes as UTF-8
    shown = formataddr((name, "x@x"), charset="utf-8").removesuffix(" <x@x>")
    return f"{shown} <{addr}>" if name else addr


def plain_text_message(
    *, sender: str, recipient: str, subject: str, body: str, headers: dict[str, str]
) -> EmailMessage:
    """A text/plain message from ``sender`` to ``recipient`` with ``headers`` added.

    ``sender`` and ``recipient`` are header values (see ``address_header``).
    Raises ValueError for a header value that is not one line of text.
    """
    fields = {"From": sender, "To": recipient, "Subject": subject, **headers}
    for name, value in fields.items():
        if not _one_line(value):
            raise ValueError(f"the {name} header must be one line of text: {value!r}")
    message = EmailMessage(policy=email.policy.compat32)
    plain = body.isascii() and all(len(line) <= MAX_PLAIN_LINE for line in body.splitlines())
    message.set_payload(body, "us-ascii" if plain else _UTF8_BODY)
    for name, value in fields.items():
        if value.isascii() or name in ADDRESS_HEADERS:
            message[name] = value
        else:
            message[name] = Header(value, "utf-8", header_name=name).encode()
    return message


def alternative_message(
    *, sender: str, recipient: str, subject: str, text: str, html: str, headers: dict[str, str]
) -> EmailMessage:
    """A multipart/alternative message (the text part first, the HTML part preferred) from
    ``sender`` to ``recipient`` with ``headers`` added.

    Raises ValueError for a header value that is not one line of text.
    """
    fields = {"From": sender, "To": recipient, "Subject": subject, **headers}
    for name, value in fields.items():
        if not _one_line(value):
            raise ValueError(f"the {name} header must be one line of text: {value!r}")
    message = EmailMessage(policy=email.policy.compat32)
    for name, value in fields.items():
        if value.isascii() or name in ADDRESS_HEADERS:
            message[name] = value
        else:
            message[name] = Header(value, "utf-8", header_name=name).encode()
    message["MIME-Version"] = "1.0"
    message.set_type("multipart/alternative")
    if "Message-ID" in headers:  # every attempt at one email writes the same bytes
        digest = hashlib.sha256(headers["Message-ID"].encode()).hexdigest()[:32]
        message.set_boundary(f"=_alt_{digest}")
    message.set_payload([_part(text, "plain"), _part(html, "html")])
    return message


def _part(body: str, subtype: str) -> Message:
    part = Message(policy=email.policy.compat32)
    plain = body.isascii() and all(len(line) <= MAX_PLAIN_LINE for line in body.splitlines())
    part.set_payload(body, "us-ascii" if plain else _UTF8_BODY)
    part.set_type(f"text/{subtype}")
    return part


def _one_line(value: str) -> bool:
    """No line break of any kind (``str.splitlines`` knows them all) and no control character."""
    return len(value.splitlines()) <= 1 and all(c == "\t" or " " <= c != "\x7f" for c in value)
