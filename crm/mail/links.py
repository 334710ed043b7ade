"""Signed, expiring unsubscribe links: ``{public_url}/email/unsubscribe/{token}``.

The token carries the address, the sending process, the email's key and an
expiry, and an HMAC-SHA256 over them, so the API can act on it without a
login and without a lookup, and nobody can make one for another address.
The expiry counts from when the email was first written to the outbox, so
every attempt at sending one email carries the same link.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

UNSUBSCRIBE_PATH = "/email/unsubscribe"


class LinkError(ValueError):
    """A token that is malformed, not signed with the secret, or expired."""


@dataclass(frozen=True)
class UnsubscribeToken:
    """What an unsubscribe link stands for."""

    address: str
    process_id: str
    email_key: str
    expires_at: datetime


def sign(token: UnsubscribeToken, secret: str) -> str:
    """The URL-safe text of ``token``, signed with ``secret``."""
    payload = json.dumps(
        {
            "a": token.address,
            "p": token.process_id,
            "k": token.email_key,
            "e": int(token.expires_at.timestamp()),
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    return f"{_b64(payload)}.{_b64(_mac(payload, secret))}"


def verify(text: str, secret: str, now: datetime) -> UnsubscribeToken:
    """The token ``text`` stands for; raises LinkError when it is malformed, its signature
    does not match ``secret`` or it expired before ``now``."""
    head, dot, signature = text.partition(".")
    try:
        payload = _unb64(head)
        given = _unb64(signature)
    except ValueError:
        raise LinkError("this link is not one crmflow made") from None
    if not dot or not hmac.compare_digest(given, _mac(payload, secret)):
        raise LinkError("this link is not one crmflow made")
    try:
        fields = json.loads(payload)
        token = UnsubscribeToken(
            address=str(fields["a"]),
            process_id=str(fields["p"]),
            email_key=str(fields["k"]),
            expires_at=datetime.fromtimestamp(int(fields["e"]), tz=now.tzinfo),
        )
    except (ValueError, KeyError, TypeError):
        raise LinkError("this link is not one crmflow made") from None
    if token.expires_at <= now:
        raise LinkError("this link has expired")
    return token


def unsubscribe_url(public_url: str, token: str) -> str:
    """The link of ``token`` under the API's public URL."""
    return f"{public_url.rstrip('/')}{UNSUBSCRIBE_PATH}/{token}"


def expiry(written_at: datetime, valid_days: int) -> datetime:
    """When a link of an email written at ``written_at`` stops working."""
    return written_at + timedelta(days=valid_days)


def _mac(payload: bytes, secret: str) -> bytes:
    return hmac.new(secret.encode(), b"unsubscribe\x00" + payload, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not text or len(text) > 2000:
        raise ValueError("empty or too long")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as err:
        raise ValueError(str(err)) from err
