"""Payload encryption: customer data never sits in plaintext in Temporal's history.

``EncryptionCodec`` encrypts every payload (workflow and activity inputs and
results, signals, queries, memos) with AES-256-GCM before it leaves the
worker or the API, and decrypts it on the way back. Failure messages and stack
traces are encrypted too (``DefaultFailureConverterWithEncodedAttributes``).

Keys are named: the payload's metadata carries the id of the key that
encrypted it, so keys can be rotated — put the new key first (it encrypts
from then on) and keep the old ones after it (they still decrypt) until no
run holds payloads encrypted with them.

Keys come from ``CRMFLOW_CODEC_KEYS``: a comma-separated list of
``<key id>:<base64 of 32 random bytes>``, the first one active. Generate one
with ``crmflow codec-key``. Workflow ids and search attributes are not
payloads and stay readable, which is why they hold ids, never names or
addresses.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import re
from collections.abc import Mapping, Sequence

import temporalio.converter
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
_NONCE_BYTES = 12
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class CodecKeyError(ValueError):
    """The codec keys are malformed, or a payload names a key that is not configured."""


def parse_codec_keys(spec: str) -> dict[str, bytes]:
    """``"k2:<b64>,k1:<b64>"`` as an ordered ``{key_id: key}``; raises CodecKeyError."""
    keys: dict[str, bytes] = {}
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        key_id, sep, encoded = item.partition(":")
        if not sep or not _KEY_ID.match(key_id):
            raise CodecKeyError(
                f"codec key {key_id!r} must be '<id>:<base64 key>' with an id of letters, "
                "digits, '.', '_' or '-'"
            )
        try:
            key = base64.b64decode(encoded, validate=True)
        except binascii.Error as err:
            raise CodecKeyError(f"codec key {key_id!r} is not valid base64") from err
        if len(key) != 32:
            raise CodecKeyError(f"codec key {key_id!r} must be 32 bytes, got {len(key)}")
        if key_id in keys:
            raise CodecKeyError(f"codec key id {key_id!r} appears twice")
        keys[key_id] = key
    if not keys:
        raise CodecKeyError("no codec keys given")
    return keys


def new_codec_key(key_id: str) -> str:
    """A fresh ``<key_id>:<base64>`` entry for ``CRMFLOW_CODEC_KEYS``."""
    if not _KEY_ID.match(key_id):
        raise CodecKeyError(f"key id {key_id!r} must be letters, digits, '.', '_' or '-'")
    return f"{key_id}:{base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()}"


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over each payload, with the key id in the payload's metadata."""

    def __init__(self, keys: Mapping[str, bytes]) -> None:
        """``keys`` in order of preference; the first encrypts, all decrypt."""
        if not keys:
            raise CodecKeyError("EncryptionCodec needs at least one key")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._active = next(iter(keys))

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        cipher = self._ciphers[self._active]
        encoded = []
        for payload in payloads:
            nonce = os.urandom(_NONCE_BYTES)
            sealed = cipher.encrypt(nonce, payload.SerializeToString(), self._active.encode())
            encoded.append(
                Payload(
                    metadata={"encoding": ENCODING, KEY_ID_METADATA: self._active.encode()},
                    data=nonce + sealed,
                )
            )
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        decoded = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCODING:
                decoded.append(payload)  # written before encryption was turned on
                continue
            key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode()
            cipher = self._ciphers.get(key_id)
            if cipher is None:
                raise CodecKeyError(
                    f"payload was encrypted with key {key_id!r}, which is not configured"
                )
            nonce, sealed = payload.data[:_NONCE_BYTES], payload.data[_NONCE_BYTES:]
            try:
                plain = cipher.decrypt(nonce, sealed, key_id.encode())
            except InvalidTag as err:
                raise CodecKeyError(f"payload does not authenticate with key {key_id!r}") from err
            decoded.append(Payload.FromString(plain))
        return decoded


def data_converter(codec_keys: str | None) -> DataConverter:
    """The SDK's default converter, encrypting with ``codec_keys`` when they are set."""
    if not codec_keys:
        return temporalio.converter.default()
    return dataclasses.replace(
        temporalio.converter.default(),
        payload_codec=EncryptionCodec(parse_codec_keys(codec_keys)),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
