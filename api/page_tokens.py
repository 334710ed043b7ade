"""Opaque page tokens: where the next page of a list begins.

A table read in id order (an audit trail, a customer's timeline) pages by the
last id it gave (``id_token`` / ``id_after``). A list read from Temporal's
visibility store pages by the server's own token, which ``seal_token`` binds
to the query it continues with a MAC, so a token this API did not give, or
one given for other filters or another tenant, never reaches the server.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from api.problems import Problem
from crm.platform.codec import parse_codec_keys

#: Signs visibility tokens when no codec or sealing key is configured; such tokens
#: hold only for the API process that gave them.
_PROCESS_KEY = secrets.token_bytes(32)
_MAC_BYTES = 16


def invalid_page_token() -> Problem:
    """The 422 for a ``page_token`` query parameter this API did not give."""
    return Problem(
        422,
        "validation-error",
        "Invalid request",
        "page_token: not a token this API gave",
        errors=[
            {
                "loc": ["query", "page_token"],
                "msg": "not a token this API gave",
                "type": "value_error",
            }
        ],
    )


def id_token(last_id: int) -> str:
    """An opaque page token for a list in id order: the next page begins after ``last_id``."""
    return base64.urlsafe_b64encode(f"a{last_id}".encode()).decode()


def id_after(page_token: str | None) -> int:
    """The id a page token of ``id_token`` continues after (0 without one); raises
    Problem 422 on ``page_token`` for one not ours."""
    if page_token is None:
        return 0
    try:
        decoded = base64.urlsafe_b64decode(page_token.encode()).decode()
    except (ValueError, UnicodeError):
        decoded = ""
    if not (decoded.startswith("a") and decoded[1:].isdigit() and len(decoded) < 12):
        raise invalid_page_token()
    return int(decoded[1:])


def token_key(secret_keys: str | None) -> bytes:
    """The key that signs visibility page tokens: derived from the active sealing (or
    codec) key, else one of this process's own."""
    if not secret_keys:
        return _PROCESS_KEY
    active = next(iter(parse_codec_keys(secret_keys).values()))
    return hmac.new(active, b"crmflow page tokens", hashlib.sha256).digest()


def seal_token(key: bytes, query: str, server_token: bytes) -> str:
    """An opaque page token carrying Temporal's ``server_token`` for ``query``."""
    mac = hmac.new(key, query.encode() + b"\0" + server_token, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(b"v" + mac[:_MAC_BYTES] + server_token).decode()


def open_token(key: bytes, query: str, page_token: str | None) -> bytes | None:
    """Temporal's token inside ``page_token`` (None without one); raises Problem 422 on
    ``page_token`` unless this API sealed it for the same ``query``."""
    if page_token is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(page_token.encode())
    except (ValueError, binascii.Error):
        raise invalid_page_token() from None
    if len(raw) <= 1 + _MAC_BYTES or raw[:1] != b"v":
        raise invalid_page_token()
    server_token = raw[1 + _MAC_BYTES :]
    expected = hmac.new(key, query.encode() + b"\0" + server_token, hashlib.sha256).digest()
    if not hmac.compare_digest(raw[1 : 1 + _MAC_BYTES], expected[:_MAC_BYTES]):
        raise invalid_page_token()
    return server_token
