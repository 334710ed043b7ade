"""The console's virtual inbox: every message the dev stack's SMTP sink received, checked.

``/console/mail`` lists the messages, newest first, with how their checks
came out; ``/console/mail/{key}`` shows one: its HTML in a sandboxed frame,
its text part, every header and each check (``crm.mail.checks``), the
SpamAssassin score included where ``spamassassin`` is installed. The HTML is
served by ``/console/mail/{key}/html`` under a policy of its own: the
``sandbox`` directive (no scripts, an opaque origin), inline styles and
``data:`` images only, framed by the console alone.
"""

from __future__ import annotations

import asyncio
import mailbox
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from api.console.rendering import page
from api.console.security import (
    CONSOLE_PATH,
    CONTENT_SECURITY_POLICY,
    ConsoleRefused,
    SessionDep,
    require_role,
)
from api.deps import ContextDep
from crm.mail.checks import SpamScore, message_checks, part_text, spam_scores
from crm.platform.principals import Principal
from devstack.mailsink import (
    ENVELOPE_FROM_HEADER,
    ENVELOPE_TO_HEADER,
    RECEIVED_AT_HEADER,
    StoredMessage,
    read_messages,
)

router = APIRouter(prefix=f"{CONSOLE_PATH}/mail", include_in_schema=False)

#: The inbox page frames the message's HTML from the console's own origin, nothing else.
INBOX_PAGE_POLICY = CONTENT_SECURITY_POLICY + "; frame-src 'self'"
#: A message's HTML: no scripts, no requests, its own styles; only the console frames it.
MESSAGE_HTML_POLICY = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
)
_KEY = re.compile(r"^[A-Za-z0-9._:,=-]{1,200}$")
_ROLES = ("support", "admin")


def _may_read_mail(principal: Principal) -> None:
    """The sink holds every tenant's mail: support or admin staff of no tenant read it.
    Raises ConsoleRefused 403 otherwise."""
    require_role(principal, *_ROLES)
    if principal.tenant is not None:
        raise ConsoleRefused(
            403, "The test mailbox holds every tenant's mail: it is not a tenant's."
        )


_NOT_SHOWN = {"content-transfer-encoding"}
#: SpamAssassin's verdict per Maildir key: a message in the sink never changes.
_spam_cache: dict[str, SpamScore | None] = {}
#: The headers the sink puts on top of each message it stores (not the sender's).
_SINK_HEADERS = tuple(
    f"{name}:".encode() for name in (ENVELOPE_FROM_HEADER, ENVELOPE_TO_HEADER, RECEIVED_AT_HEADER)
)


@router.get("")
async def inbox(session: SessionDep, context: ContextDep) -> Response:
    """Every message the sink holds, newest first, with its class and failing checks."""
    _may_read_mail(session.principal)
    maildir = context.settings.mail_sink_dir
    messages = _messages(maildir)
    rows = []
    for number, message in reversed(list(enumerate(messages, start=1))):
        raw = _raw(maildir, message.key) if maildir else b""
        checks = message_checks(raw, context.settings.public_url) if raw else []
        rows.append(
            {
                "number": number,
                "message": message,
                "kind": message.header("X-Crmflow-Class") or "",
                "failing": [check.name for check in checks if check.status == "fail"],
            }
        )
    return page(
        "mail_inbox.html",
        **_common(session, "Mail"),
        rows=rows,
        maildir=str(maildir) if maildir else None,
        present=bool(maildir and maildir.is_dir()),
    )


@router.get("/{key}")
async def message(key: str, session: SessionDep, context: ContextDep) -> Response:
    """One message: its HTML framed, its text part, its headers and its checks."""
    _may_read_mail(session.principal)
    stored, raw = _find(context.settings.mail_sink_dir, key)
    if key not in _spam_cache:
        scores = await asyncio.to_thread(spam_scores, [raw])
        _spam_cache[key] = scores[0] if scores else None
    checks = message_checks(raw, context.settings.public_url, _spam_cache[key])
    parsed = stored.message
    headers = [
        (name, str(value)) for name, value in parsed.items() if name.lower() not in _NOT_SHOWN
    ]
    response = page(
        "mail_message.html",
        **_common(session, stored.subject or "(no subject)"),
        stored=stored,
        key=key,
        text=part_text(parsed, "plain"),
        has_html=stored.html is not None,
        headers=headers,
        envelope_to=", ".join(stored.recipients),
        checks=checks,
        size=len(raw),
    )
    response.headers["content-security-policy"] = INBOX_PAGE_POLICY
    return response


@router.get("/{key}/html")
async def message_html(key: str, session: SessionDep, context: ContextDep) -> Response:
    """The message's HTML part, sandboxed by its own Content-Security-Policy."""
    _may_read_mail(session.principal)
    stored, _ = _find(context.settings.mail_sink_dir, key)
    response = HTMLResponse(stored.html or "<p>This message has no HTML part.</p>")
    response.headers["content-security-policy"] = MESSAGE_HTML_POLICY
    response.headers["x-frame-options"] = "SAMEORIGIN"
    return response


def _common(session: Any, title: str) -> dict[str, Any]:
    return {
        "user": session.principal,
        "csrf_token": session.csrf_token,
        "section": "mail",
        "title": title,
    }


def _messages(maildir: Path | None) -> list[StoredMessage]:
    return read_messages(maildir) if maildir is not None else []


def _find(maildir: Path | None, key: str) -> tuple[StoredMessage, bytes]:
    """The message under ``key`` and its bytes; raises ConsoleRefused 404 when there is none."""
    if maildir is not None and _KEY.match(key):
        for stored in _messages(maildir):
            if stored.key == key:
                raw = _raw(maildir, key)
                if raw:
                    return stored, raw
    raise ConsoleRefused(404, "The SMTP sink holds no such message.")


def _raw(maildir: Path | None, key: str) -> bytes:
    """The bytes the sink stored for ``key``, less the envelope headers it put on top."""
    if maildir is None:
        return b""
    try:
        raw = mailbox.Maildir(maildir, create=False).get_bytes(key)
    except (KeyError, FileNotFoundError, OSError):
        return b""
    lines = raw.split(b"\n")
    while lines and (lines[0].startswith(_SINK_HEADERS) or lines[0][:1] in (b" ", b"\t")):
        lines.pop(0)
    return b"\n".join(lines)
