"""The activity that sends process emails, exactly once per step.

Each request carries a key (``{process_id}/{step}``). The email's Message-ID
is derived from that key, and the outbox row keyed by it is marked ``sent``
once the SMTP server accepted the message, so a retried attempt returns the
earlier receipt instead of sending again. Should a worker die in the instant
between the server's acceptance and that mark, the retry sends the same
message again with the same Message-ID, which receiving mail systems treat
as one message.

Each email goes out as ``multipart/alternative`` (a text and an HTML part in
the shared layout, ``crm.mail.layout``). Before it is sent the suppression
list is asked: a marketing email to an address that unsubscribed,
complained or bounced, or any email to one that bounced, is not sent; the
outbox row is marked ``suppressed``, the process's audit trail says so and
the activity fails with the non-retryable type ``EmailSuppressed``, which the
processes take as an email they could not send. Marketing mail carries
RFC 8058 one-click unsubscribe headers with a signed link
(``crm.mail.links``), the same on every attempt.
"""

from __future__ import annotations

import hashlib
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import NoReturn

import aiosmtplib
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import update
from sqlmodel import Session, col
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.mailer import SmtpMailer
from activities.message import address_header, alternative_message
from activities.templates import EmailTemplates, RenderedEmail, TemplateError
from crm.mail.catalogue import EMAIL_CLASSES, EmailClass
from crm.mail.layout import EmailPolicy, FooterLinks, compose
from crm.mail.links import UnsubscribeToken, expiry, sign, unsubscribe_url
from crm.store.db import Database, insert_once
from crm.store.models import AuditEntry, EmailSuppression, OutboundEmail, utcnow
from crm.store.suppressions import link_secret, suppress, suppression_of
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
        layout: EmailPolicy | None = None,
        public_url: str = "http://127.0.0.1:8000",
        link_secret: str | None = None,
    ) -> None:
        self._database = database
        self._mailer = mailer
        self._sender = sender
        self._from_header = address_header(sender)
        self._templates = templates or EmailTemplates()
        self._layout = layout or EmailPolicy()
        self._public_url = public_url
        self._link_secret = link_secret

    @activity.defn(name=SEND_EMAIL)
    async def send_email(self, request: EmailRequest) -> EmailReceipt:
        """Send the email for ``request.key`` unless an earlier attempt did.

        Raises a non-retryable ApplicationError of type ``InvalidInput`` for a
        malformed recipient or template, ``EmailSuppressed`` when the address is
        on the suppression list for the email's class, ``RecipientRejected`` when
        the server refuses it permanently (which suppresses the address), and a
        retryable ``SmtpUnavailable`` when the server cannot be reached or answers
        with a temporary failure.
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
        email_class = _class_of(request)

        pending = OutboundEmail(
            key=request.key,
            process_id=request.process_id,
            message_id=message_id_for(request.key, self._sender),
            recipient=recipient,
            template=request.template,
            subject=rendered.subject,
        )
        address = Address(addr_spec=parseaddr(recipient)[1]).addr_spec

        def claim(session: Session) -> tuple[OutboundEmail, EmailSuppression | None, str]:
            outbox, _ = insert_once(session, pending)
            held = suppression_of(session, address, email_class)
            return outbox, held, self._link_secret or link_secret(session)

        outbox, held, secret = await self._database.run(claim)
        if outbox.status == "sent":
            activity.logger.info("email %s already sent as %s", request.key, outbox.message_id)
            return EmailReceipt(request.key, outbox.message_id, outbox.subject, sent=False)
        if held is not None:
            await self._hold_back(request, outbox, held)

        token = UnsubscribeToken(
            address=address,
            process_id=request.process_id,
            email_key=request.key,
            expires_at=expiry(outbox.created_at, self._layout.link_valid_days),
        )
        link = unsubscribe_url(self._public_url, sign(token, secret))
        headers = {
            "Message-ID": outbox.message_id,
            "Date": formatdate(localtime=False, usegmt=True),
            "X-Crmflow-Process": request.process_id,
            "X-Crmflow-Step": request.key.rpartition("/")[2],
            "X-Crmflow-Class": email_class,
        }
        if email_class == "marketing":
            headers["List-Unsubscribe"] = f"<{link}>"
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        try:
            message = self._message(recipient, rendered, email_class, link, headers)
        except ValueError as err:
            raise ApplicationError(
                f"email {request.key}: {err}", type="InvalidInput", non_retryable=True
            ) from err
        await self._deliver(message, request.key, address, request.process_id)

        audit = AuditEntry(
            key=request.key,
            process_id=request.process_id,
            step=f"email:{request.template}",
            detail={"message_id": outbox.message_id, "subject": rendered.subject},
        )
        await self._database.run(lambda session: _mark_sent(session, request.key, audit))
        activity.logger.info("email %s sent as %s", request.key, outbox.message_id)
        return EmailReceipt(request.key, outbox.message_id, rendered.subject, sent=True)

    def _message(
        self,
        recipient: str,
        rendered: RenderedEmail,
        email_class: EmailClass,
        link: str,
        headers: dict[str, str],
    ) -> EmailMessage:
        """The message in both parts; raises ValueError for a header that is not one line."""
        links = FooterLinks(
            preferences_url=link, unsubscribe_url=link if email_class == "marketing" else None
        )
        parts = compose(rendered.subject, rendered.body, self._layout, links)
        return alternative_message(
            sender=self._from_header,
            recipient=recipient,
            subject=parts.subject,
            text=parts.text,
            html=parts.html,
            headers=headers,
        )

    async def _hold_back(
        self, request: EmailRequest, outbox: OutboundEmail, held: EmailSuppression
    ) -> NoReturn:
        """Mark the email suppressed and audit it; raises the non-retryable EmailSuppressed."""
        reason = f"{held.address} is suppressed for {held.category} mail ({held.reason})"
        audit = AuditEntry(
            key=f"{request.key}/suppressed",
            process_id=request.process_id,
            step=f"email_suppressed:{request.template}"[:100],
            detail={"message_id": outbox.message_id, "reason": held.reason},
        )

        def mark(session: Session) -> None:
            session.connection().execute(
                update(OutboundEmail)
                .where(col(OutboundEmail.key) == request.key)
                .values(status="suppressed")
            )
            insert_once(session, audit)

        await self._database.run(mark)
        activity.logger.info("email %s not sent: %s", request.key, reason)
        raise ApplicationError(
            f"email {request.key} not sent: {reason}", type="EmailSuppressed", non_retryable=True
        )

    async def _deliver(
        self, message: EmailMessage, key: str, address: str, process_id: str
    ) -> None:
        try:
            await self._mailer.send(message)
        except aiosmtplib.SMTPRecipientsRefused as err:
            if any(500 <= refusal.code < 600 for refusal in err.recipients):
                await self._database.run(
                    lambda session: suppress(
                        session, address, "all", "hard_bounce", process_id=process_id
                    )
                )
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


def _class_of(request: EmailRequest) -> EmailClass:
    """The email's class: the request's category, else its template's (user templates
    without one are transactional)."""
    if request.category == "marketing":
        return "marketing"
    if request.category == "transactional":
        return "transactional"
    return EMAIL_CLASSES.get(request.template, "transactional")


def _valid_recipient(address: str) -> str:
    try:
        valid = validate_email(address, check_deliverability=False)
    except EmailNotValidError as err:
        raise ApplicationError(
            f"invalid recipient address {address!r}: {err}", type="InvalidInput", non_retryable=True
        ) from err
    return str(Address(addr_spec=valid.normalized))
