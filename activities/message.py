"""A process email as a MIME message: plain text, a few headers.

The values are crmflow's own (a validated address, a one-line subject, a
rendered body), so they are encoded, not parsed: the message is built with
the classic ``email.message.Message`` API, RFC 2047 words for non-ASCII header text and
quoted-printable for a non-ASCII body. The modern ``EmailMessage`` parses
every header through its registry, and that parsing was a quarter of the
CPU of sending an email; it is still used for an internationalized address,
which has to travel as UTF-8 (SMTPUTF8), not as encoded words.
"""

from __future__ import annotations

from email.charset import QP, Charset
from email.header import Header
from email.message import EmailMessage, Message
from email.utils import formataddr, parseaddr

#: UTF-8 bodies as quoted-printable: readable in the raw message, safe over 7-bit relays.
_UTF8_BODY = Charset("utf-8")
_UTF8_BODY.body_encoding = QP


def address_header(address: str) -> str:
    """``address`` (``Name <addr>`` or ``addr``) as a header value, its name RFC 2047-encoded."""
    return formataddr(parseaddr(address), charset="utf-8")


def plain_text_message(
    *, sender: str, recipient: str, subject: str, body: str, headers: dict[str, str]
) -> Message[str, str | Header]:
    """A text/plain message from ``sender`` to ``recipient`` with ``headers`` added.

    ``sender`` and ``recipient`` are header values (see ``address_header``);
    header values are one line each. Raises ValueError for a value with a line break.
    """
    fields = {"From": sender, "To": recipient, "Subject": subject, **headers}
    for name, value in fields.items():
        if "\n" in value or "\r" in value:
            raise ValueError(f"the {name} header may not contain a line break: {value!r}")
    if not (sender.isascii() and recipient.isascii()):
        return _internationalized(fields, body)
    message: Message[str, str | Header] = Message()
    message.set_payload(body, "us-ascii" if body.isascii() else _UTF8_BODY)
    for name, value in fields.items():
        message[name] = value if value.isascii() else Header(value, "utf-8", header_name=name)
    return message


def _internationalized(fields: dict[str, str], body: str) -> EmailMessage:
    message = EmailMessage()
    for name, value in fields.items():
        message[name] = value
    message.set_content(body)
    return message
