"""The activity of an automation's ``http`` step: a signed POST to a user's endpoint.

The body goes as JSON through ``activities.outbound`` (signed as Standard
Webhooks sign with ``CRMFLOW_AUTOMATION_HTTP_SECRET``, to public addresses
only unless the host is in ``CRMFLOW_AUTOMATION_HTTP_ALLOWED_HOSTS``).
``webhook-id`` is the step's idempotency key, the same on every attempt, so a
receiver takes the call once.

Workflows choose what to do by the ``type`` of the ``ApplicationError`` raised:

``UrlRefused`` (non-retryable)
    Not an http(s) URL with a host and without credentials, or a host with an
    address inside the network.
``HttpRefused`` (non-retryable)
    The endpoint answered a status other than 2xx, 408, 429 and 5xx (a 3xx
    included: redirects are not followed); ``details`` carries the status.
``HttpUnavailable`` (retryable)
    A 5xx, 408 or 429 (``Retry-After`` honoured), a timeout, a connection or
    DNS failure.
``HttpNotConfigured`` (non-retryable)
    No signing secret is configured.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from http import HTTPStatus

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.enrichment import parse_retry_after
from activities.outbound import (
    DestinationRefused,
    Outbound,
    Unreachable,
    checked_url,
    signed_headers,
    signing_key,
)
from workflows.automation_types import CALL_HTTP, HttpCallRequest, HttpCallResult

RETRIED_STATUSES = (HTTPStatus.REQUEST_TIMEOUT, HTTPStatus.TOO_MANY_REQUESTS)


class HttpCallActivities:
    """Signed POSTs of automations' ``http`` steps, to vetted addresses only."""

    def __init__(
        self,
        secret: str | None,
        *,
        allowed_hosts: Sequence[str] = (),
        timeout_seconds: float = 10.0,
    ) -> None:
        """Sign with ``secret`` (None: every call fails as ``HttpNotConfigured``). Raises
        ValueError for a secret not in the Standard Webhooks form."""
        self._key = signing_key(secret) if secret is not None else None
        self._outbound = Outbound(allowed_hosts=allowed_hosts, timeout_seconds=timeout_seconds)

    @activity.defn(name=CALL_HTTP)
    async def call_http(self, request: HttpCallRequest) -> HttpCallResult:
        """POST ``request.body`` to ``request.url``, signed; the 2xx status answered.

        Raises ``ApplicationError`` of the types in the module docstring.
        """
        if self._key is None:
            raise ApplicationError(
                "no signing secret: set CRMFLOW_AUTOMATION_HTTP_SECRET",
                type="HttpNotConfigured",
                non_retryable=True,
            )
        body = json.dumps(request.body, separators=(",", ":"), ensure_ascii=False).encode()
        try:
            url = checked_url(request.url)
            async with self._outbound.session(url) as session:
                headers = signed_headers([self._key], request.key, body)
                answer = await self._outbound.post(session, url, body, headers)
        except DestinationRefused as refused:
            raise ApplicationError(str(refused), type="UrlRefused", non_retryable=True) from None
        except Unreachable as unreachable:
            raise ApplicationError(str(unreachable), type="HttpUnavailable") from None
        where, status = str(url.origin()), answer.status
        activity.logger.info("call_http %s: %s answered %d", request.key, where, status)
        if 200 <= status < 300:
            return HttpCallResult(status=status)
        if status >= 500 or status in RETRIED_STATUSES:
            delay = parse_retry_after(answer.retry_after) if answer.retry_after else None
            raise ApplicationError(
                f"{where} answered {status}", type="HttpUnavailable", next_retry_delay=delay
            )
        raise ApplicationError(
            f"{where} answered {status}"
            + (" (redirects are not followed)" if 300 <= status < 400 else ""),
            {"status": status},
            type="HttpRefused",
            non_retryable=True,
        )
