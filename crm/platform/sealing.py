"""Secrets kept in the database sealed with the sealing keys (AES-256-GCM).

A sealed secret is ``<key id>:<base64 of nonce + ciphertext>``, bound to what
it belongs to (``context``, e.g. the endpoint id) as associated data, so a
sealed value copied to another row does not open. The keys are
``CRMFLOW_SEALING_KEYS``, or the codec keys when that is unset, in the codec
keys' form: the first one seals; every configured key opens, so rotating the
keys keeps stored secrets readable.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crm.platform.codec import CodecKeyError, parse_codec_keys

_NONCE_BYTES = 12


class SealingUnavailable(RuntimeError):
    """No codec key is configured, so nothing can be sealed or opened."""


def seal(secret: str, context: str, codec_keys: str | None) -> str:
    """``secret`` sealed with the active codec key, bound to ``context``."""
    keys = _keys(codec_keys)
    key_id, key = next(iter(keys.items()))
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, secret.encode(), context.encode())
    return f"{key_id}:{base64.b64encode(nonce + sealed).decode()}"


def unseal(sealed: str, context: str, codec_keys: str | None) -> str:
    """The secret ``sealed`` holds; CodecKeyError when its key is gone or it was altered."""
    keys = _keys(codec_keys)
    key_id, _, encoded = sealed.partition(":")
    if key_id not in keys:
        raise CodecKeyError(f"the secret was sealed with codec key {key_id!r}, not configured")
    try:
        raw = base64.b64decode(encoded, validate=True)
        opened = AESGCM(keys[key_id]).decrypt(
            raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context.encode()
        )
    except (binascii.Error, InvalidTag, ValueError):
        raise CodecKeyError(f"the secret sealed for {context} does not open") from None
    return opened.decode()


def _keys(codec_keys: str | None) -> dict[str, bytes]:
    keys = parse_codec_keys(codec_keys) if codec_keys else {}
    if not keys:
        raise SealingUnavailable(
            "stored secrets are sealed: set CRMFLOW_SEALING_KEYS or CRMFLOW_CODEC_KEYS"
        )
    return keys
