"""The payload codec: encryption, key rotation and the errors a misconfiguration gets."""

from __future__ import annotations

import pytest
from temporalio.api.common.v1 import Payload

from crm.platform.codec import (
    ENCODING,
    KEY_ID_METADATA,
    CodecKeyError,
    EncryptionCodec,
    new_codec_key,
    parse_codec_keys,
)

CUSTOMER = Payload(metadata={"encoding": b"json/plain"}, data=b'{"email": "ann@acme.io"}')


async def test_encrypted_payload_hides_the_data_and_decrypts_back() -> None:
    codec = EncryptionCodec(parse_codec_keys(new_codec_key("k1")))
    [sealed] = await codec.encode([CUSTOMER])
    assert b"ann@acme.io" not in sealed.SerializeToString()
    assert sealed.metadata["encoding"] == ENCODING
    assert sealed.metadata[KEY_ID_METADATA] == b"k1"
    assert await codec.decode([sealed]) == [CUSTOMER]


async def test_rotation_encrypts_with_the_new_key_and_still_reads_the_old() -> None:
    old_key = new_codec_key("2026-10")
    old = EncryptionCodec(parse_codec_keys(old_key))
    [written_before] = await old.encode([CUSTOMER])

    rotated = EncryptionCodec(parse_codec_keys(f"{new_codec_key('2026-11')},{old_key}"))
    [written_after] = await rotated.encode([CUSTOMER])
    assert written_after.metadata[KEY_ID_METADATA] == b"2026-11"
    assert await rotated.decode([written_before, written_after]) == [CUSTOMER, CUSTOMER]


async def test_a_payload_under_an_unknown_key_is_a_clear_error() -> None:
    [sealed] = await EncryptionCodec(parse_codec_keys(new_codec_key("gone"))).encode([CUSTOMER])
    codec = EncryptionCodec(parse_codec_keys(new_codec_key("k1")))
    with pytest.raises(CodecKeyError, match="key 'gone', which is not configured"):
        await codec.decode([sealed])


async def test_a_tampered_payload_does_not_authenticate() -> None:
    codec = EncryptionCodec(parse_codec_keys(new_codec_key("k1")))
    [sealed] = await codec.encode([CUSTOMER])
    sealed.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    with pytest.raises(CodecKeyError, match="does not authenticate"):
        await codec.decode([sealed])


async def test_plaintext_payloads_from_before_encryption_pass_through() -> None:
    codec = EncryptionCodec(parse_codec_keys(new_codec_key("k1")))
    assert await codec.decode([CUSTOMER]) == [CUSTOMER]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "no codec keys"),
        ("k1", "must be '<id>:<base64 key>'"),
        ("k1:not base64!", "not valid base64"),
        ("k1:c2hvcnQ=", "must be 32 bytes, got 5"),
        (f"{new_codec_key('k1')},{new_codec_key('k1')}", "appears twice"),
    ],
)
def test_malformed_keys_are_refused_with_the_reason(spec: str, message: str) -> None:
    with pytest.raises(CodecKeyError, match=message):
        parse_codec_keys(spec)
