"""The activity that sends process emails, exactly once per step.

Each request carries a key (``{process_id}/{step}``). The email's Message-ID
is derived from that key, and the outbox row keyed by it is marked ``sent``
once the SMTP server accepted the message, so a retried attempt returns the
earlier receipt instead of sending again. Should a worker die in the instant
between the server's acceptance and that mark, the retry sends the same
message again with the same Message-ID, which receiving mail systems treat
as one message.
"""

from __future__ import annotations

import hashlib
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

import aiosmtplib
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import update
from sqlmodel import Session, col
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.mailer import SmtpMailer
from activities.message import address_header, plain_text_message
from activities.templates import EmailTemplates, TemplateError
from crm.store.db import Database, insert_once
from crm.store.models import AuditEntry, OutboundEmail, utcnow
from workflows.contracts import SEND_EMAIL, EmailReceipt, EmailRequest


def message_id_for(key: str, sender: str) -> str:
    """The Message-ID every attempt of step ``key`` uses, in the sender's domain."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "crmflow.localhost"
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>"


class EmailActivities:
    """Renders templates and sends them through an SMTP server, once per key."""

    def __init__(
        self,
        database: Database,
        mailer: SmtpMailer,
        *,
        sender: str,
        templates: EmailTemplates | None = None,
    ) -> None:
        self._database = database
        self._mailer = mailer
        self._sender = sender
        self._from_header = address_header(sender)
        self._templates = templates or EmailTemplates()

    @activity.defn(name=SEND_EMAIL)
    async def send_email(self, request: EmailRequest) -> EmailReceipt:
        """Send the email for ``request.key`` unless an earlier attempt did.

        Raises a non-retryable ApplicationError of type ``InvalidInput`` for a
        malformed recipient or template, ``RecipientRejected`` when the server
        refuses it permanently, and a retryable ``SmtpUnavailable`` when the
        server cannot be reached or answers with a temporary failure.
        """
        recipient = _valid_recipient(request.to)
        try:
            rendered = (
                self._templates.render(request.template, request.context)
                if request.body is None
                else self._templates.render_user(
                    request.subject or "", request.body, request.context
                )
            )
        except TemplateError as err:
            raise ApplicationError(str(err), type="InvalidInput", non_retryable=True) from err

        pending = OutboundEmail(
            key=request.key,
            process_id=request.process_id,
            message_id=message_id_for(request.key, self._sender),
            recipient=recipient,
            template=request.template,
            subject=rendered.subject,
        )
        outbox, _ = await self._database.run(lambda session: insert_once(session, pending))
        if outbox.status == "sent":
            activity.logger.info("email %s already sent as %s", request.key, outbox.message_id)
            return EmailReceipt(request.key, outbox.message_id, outbox.subject, sent=False)

        try:
            message = plain_text_message(
                sender=self._from_header,
                recipient=recipient,
                subject=rendered.subject,
                body=rendered.body,
                headers={
                    "Message-ID": outbox.message_id,
                    "Date": formatdate(localtime=False, usegmt=True),
                    "X-Crmflow-Process": request.process_id,
                    "X-Crmflow-Step": request.key.rpartition("/")[2],
                },
            )
        except ValueError as err:
            raise ApplicationError(
                f"email {request.key}: {err}", type="InvalidInput", non_retryable=True
            ) from err
        await self._deliver(message, request.key)

        audit = AuditEntry(
            key=request.key,
            process_id=request.process_id,
            step=f"email:{request.template}",
            detail={"message_id": outbox.message_id, "subject": rendered.subject},
        )
        await self._database.run(lambda session: _mark_sent(session, request.key, audit))
        activity.logger.info("email %s sent as %s", request.key, outbox.message_id)
        return EmailReceipt(request.key, outbox.message_id, rendered.subject, sent=True)

    async def _deliver(self, message: EmailMessage, key: str) -> None:
        try:
            await self._mailer.send(message)
        except aiosmtplib.SMTPRecipientsRefused as err:
            raise ApplicationError(
                f"email {key}: recipient refused: {err.recipients}",
                type="RecipientRejected",
                non_retryable=True,
            ) from err
        except aiosmtplib.SMTPResponseException as err:
            permanent = 500 <= err.code < 600
            raise ApplicationError(
                f"email {key}: SMTP server answered {err.code} {err.message}",
                type="RecipientRejected" if permanent else "SmtpUnavailable",
                non_retryable=permanent,
            ) from err
        except (aiosmtplib.SMTPException, OSError) as err:
            raise ApplicationError(
                f"email {key}: SMTP server {self._mailer.host}:{self._mailer.port} "
                f"unavailable: {err}",
                type="SmtpUnavailable",
            ) from err


def _mark_sent(session: Session, key: str, audit: AuditEntry) -> None:
    """Mark the outbox row of ``key`` sent and audit it, in one transaction."""
    session.connection().execute(
        update(OutboundEmail)
        .where(col(OutboundEmail.key) == key)
        .values(status="sent", sent_at=utcnow())
    )
    insert_once(session, audit)


def _valid_recipient(address: str) -> str:
    try:
        valid = validate_email(address, check_deliverability=False)
    except EmailNotValidError as err:
        raise ApplicationError(
            f"invalid recipient address {address!r}: {err}", type="InvalidInput", non_retryable=True
        ) from err
    return str(Address(addr_spec=valid.normalized))
