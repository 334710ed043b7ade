"""The bodies ``/v1/webhooks`` takes and answers (``api.routes.webhooks``).

What the OpenAPI document can state about an endpoint's URL and event types
it states (a pattern, an enum); what it cannot, the validators check with the
messages users see (``crm.platform.urls``, ``crm.domain.webhook_events``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from crm.domain.webhook_events import SUBSCRIBABLE, pattern_problem
from crm.platform.urls import url_problem
from crm.store.models import WebhookEndpoint, as_utc
from crm.store.webhook_deliveries import DeliveryLog
from processes.registry import Instant

MAX_EVENT_TYPES = 50
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_TOP_LABEL = r"[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_HOST = rf"(?:(?:{_LABEL}\.){{0,20}}{_TOP_LABEL}|(?:{_OCTET}\.){{3}}{_OCTET})"
_PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
#: An http(s) URL with a host name (its last label begins with a letter) or a dotted IPv4
#: address, and no credentials; the API checks more (``crm.platform.urls``).
URL_PATTERN = rf"^https?://{_HOST}(?::{_PORT})?(?:[/?#][^\s]*)?$"
#: What an endpoint may subscribe to: an event type, ``<process>.*``, or ``*``.
EventPattern = Annotated[str, WithJsonSchema({"type": "string", "enum": SUBSCRIBABLE})]


def _checked_url(url: str) -> str:
    problem = url_problem(url)
    if problem is not None:
        raise ValueError(problem)
    return url


def _checked_types(event_types: list[str]) -> list[str]:
    for pattern in event_types:
        problem = pattern_problem(pattern)
        if problem is not None:
            raise ValueError(problem)
    return sorted(set(event_types))


class NewEndpoint(BaseModel):
    """An endpoint to create: where to deliver, which events, whether with personal data."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        max_length=2000,
        json_schema_extra={"pattern": URL_PATTERN},
        examples=["https://hooks.example.com/crmflow"],
    )
    event_types: list[EventPattern] = Field(
        min_length=1, max_length=MAX_EVENT_TYPES, examples=[["ticket.*", "renewal.lapsed"]]
    )
    personal_data: bool = Field(
        default=False,
        description="Send the fields that identify a person or hold free text people wrote "
        "(names, email addresses, task titles, subjects, comments); left out when false.",
    )
    enabled: bool = True

    _url = field_validator("url")(_checked_url)
    _types = field_validator("event_types")(_checked_types)


class EndpointChanges(BaseModel):
    """What to change of an endpoint; enabling one forgets why it was disabled."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        default=None, max_length=2000, json_schema_extra={"pattern": URL_PATTERN}
    )
    event_types: list[EventPattern] | None = Field(
        default=None, min_length=1, max_length=MAX_EVENT_TYPES
    )
    personal_data: bool | None = None
    enabled: bool | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        return _checked_url(url) if url is not None else None

    @field_validator("event_types")
    @classmethod
    def _types(cls, event_types: list[str] | None) -> list[str] | None:
        return _checked_types(event_types) if event_types is not None else None


class EndpointView(BaseModel):
    """An endpoint (never its secret)."""

    id: str
    url: str
    event_types: list[str]
    personal_data: bool
    enabled: bool
    disabled_reason: str | None
    failing_since: datetime | None
    rotating_until: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: WebhookEndpoint) -> EndpointView:
        return cls(
            id=row.endpoint_id,
            url=row.url,
            event_types=row.event_types,
            personal_data=row.personal_data,
            enabled=row.enabled,
            disabled_reason=row.disabled_reason,
            failing_since=as_utc(row.failing_since) if row.failing_since else None,
            rotating_until=as_utc(row.previous_secret_expires_at)
            if row.previous_secret_expires_at
            else None,
            created_at=as_utc(row.created_at),
            updated_at=as_utc(row.updated_at),
        )


class EndpointWithSecret(EndpointView):
    """An endpoint and its signing secret, shown this once."""

    secret: str = Field(examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])


class Rotation(BaseModel):
    """How long the old secret keeps signing next to the new one."""

    model_config = ConfigDict(extra="forbid")

    overlap_hours: float = Field(default=24, ge=0, le=24 * 7)


class AttemptView(BaseModel):
    attempt: int
    at: datetime
    status: int | None
    latency_ms: float
    error: str | None


class DeliveryView(BaseModel):
    """One event's delivery to the endpoint, with every attempt."""

    id: int
    webhook_id: str
    event_id: str
    event_type: str
    process_id: str
    state: str = Field(examples=["pending", "delivered", "failed"])
    attempts: list[AttemptView]
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    last_error: str | None

    @classmethod
    def of(cls, log: DeliveryLog) -> DeliveryView:
        delivery, event = log.delivery, log.event
        assert delivery.id is not None
        return cls(
            id=delivery.id,
            webhook_id=delivery.message_id,
            event_id=event.event_id,
            event_type=event.type,
            process_id=event.process_id,
            state=delivery.state,
            attempts=[
                AttemptView(
                    attempt=a.attempt,
                    at=as_utc(a.at),
                    status=a.status,
                    latency_ms=round(a.latency_ms, 1),
                    error=a.error,
                )
                for a in log.attempts
            ],
            next_attempt_at=as_utc(delivery.next_attempt_at) if delivery.next_attempt_at else None,
            delivered_at=as_utc(delivery.delivered_at) if delivery.delivered_at else None,
            last_error=delivery.last_error,
        )


class Redelivery(BaseModel):
    """Which failed deliveries to send again: one, or every one created since a time."""

    model_config = ConfigDict(extra="forbid")

    delivery_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    since: Instant | None = None


class Redelivered(BaseModel):
    redelivered: int
