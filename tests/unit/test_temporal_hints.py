"""What a failed connection to Temporal over TLS is taken to mean, from the SDK's error."""

from __future__ import annotations

import pytest

from crm.platform.settings import Settings
from crm.platform.temporal import _hint

#: As the SDK put it when an mTLS server refused a client without a certificate (TLS 1.3:
#: the client's first call went out before the refusal came back).
RESET = (
    "Failed client connect: `get_system_info` call error after connection: Status { code: "
    'Unavailable, message: "transport error", source: Some(tonic::transport::Error(Transport, '
    "hyper::Error(Io, Kind(ConnectionReset)))) }"
)
ALERT = "Failed client connect: received fatal alert: CertificateRequired"
#: As it put it once on a loaded machine (its status abridged): the server closed the
#: connection mid-call.
CLOSED = (
    "Failed client connect: `get_system_info` call error after connection: Status { code: "
    'Cancelled, message: "operation was canceled", source: Some(tonic::transport::Error('
    'Transport, hyper::Error(Canceled, "connection closed"))) }'
)


@pytest.mark.parametrize("error", [ALERT, RESET, CLOSED], ids=["alert", "reset", "closed"])
def test_a_tls_connection_the_server_drops_asks_for_a_client_certificate(error: str) -> None:
    assert "probably requires a client certificate" in _hint(Settings(), True, error)


def test_a_reset_with_a_client_certificate_asks_whether_it_is_accepted() -> None:
    settings = Settings().model_copy(update={"temporal_tls_cert": "/etc/crmflow/client.pem"})
    assert "may not accept this client certificate" in _hint(settings, True, RESET)
