"""A local SMTP sink that keeps every message in a Maildir for inspection.

The dev stack sends its email here instead of to a real relay. Each message
is stored byte for byte as received, with three headers added at the top:
``X-Crmflow-Envelope-From``, ``X-Crmflow-Envelope-To`` (the SMTP envelope,
which includes Bcc recipients) and ``X-Crmflow-Received-At``. A Maildir is
one file per message written atomically, so messages survive restarts of the
sink and other processes (tests, ``crmflow mail``) can read them while the
sink is running.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import html
import logging
import mailbox
import re
import signal
import sys
import threading
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr
from pathlib import Path
from types import FrameType, TracebackType
from typing import Self, TextIO

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

logger = logging.getLogger(__name__)

ENVELOPE_FROM_HEADER = "X-Crmflow-Envelope-From"
ENVELOPE_TO_HEADER = "X-Crmflow-Envelope-To"
RECEIVED_AT_HEADER = "X-Crmflow-Received-At"

_MAILDIR_SUBDIRS = ("tmp", "new", "cur")


def ensure_maildir(maildir: Path) -> Path:
    """Create ``maildir`` and its ``tmp``/``new``/``cur`` folders if missing.

    Returns the path. Raises OSError when the folders cannot be created.
    """
    for subdir in _MAILDIR_SUBDIRS:
        (maildir / subdir).mkdir(parents=True, exist_ok=True)
    return maildir


class MaildirHandler:
    """An aiosmtpd handler that stores each accepted message in a Maildir."""

    def __init__(self, maildir: Path) -> None:
        self.maildir = ensure_maildir(maildir)
        self._mailbox = mailbox.Maildir(maildir, create=False)
        self._lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Store the message with the envelope headers prepended; answer 250."""
        content = envelope.original_content or b""
        newline = b"\r\n" if b"\r\n" in content[:4096] else b"\n"
        recipients = [str(rcpt) for rcpt in envelope.rcpt_tos]
        received_at = datetime.now(UTC).isoformat()
        added = [
            f"{ENVELOPE_FROM_HEADER}: {envelope.mail_from or ''}",
            f"{ENVELOPE_TO_HEADER}: " + ("," + newline.decode() + " ").join(recipients),
            f"{RECEIVED_AT_HEADER}: {received_at}",
        ]
        stored = newline.join(line.encode("utf-8") for line in added) + newline + content
        with self._lock:
            key = self._mailbox.add(stored)
        logger.info(
            "stored %s from %s to %s (%d bytes)",
            key,
            envelope.mail_from,
            ", ".join(recipients),
            len(content),
        )
        return "250 Message accepted for delivery"


class _Controller(Controller):
    """A Controller that learns its real port when asked to bind port 0."""

    def _create_server(self) -> Awaitable[asyncio.AbstractServer]:
        async def create_and_record_port() -> asyncio.AbstractServer:
            server = await Controller._create_server(self)
            if isinstance(server, asyncio.Server) and server.sockets:
                self.port = server.sockets[0].getsockname()[1]
            return server

        return create_and_record_port()


class MailSink:
    """A running SMTP sink: an aiosmtpd server in a thread, storing into ``maildir``.

    Use it as a context manager (or call ``stop()``). ``port=0`` picks a free
    port; the bound one is in ``.port``. Raises OSError when the address cannot
    be bound (for example the port is in use).
    """

    def __init__(self, maildir: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.maildir = Path(maildir)
        self.host = host
        self.handler = MaildirHandler(self.maildir)
        self._controller = _Controller(self.handler, hostname=host, port=port)
        self._controller.start()
        self.port: int = self._controller.port
        self._running = True

    def stop(self) -> None:
        """Stop accepting mail and join the server thread; safe to call twice."""
        if self._running:
            self._running = False
            self._controller.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def serve(host: str, port: int, maildir: Path) -> None:
    """Run the SMTP sink on ``host:port`` until SIGINT or SIGTERM.

    Must be called from the main thread (it installs signal handlers, and
    restores the previous ones on return). Raises OSError when the address
    cannot be bound.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    logger.setLevel(logging.INFO)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's per-connection chatter
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with MailSink(maildir, host=host, port=port) as sink:
            logger.info(
                "smtp sink listening on %s:%d, storing mail in %s",
                host,
                sink.port,
                Path(maildir).resolve(),
            )
            stop_requested.wait()
            logger.info("smtp sink stopping")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass
class StoredMessage:
    """One message from the sink's Maildir, parsed.

    ``sender`` is the From header (the envelope sender when there is none);
    ``recipients`` are the SMTP envelope recipients, which include Bcc (the
    To and Cc addresses for a message that did not come through the sink).
    ``body`` is the text/plain part, or the HTML part flattened to text.
    """

    key: str
    message_id: str | None
    sender: str
    recipients: list[str]
    subject: str
    date: datetime | None
    body: str
    html: str | None = None
    received_at: datetime | None = None
    attachments: list[str] = field(default_factory=list)
    message: EmailMessage = field(default_factory=EmailMessage, repr=False, compare=False)

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (first occurrence), or None."""
        value = self.message.get(name)
        return None if value is None else str(value)


def read_messages(maildir: Path, *, to: str | None = None) -> list[StoredMessage]:
    """Every message in ``maildir``, oldest first; only those for ``to`` if given.

    ``to`` matches an envelope recipient's address, case-insensitively
    (``"Ann <ann@example.com>"`` and ``"ann@example.com"`` match alike). A
    maildir that does not exist yet holds no messages. Messages that vanish
    while being read are skipped.
    """
    if not Path(maildir).is_dir():
        return []
    box = mailbox.Maildir(maildir, create=False)
    wanted = _address(to) if to else None
    messages: list[StoredMessage] = []
    for key in box.iterkeys():
        try:
            raw = box.get_bytes(key)
        except (KeyError, FileNotFoundError):
            continue
        stored = _parse(key, raw)
        if wanted is None or wanted in (_address(r) for r in stored.recipients):
            messages.append(stored)
    messages.sort(key=_arrival_order)
    return messages


def find_message(maildir: Path, ref: str | int, *, to: str | None = None) -> StoredMessage:
    """The message ``ref`` names: a 1-based index into ``read_messages(maildir, to=to)``,
    a Maildir key, or a Message-ID with or without angle brackets.

    Raises KeyError with a message saying what was looked for and how many
    messages there are.
    """
    messages = read_messages(maildir, to=to)
    scope = f"{maildir}" + (f" for {to}" if to else "")
    text = str(ref).strip()
    if isinstance(ref, int) or text.isdigit():
        index = int(text)
        if 1 <= index <= len(messages):
            return messages[index - 1]
        raise KeyError(
            f"no message #{index} in {scope}: there are {len(messages)} "
            f"(numbered 1 to {len(messages)})"
            if messages
            else f"no message #{index} in {scope}: it holds no messages"
        )
    for message in messages:
        if message.key == text:
            return message
    wanted_id = text.strip("<>")
    for message in messages:
        if message.message_id is not None and message.message_id.strip("<>") == wanted_id:
            return message
    raise KeyError(
        f"no message with key or Message-ID {text!r} in {scope} ({len(messages)} messages)"
    )


def print_mail_list(maildir: Path, to: str | None = None, out: TextIO = sys.stdout) -> None:
    """Print a table of the messages in ``maildir`` (for ``crmflow mail list``).

    Columns: number (use it with ``crmflow mail show``), date, recipients,
    subject, Message-ID. Prints a one-line note when there is nothing to list.
    """
    messages = read_messages(maildir, to=to)
    if not messages:
        where = f"{maildir}" if Path(maildir).is_dir() else f"{maildir} (does not exist yet)"
        out.write(f"no messages{f' for {to}' if to else ''} in {where}\n")
        return
    rows = [
        (
            str(number),
            _format_date(message.date or message.received_at),
            _shorten(", ".join(message.recipients), 32),
            _shorten(message.subject, 50),
            message.message_id or "-",
        )
        for number, message in enumerate(messages, start=1)
    ]
    header = ("#", "date", "to", "subject", "message-id")
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    for row in [header, *rows]:
        cells = [row[0].rjust(widths[0])]
        cells += [cell.ljust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        out.write("  ".join(cells).rstrip() + "\n")


_SHOWN_FIRST = ("Message-ID", "Date", "From", "To", "Cc", "Reply-To", "Subject")
_NOT_SHOWN = {"mime-version", "content-type", "content-transfer-encoding"}


def print_mail(maildir: Path, ref: str | int, out: TextIO = sys.stdout) -> None:
    """Print one message's headers and text body (for ``crmflow mail show``).

    ``ref`` is as for ``find_message``. Raises KeyError when it names no message.
    """
    message = find_message(maildir, ref)
    headers = message.message
    shown = {name.lower() for name in _SHOWN_FIRST} | _NOT_SHOWN
    lines = [f"{name}: {headers[name]}" for name in _SHOWN_FIRST if headers[name] is not None]
    lines += [f"{name}: {value}" for name, value in headers.items() if name.lower() not in shown]
    lines.append(f"Maildir-Key: {message.key}")
    if message.attachments:
        lines.append("Attachments: " + ", ".join(message.attachments))
    out.write("\n".join(lines) + "\n\n")
    if message.html is not None and not _has_plain_part(headers):
        out.write("(HTML only; shown as text)\n")
    out.write(message.body.rstrip("\n") + "\n")


def _parse(key: str, raw: bytes) -> StoredMessage:
    message = BytesParser(policy=email.policy.default).parsebytes(raw)
    envelope_to = message.get(ENVELOPE_TO_HEADER)
    if envelope_to is not None:
        recipients = [part.strip() for part in str(envelope_to).split(",") if part.strip()]
    else:
        addresses = message.get_all("To", []) + message.get_all("Cc", [])
        recipients = [address for _, address in getaddresses([str(a) for a in addresses])]
    sender = message.get("From") or message.get(ENVELOPE_FROM_HEADER) or ""
    plain = _part_text(message, "plain")
    html_text = _part_text(message, "html")
    if plain is not None:
        body = plain
    elif html_text is not None:
        body = _html_to_text(html_text)
    else:
        body = ""
    return StoredMessage(
        key=key,
        message_id=_str_or_none(message.get("Message-ID")),
        sender=str(sender),
        recipients=recipients,
        # A subject folded right after "Subject:" keeps the folding space; mail clients drop it.
        subject=str(message.get("Subject") or "").strip(),
        date=_header_datetime(message),
        body=body,
        html=html_text,
        received_at=_received_at(message),
        attachments=[
            part.get_filename() or part.get_content_type() for part in message.iter_attachments()
        ]
        if message.is_multipart()
        else [],
        message=message,
    )


def _part_text(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_subtype() != subtype:
        return None
    try:
        content = part.get_content()
    except (LookupError, UnicodeError):
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return str(content).replace("\r\n", "\n")


def _has_plain_part(message: EmailMessage) -> bool:
    return _part_text(message, "plain") is not None


_BLOCK_TAGS = re.compile(r"<\s*(br|/p|/div|/h[1-6]|/li|/tr)\b[^>]*>", re.IGNORECASE)
_INVISIBLE = re.compile(r"<(style|script|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")


def _html_to_text(markup: str) -> str:
    text = _INVISIBLE.sub("", markup)
    text = _BLOCK_TAGS.sub("\n", text)
    text = html.unescape(_TAG.sub("", text))
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def _header_datetime(message: EmailMessage) -> datetime | None:
    header = message.get("Date")
    value = getattr(header, "datetime", None)
    return value if isinstance(value, datetime) else None


def _received_at(message: EmailMessage) -> datetime | None:
    value = message.get(RECEIVED_AT_HEADER)
    if value is None:
        return None
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(str(value).strip())
    return None


def _arrival_order(message: StoredMessage) -> tuple[float, str]:
    if message.received_at is not None:
        return (message.received_at.timestamp(), message.key)
    # Maildir keys start with the delivery time in whole seconds.
    prefix = message.key.split(".", 1)[0]
    return (float(prefix) if prefix.isdigit() else 0.0, message.key)


def _address(value: str) -> str:
    return parseaddr(value)[1].lower() or value.strip().lower()


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value).strip()


def _format_date(value: datetime | None) -> str:
    if value is None:
        return "-"
    if value.tzinfo is not None:
        value = value.astimezone()
    return value.strftime("%Y-%m-%d %H:%M:%S")


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
