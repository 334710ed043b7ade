"""Connecting to Temporal with the settings every crmflow process shares."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig

from crm.platform.codec import data_converter
from crm.platform.settings import Settings


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    """A client for the configured address and namespace, with TLS or an API key if set.

    ``runtime`` carries telemetry (the worker's Prometheus endpoint); the SDK's
    default runtime otherwise. Raises RuntimeError (from the SDK) when the server cannot be reached.
    """
    tls: TLSConfig | bool = settings.temporal_tls
    if settings.temporal_tls_cert and settings.temporal_tls_key:
        tls = TLSConfig(
            client_cert=settings.temporal_tls_cert.read_bytes(),
            client_private_key=settings.temporal_tls_key.read_bytes(),
        )
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        tls=tls,
        api_key=settings.temporal_api_key,
        runtime=runtime,
        data_converter=data_converter(settings.codec_keys),
    )
