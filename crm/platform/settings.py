"""Runtime settings, read from ``CRMFLOW_*`` environment variables.

The same worker and API run against the local dev stack (the defaults) and a
production deployment (a Temporal cluster, PostgreSQL, an SMTP relay, an HTTP
enrichment provider) by changing only these variables.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting of crmflow; see the README for the table of variables."""

    # The input is every CRMFLOW_ variable, keys included: errors name the variable only.
    model_config = SettingsConfigDict(
        env_prefix="CRMFLOW_", extra="ignore", hide_input_in_errors=True
    )

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    #: None: TLS when any of the TLS files, the server name or an API key is set.
    temporal_tls: bool | None = None
    #: The root CA (PEM) the server's certificate is checked against instead of the system's.
    temporal_tls_ca: Path | None = None
    #: The name the server's certificate carries, and the SNI sent, when it is not the
    #: host of ``temporal_address``.
    temporal_tls_server_name: str | None = None
    #: The client certificate and its key (PEM) for mTLS: both or neither.
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_api_key: str | None = Field(default=None, repr=False)
    codec_keys: str | None = Field(default=None, repr=False)
    #: The keys that seal secrets stored in the database (webhook signing secrets), in the
    #: codec keys' form; the codec keys when unset.
    sealing_keys: str | None = Field(default=None, repr=False)
    task_queue: str = "crmflow"
    #: The Temporal Web UI, to which the runs list links each run.
    temporal_ui_url: str = "http://127.0.0.1:8233"

    database_url: str = "sqlite:///.crmflow/crm.db"

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = 10.0
    mail_from: str = "crmflow <noreply@crmflow.localhost>"
    #: Where people reach the API from outside: the base of the links in emails (unsubscribe).
    public_url: str = Field(default="http://127.0.0.1:8000", pattern=r"^https?://[^/\s]+(/\S*)?$")
    #: The secret that signs unsubscribe links; without it one made once and kept in the
    #: database signs them.
    email_link_secret: str | None = Field(default=None, repr=False)
    #: The SMTP sink's Maildir the console's virtual inbox shows (the dev stack's).
    mail_sink_dir: Path | None = Path(".crmflow/mail")

    enrichment_url: str = "http://127.0.0.1:8100"
    enrichment_api_key: str | None = None
    enrichment_timeout_seconds: float = 5.0

    #: The Standard Webhooks signing secret of automations' ``http`` steps
    #: (``whsec_<base64 of 24 to 64 random bytes>``); without one such a step fails.
    automation_http_secret: str | None = Field(default=None, repr=False)
    #: Hosts, as URLs write them, that automations' HTTP steps and webhooks may reach although
    #: their addresses are inside the network (tests, the dev stack's receiver, a receiver of
    #: one's own); every other host must resolve to public addresses only.
    outbound_allowed_hosts: list[str] = Field(default_factory=list)
    #: The bound of one outbound request (connecting is bounded by 5 s of it).
    outbound_timeout_seconds: float = Field(default=10.0, gt=0)
    #: Who is emailed when a webhook endpoint is disabled (a 410, three days of failures)
    #: and when the needs-attention list grows.
    operator_email: str | None = None
    #: How often the attention watch's schedule looks for new attention items (0: never).
    attention_check_minutes: int = Field(default=15, ge=0, le=1440)
    #: When each staff member's daily digest goes out, ``HH:MM`` in their own time zone;
    #: None: no digests.
    daily_digest_at: str | None = Field(default="08:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")

    policy_file: Path | None = None

    api_keys_file: Path | None = None
    jwt_key: str | None = Field(default=None, repr=False)
    jwt_algorithm: str = "RS256"
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    start_rate_per_second: float = Field(default=200.0, gt=0)
    start_burst: int = Field(default=400, ge=1)
    #: How many API processes share the start rate: each allows ``1/api_replicas`` of the
    #: rate and the burst, so a principal never starts more than the rate in all.
    api_replicas: int = Field(default=1, ge=1)
    max_request_bytes: int = Field(default=65536, ge=1024)
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    #: The proxies (addresses, comma-separated, or "*") whose X-Forwarded-Proto and -For the
    #: API believes: behind a TLS-terminating load balancer, name it so the console's cookie
    #: is sent as Secure.
    api_forwarded_allow_ips: str = "127.0.0.1"
    ui_origins: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1:8233", "http://localhost:8233"]
    )

    worker_metrics_address: str | None = "127.0.0.1:9464"
    log_format: Literal["json", "text"] = "json"
    log_level: str = "INFO"
    worker_max_concurrent_activities: int = Field(default=100, ge=1)
    #: Workflow runs a worker keeps in memory between their tasks; a run evicted from it is
    #: replayed from its whole history at its next task.
    worker_max_cached_workflows: int = Field(default=1000, ge=0)
    worker_sandbox: bool = False
    worker_graceful_shutdown_seconds: float = Field(default=30.0, ge=0)
    #: Worker Versioning: the worker deployment and the build id of this worker's code. Both
    #: set, the worker polls as that version; neither, it polls unversioned (the name alone
    #: is the deployment ``crmflow rollout`` acts on).
    worker_deployment_name: str | None = None
    worker_build_id: str | None = None
    #: Where the worker answers ``/healthz`` and ``/readyz`` (empty: off).
    worker_health_address: str | None = None
    #: A versioned worker stops by itself once its version has drained (no longer current
    #: or ramping, and no running workflow pinned to it).
    worker_exit_when_drained: bool = False
    worker_drain_check_seconds: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _temporal_tls_is_usable(self) -> Settings:
        """A process fails at start-up, naming the variable, rather than at its first call."""
        if (self.temporal_tls_cert is None) != (self.temporal_tls_key is None):
            given, missing = ("CERT", "KEY") if self.temporal_tls_key is None else ("KEY", "CERT")
            raise ValueError(
                f"CRMFLOW_TEMPORAL_TLS_{given} is set but CRMFLOW_TEMPORAL_TLS_{missing} is "
                "not: a client certificate (mTLS) needs both"
            )
        if self.temporal_tls is False and self.temporal_tls_options_set:
            raise ValueError(
                "CRMFLOW_TEMPORAL_TLS is false but a TLS CA, server name or client "
                "certificate is set"
            )
        for variable, path, marker in (
            ("CRMFLOW_TEMPORAL_TLS_CA", self.temporal_tls_ca, b"-----BEGIN CERTIFICATE-----"),
            ("CRMFLOW_TEMPORAL_TLS_CERT", self.temporal_tls_cert, b"-----BEGIN CERTIFICATE-----"),
            ("CRMFLOW_TEMPORAL_TLS_KEY", self.temporal_tls_key, b"PRIVATE KEY-----"),
        ):
            if path is None:
                continue
            try:
                content = path.read_bytes()
            except OSError as err:
                raise ValueError(f"{variable}: cannot read {path}: {err.strerror}") from err
            if marker not in content:
                kind = "private key" if variable.endswith("KEY") else "certificate"
                raise ValueError(f"{variable}: {path} holds no PEM {kind}")
        return self

    @property
    def temporal_tls_options_set(self) -> bool:
        """Whether a TLS CA, server name or client certificate is configured."""
        return any(
            (
                self.temporal_tls_ca,
                self.temporal_tls_server_name,
                self.temporal_tls_cert,
                self.temporal_tls_key,
            )
        )

    @property
    def secret_keys(self) -> str | None:
        """The keys that seal stored secrets: ``sealing_keys``, else the codec keys."""
        return self.sealing_keys or self.codec_keys


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
