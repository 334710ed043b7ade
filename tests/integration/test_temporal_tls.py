"""Connecting to a Temporal cluster with TLS, mTLS, a namespace and an API key.

The session's dev server speaks plain gRPC; a TLS-terminating proxy in front of it
(``tests/support/tls_proxy.py``) plays the part of a cluster's TLS edge, with
certificates from a private CA made here. The proxy reads the request headers
behind the TLS, so the tests see the namespace and the API key arrive.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from google.protobuf.duration_pb2 import Duration
from pydantic import ValidationError
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from crm.platform.settings import Settings
from crm.platform.temporal import connect, tls_config
from crm.policy import Policy
from crm.store.db import Database
from devstack.mailsink import MailSink
from tests.conftest import eventually
from tests.support.onboarding import (
    inbox,
    onboarding_input,
    send_event,
    start_onboarding,
    step_of,
)
from tests.support.tls_proxy import TlsTerminatingProxy, server_context
from worker.main import running_worker
from workflows.common import SEARCH_ATTRIBUTES

SERVER_NAME = "temporal.crmflow.test"
API_KEY = "crmflow-test-api-key"


@dataclass(frozen=True)
class Pki:
    """PEM files of a private CA, a server certificate and a client certificate it issued,
    and a second CA that issued nothing here."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(
    directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    server_names: Sequence[str] = (),
    client: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer[0].subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if issuer is None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=0), critical=True
        )
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=False, path_length=None), critical=True
        )
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                + [x509.DNSName(name) for name in server_names]
            ),
            critical=False,
        )
    signer = issuer[1] if issuer else key
    return builder.sign(signer, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("crmflow test CA", ca_key, None)
    ca_path, _ = _write(directory, "ca", ca, ca_key)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _certificate(
        "temporal", server_key, (ca, ca_key), server_names=[SERVER_NAME, "localhost"]
    )
    server_cert, server_key_path = _write(directory, "server", server, server_key)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _certificate("crmflow-worker", client_key, (ca, ca_key), client=True)
    client_cert, client_key_path = _write(directory, "client", client, client_key)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_ca, _ = _write(
        directory, "other-ca", _certificate("another CA", other_key, None), other_key
    )
    return Pki(ca_path, server_cert, server_key_path, client_cert, client_key_path, other_ca)


@pytest.fixture(scope="module")
async def namespace(dev_env: WorkflowEnvironment) -> str:
    """A namespace of this module's own on the dev server, with crmflow's search attributes."""
    name = f"crmflow-tls-{uuid.uuid4().hex[:8]}"
    await dev_env.client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=name, workflow_execution_retention_period=Duration(seconds=86400)
        )
    )
    await dev_env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=name,
            search_attributes={
                key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in SEARCH_ATTRIBUTES
            },
        )
    )
    return name


def _upstream(dev_env: WorkflowEnvironment) -> str:
    return dev_env.client.service_client.config.target_host


@pytest.fixture
async def tls_proxy(dev_env: WorkflowEnvironment, pki: Pki) -> AsyncIterator[TlsTerminatingProxy]:
    """The dev server behind TLS with the private CA's server certificate."""
    context = server_context(str(pki.server_cert), str(pki.server_key))
    async with TlsTerminatingProxy(_upstream(dev_env), context).serving() as proxy:
        yield proxy


@pytest.fixture
async def mtls_proxy(dev_env: WorkflowEnvironment, pki: Pki) -> AsyncIterator[TlsTerminatingProxy]:
    """The dev server behind TLS that requires a client certificate the private CA issued."""
    context = server_context(str(pki.server_cert), str(pki.server_key), client_ca=str(pki.ca))
    async with TlsTerminatingProxy(_upstream(dev_env), context).serving() as proxy:
        yield proxy


def settings_from_environment(
    monkeypatch: pytest.MonkeyPatch, base: Settings | None = None, /, **variables: object
) -> Settings:
    """Settings read as a process reads them at start-up: ``CRMFLOW_*`` variables, validated."""
    for name, value in variables.items():
        monkeypatch.setenv(f"CRMFLOW_{name.upper()}", str(value))
    overrides = base.model_dump(exclude={name.lower() for name in variables}) if base else {}
    return Settings(**overrides)


async def test_a_worker_connected_over_tls_with_a_private_ca_onboards_a_customer_in_its_namespace(
    monkeypatch: pytest.MonkeyPatch,
    tls_proxy: TlsTerminatingProxy,
    pki: Pki,
    namespace: str,
    settings: Settings,
    policy: Policy,
    database: Database,
    mail_sink: MailSink,
    dev_env: WorkflowEnvironment,
) -> None:
    tls_settings = settings_from_environment(
        monkeypatch,
        settings,
        temporal_address=tls_proxy.address,
        temporal_namespace=namespace,
        temporal_tls_ca=pki.ca,
        temporal_tls_server_name=SERVER_NAME,
        temporal_api_key=API_KEY,
    )
    client = await connect(tls_settings)
    customer = onboarding_input()

    async def welcome_steps() -> list[str | None]:
        return [step_of(message) for message in inbox(mail_sink.maildir, customer)]

    async with running_worker(client, tls_settings, policy, database):
        handle = await start_onboarding(client, tls_settings.task_queue, customer)
        await eventually(welcome_steps, lambda steps: steps == ["email_welcome"])
        await send_event(handle, "account_configured")
        await send_event(handle, "first_value")
        result = await asyncio.wait_for(handle.result(), timeout=10)

    assert result.outcome == "activated"
    # The run lives in the namespace the settings name, not in the server's default one.
    in_namespace = await Client.connect(_upstream(dev_env), namespace=namespace)
    described = await in_namespace.get_workflow_handle(handle.id).describe()
    assert described.status == WorkflowExecutionStatus.COMPLETED
    with pytest.raises(RPCError, match="not found"):
        await dev_env.client.get_workflow_handle(handle.id).describe()
    # Behind the TLS: every connection asked for the configured name over h2, and every
    # call carried the API key and, where it names one, the configured namespace.
    assert {(c.server_name, c.alpn_protocol) for c in tls_proxy.connections} == {
        (SERVER_NAME, "h2")
    }
    calls = tls_proxy.requests
    assert {call[":path"].rsplit("/", 1)[1] for call in calls} >= {
        "StartWorkflowExecution",
        "PollWorkflowTaskQueue",
        "SignalWorkflowExecution",
    }
    assert {call.get("authorization") for call in calls} == {f"Bearer {API_KEY}"}
    assert {call["temporal-namespace"] for call in calls if "temporal-namespace" in call} == {
        namespace
    }


async def test_mtls_admits_a_client_with_the_certificate_the_cluster_asks_for(
    monkeypatch: pytest.MonkeyPatch, mtls_proxy: TlsTerminatingProxy, pki: Pki, namespace: str
) -> None:
    settings = settings_from_environment(
        monkeypatch,
        temporal_address=mtls_proxy.address,
        temporal_namespace=namespace,
        temporal_tls_ca=pki.ca,
        temporal_tls_cert=pki.client_cert,
        temporal_tls_key=pki.client_key,
    )
    client = await connect(settings)

    assert await client.count_workflows() is not None
    assert [c.client_certificate_subject for c in mtls_proxy.connections] == ["crmflow-worker"]


async def _connect_failure(settings: Settings, **kwargs: Any) -> tuple[str, float]:
    started = time.monotonic()
    with pytest.raises(RuntimeError) as failure:
        await connect(settings, **kwargs)
    return str(failure.value), time.monotonic() - started


async def test_mtls_without_a_client_certificate_fails_at_once_saying_one_is_needed(
    monkeypatch: pytest.MonkeyPatch, mtls_proxy: TlsTerminatingProxy, pki: Pki
) -> None:
    settings = settings_from_environment(
        monkeypatch, temporal_address=mtls_proxy.address, temporal_tls_ca=pki.ca
    )

    message, seconds = await _connect_failure(settings)

    assert "it probably requires a client certificate (CRMFLOW_TEMPORAL_TLS_CERT" in message
    assert seconds < 2


async def test_a_server_certificate_from_another_ca_is_refused_at_once_naming_the_ca_setting(
    monkeypatch: pytest.MonkeyPatch, tls_proxy: TlsTerminatingProxy, pki: Pki
) -> None:
    settings = settings_from_environment(
        monkeypatch, temporal_address=tls_proxy.address, temporal_tls_ca=pki.other_ca
    )

    message, seconds = await _connect_failure(settings)

    assert f"not signed by the CA in CRMFLOW_TEMPORAL_TLS_CA ({pki.other_ca})" in message
    assert seconds < 2


async def test_a_certificate_for_another_name_is_refused_pointing_at_the_server_name_setting(
    monkeypatch: pytest.MonkeyPatch, tls_proxy: TlsTerminatingProxy, pki: Pki
) -> None:
    settings = settings_from_environment(
        monkeypatch,
        temporal_address=tls_proxy.address,
        temporal_tls_ca=pki.ca,
        temporal_tls_server_name="temporal.elsewhere.test",
    )

    message, _ = await _connect_failure(settings)

    assert "set CRMFLOW_TEMPORAL_TLS_SERVER_NAME to a name it carries" in message


async def test_a_server_that_never_completes_the_handshake_is_an_error_after_the_timeout(
    monkeypatch: pytest.MonkeyPatch, pki: Pki
) -> None:
    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up

    silent = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    settings = settings_from_environment(
        monkeypatch, temporal_address=f"127.0.0.1:{port}", temporal_tls_ca=pki.ca
    )
    try:
        message, seconds = await _connect_failure(settings, connect_timeout=timedelta(seconds=1))
    finally:
        silent.close()

    assert message.endswith("over TLS: no answer in 1 s")
    assert 1 <= seconds < 2


def test_an_api_key_alone_connects_with_tls_as_temporal_cloud_expects() -> None:
    assert tls_config(Settings(temporal_api_key=API_KEY)) is True
    assert tls_config(Settings(temporal_api_key=API_KEY, temporal_tls=False)) is False
    assert tls_config(Settings()) is False


@pytest.mark.parametrize(
    ("variables", "error"),
    [
        (
            {"temporal_tls_cert": "client.pem"},
            "CRMFLOW_TEMPORAL_TLS_CERT is set but CRMFLOW_TEMPORAL_TLS_KEY is not",
        ),
        (
            {"temporal_tls_key": "client-key.pem"},
            "CRMFLOW_TEMPORAL_TLS_KEY is set but CRMFLOW_TEMPORAL_TLS_CERT is not",
        ),
        (
            {"temporal_tls_ca": "missing.pem"},
            "CRMFLOW_TEMPORAL_TLS_CA: cannot read {dir}/missing.pem: No such file or directory",
        ),
        (
            {"temporal_tls_ca": "client-key.pem"},
            "CRMFLOW_TEMPORAL_TLS_CA: {dir}/client-key.pem holds no PEM certificate",
        ),
        (
            {"temporal_tls_cert": "client.pem", "temporal_tls_key": "client.pem"},
            "CRMFLOW_TEMPORAL_TLS_KEY: {dir}/client.pem holds no PEM private key",
        ),
        (
            {"temporal_tls": "false", "temporal_tls_ca": "ca.pem"},
            "CRMFLOW_TEMPORAL_TLS is false but a TLS CA, server name or client certificate is set",
        ),
    ],
)
def test_tls_settings_that_cannot_work_stop_the_process_at_start_up_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, pki: Pki, variables: dict[str, str], error: str
) -> None:
    directory = pki.ca.parent
    paths = {
        name: value if name == "temporal_tls" else directory / value
        for name, value in variables.items()
    }

    with pytest.raises(ValidationError) as failure:
        settings_from_environment(monkeypatch, temporal_api_key=API_KEY, **paths)

    assert error.format(dir=directory) in str(failure.value)
    assert API_KEY not in str(failure.value)  # the environment's other values stay unprinted
