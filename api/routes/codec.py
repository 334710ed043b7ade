"""The codec server: the Temporal Web UI and CLI decode encrypted payloads through it.

``POST /codec/decode`` and ``POST /codec/encode`` take and return the proto3
JSON form of ``temporal.api.common.v1.Payloads`` (``{"payloads": [{"metadata":
{...}, "data": "<base64>"}]}``), as the UI's "codec endpoint" setting expects.
The dev stack points its UI here (``--ui-codec-endpoint``).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from api.auth import Authenticator, Support
from api.deps import ContextDep
from api.problems import Problem
from crm.platform.codec import CodecKeyError, EncryptionCodec, parse_codec_keys

router = APIRouter(prefix="/codec", tags=["codec"])

_BASE64 = {
    "type": "string",
    "pattern": r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
}
#: The proto3 JSON form of ``temporal.api.common.v1.Payloads``, as the Web UI sends it.
PAYLOADS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "payloads": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "metadata": {"type": "object", "additionalProperties": _BASE64},
                    "data": _BASE64,
                },
            },
        }
    },
}
_PAYLOADS_IO: dict[str, object] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": PAYLOADS_SCHEMA}},
    },
    "responses": {
        "200": {
            "description": "The payloads, decoded or encoded in order",
            "content": {"application/json": {"schema": PAYLOADS_SCHEMA}},
        }
    },
}

_codecs: dict[str, EncryptionCodec] = {}


def _codec(keys: str | None) -> EncryptionCodec:
    if not keys:
        raise Problem(
            404, "codec-disabled", "Payload encryption is off", "CRMFLOW_CODEC_KEYS is not set"
        )
    if keys not in _codecs:
        _codecs[keys] = EncryptionCodec(parse_codec_keys(keys))
    return _codecs[keys]


async def _payloads(request: Request) -> Payloads:
    try:
        return json_format.Parse(await request.body(), Payloads())
    except json_format.ParseError as err:
        raise Problem(
            400, "invalid-payloads", "Invalid payloads", f"expected Payloads JSON: {err}"
        ) from err


def _answer(payloads: list[object]) -> Response:
    body = json_format.MessageToJson(Payloads(payloads=payloads))  # type: ignore[arg-type]
    return Response(body, media_type="application/json")


async def _decode(request: Request, keys: str | None) -> Response:
    codec = _codec(keys)
    payloads = await _payloads(request)
    try:
        return _answer(list(await codec.decode(list(payloads.payloads))))
    except CodecKeyError as err:
        raise Problem(422, "undecryptable-payload", "Cannot decrypt payload", str(err)) from err


async def _encode(request: Request, keys: str | None) -> Response:
    codec = _codec(keys)
    payloads = await _payloads(request)
    return _answer(list(await codec.encode(list(payloads.payloads))))


@router.post(
    "/decode",
    summary="Decrypt payloads for the Web UI or CLI (support role)",
    openapi_extra=_PAYLOADS_IO,
)
async def decode(request: Request, context: ContextDep, _: Support) -> Response:
    return await _decode(request, context.settings.codec_keys)


@router.post(
    "/encode",
    summary="Encrypt payloads typed in the Web UI (support role)",
    openapi_extra=_PAYLOADS_IO,
)
async def encode(request: Request, context: ContextDep, _: Support) -> Response:
    return await _encode(request, context.settings.codec_keys)


# The Temporal dev server's Web UI cannot send credentials to a codec server,
# so the dev stack gives it an endpoint with a support key in the path. The
# key is checked like any other; the API logs route templates, never paths.


async def _support_in_path(request: Request, api_key: str) -> None:
    authenticator: Authenticator = request.app.state.authenticator
    principal = await authenticator.verify(api_key)
    if principal is None or not principal.has_any("support"):
        raise Problem(403, "forbidden", "Not allowed", "the codec endpoint needs a support key")


@router.post("/key/{api_key}/decode", include_in_schema=False)
async def decode_with_key(request: Request, api_key: str, context: ContextDep) -> Response:
    await _support_in_path(request, api_key)
    return await _decode(request, context.settings.codec_keys)


@router.post("/key/{api_key}/encode", include_in_schema=False)
async def encode_with_key(request: Request, api_key: str, context: ContextDep) -> Response:
    await _support_in_path(request, api_key)
    return await _encode(request, context.settings.codec_keys)
