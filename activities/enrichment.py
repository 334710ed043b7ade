"""The ``enrich_company`` activity: look a company up at an HTTP enrichment provider.

Workflows choose their retry policy by the ``type`` of the ``ApplicationError``
this activity raises:

``InvalidInput`` (non-retryable)
    The domain is not a syntactically valid host name; retrying cannot help.
``CompanyNotFound`` (non-retryable)
    The provider answered 404: it has no data for the domain (free-mail
    providers, reserved names, unknown companies). Workflows carry on without
    enrichment.
``RateLimited`` (retryable)
    The provider answered 429. ``next_retry_delay`` carries its
    ``Retry-After`` (delta-seconds or HTTP-date; 1 s when absent or
    unreadable; clamped to 1..300 s), which overrides the policy's backoff.
``EnrichmentUnavailable`` (retryable)
    A 5xx answer, a timeout or a connection failure: the provider is down or
    overloaded for now.
``EnrichmentRejected`` (non-retryable)
    The provider refused the request (401, 403, any other 4xx or unexpected
    status) or answered 200 with a body that is not a company profile: a
    configuration or contract problem that needs a person, not a retry.

The API key goes only into request headers; it is never logged or put in an
error message.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import aiohttp
from temporalio import activity
from temporalio.exceptions import ApplicationError
from yarl import URL

from workflows.contracts import ENRICH_COMPANY, CompanyProfile, EnrichmentRequest

DEFAULT_RETRY_AFTER = timedelta(seconds=1)
MAX_RETRY_AFTER = timedelta(seconds=300)

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_PROFILE_TEXT_FIELDS = ("name", "industry", "size_band", "country")


class EnrichmentActivities:
    """Activities that call one enrichment provider through a shared ``aiohttp`` session.

    aiohttp parses HTTP in C: a lookup costs a busy worker a third of the CPU it
    cost with httpx (bench/RESULTS.md).
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_seconds: float = 5.0,
        max_connections: int = 100,
    ) -> None:
        """Prepare lookups at the provider at ``base_url``; no connection is made yet.

        ``api_key``, when given, is sent as ``Authorization: Bearer <key>``;
        ``timeout_seconds`` bounds each request, from connecting to reading the
        last byte; at most ``max_connections`` are open at once, all kept alive.
        Raises ValueError when ``base_url`` is not an http(s) URL with a host.
        """
        url = URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"enrichment URL {base_url!r} is not an http(s) URL with a host")
        self._headers = {"Accept": "application/json"}
        if api_key is not None:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._provider = str(url.origin())  # without userinfo or path
        self._lookups = f"{str(url).rstrip('/')}/v1/companies/"
        self._timeout_seconds = timeout_seconds
        self._max_connections = max_connections
        self._client: aiohttp.ClientSession | None = None

    async def aclose(self) -> None:
        """Close the HTTP session and its pooled connections."""
        if self._client is not None:
            await self._client.close()

    def _session(self) -> aiohttp.ClientSession:
        """The session, opened on the first lookup (it belongs to the running event loop)."""
        if self._client is None:
            self._client = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=self._timeout_seconds),
                # Keep as many connections open as activities run at once: closing
                # and reopening them under load costs more than the lookups.
                connector=aiohttp.TCPConnector(limit=self._max_connections),
            )
        return self._client

    @activity.defn(name=ENRICH_COMPANY)
    async def enrich_company(self, request: EnrichmentRequest) -> CompanyProfile:
        """Return the provider's profile of ``request.domain``, with ``complete`` set.

        ``complete`` is True when the provider filled every field. Raises
        ``ApplicationError`` of the types listed in the module docstring.
        """
        try:
            domain = normalize_domain(request.domain)
        except ValueError as error:
            activity.logger.info("enrich_company %r: invalid domain", request.domain)
            raise ApplicationError(str(error), type="InvalidInput", non_retryable=True) from None
        url = self._lookups + quote(domain, safe="")
        try:
            async with self._session().get(url, allow_redirects=False) as response:
                body = await response.read()
        except TimeoutError as error:
            raise _unavailable(
                domain,
                f"no answer from {self._provider} within {self._timeout_seconds:g} s "
                f"({type(error).__name__})",
            ) from None
        except (aiohttp.ClientError, OSError) as error:
            raise _unavailable(domain, f"cannot reach {self._provider}: {error!r}") from None

        status = response.status
        if status == HTTPStatus.OK:
            profile = _profile_from_body(domain, body)
            activity.logger.info("enrich_company %s: found (complete=%s)", domain, profile.complete)
            return profile
        if status == HTTPStatus.NOT_FOUND:
            activity.logger.info("enrich_company %s: no company data", domain)
            raise ApplicationError(
                f"no company data for {domain}", type="CompanyNotFound", non_retryable=True
            )
        if status == HTTPStatus.TOO_MANY_REQUESTS:
            delay = parse_retry_after(response.headers.get("Retry-After"))
            activity.logger.warning(
                "enrich_company %s: rate limited, retry in %d s", domain, delay.total_seconds()
            )
            raise ApplicationError(
                f"provider rate limit reached for {domain}; retry in {delay.total_seconds():g} s",
                type="RateLimited",
                next_retry_delay=delay,
            )
        if status >= 500:
            raise _unavailable(domain, f"{self._provider} answered {status} {response.reason}")
        activity.logger.error("enrich_company %s: provider rejected request (%d)", domain, status)
        raise ApplicationError(
            f"provider rejected the lookup of {domain}: {status} {response.reason}",
            type="EnrichmentRejected",
            non_retryable=True,
        )


def normalize_domain(raw: str) -> str:
    """Return ``raw`` stripped, lowercased and IDNA-encoded, without a trailing dot.

    Raises ``ValueError`` when the result is not a host name of at least two
    labels of letters, digits and inner hyphens (at most 63 each, 253 in all)
    under a non-numeric TLD, so email addresses, IP addresses and single
    labels are rejected.
    """
    candidate = raw.strip().lower().removesuffix(".")
    try:
        domain = candidate.encode("idna").decode("ascii")
    except UnicodeError:
        domain = ""
    labels = domain.split(".")
    if (
        len(domain) > 253
        or len(labels) < 2
        or not all(_LABEL.match(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise ValueError(f"not a valid domain: {raw!r}")
    return domain


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> timedelta:
    """The delay a ``Retry-After`` header asks for, clamped to 1..300 seconds.

    Accepts delta-seconds (``"7"``) and HTTP-dates (``"Wed, 21 Oct 2015
    07:28:00 GMT"``, measured from ``now``, default the current UTC time,
    rounded up to whole seconds). A missing or unreadable value gives 1 s.
    Never raises.
    """
    if value is None or not value.strip():
        return DEFAULT_RETRY_AFTER
    value = value.strip()
    if value.isascii() and value.isdigit():
        delay = timedelta(seconds=int(value[:9]))  # past 300 s, more digits change nothing
    else:
        try:
            retry_at = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return DEFAULT_RETRY_AFTER
        if retry_at.tzinfo is None:
            retry_at = retry_at.replace(tzinfo=UTC)
        seconds = (retry_at - (now or datetime.now(UTC))).total_seconds()
        delay = timedelta(seconds=math.ceil(seconds))
    return max(DEFAULT_RETRY_AFTER, min(delay, MAX_RETRY_AFTER))


def _unavailable(domain: str, reason: str) -> ApplicationError:
    activity.logger.warning("enrich_company %s: provider unavailable: %s", domain, reason)
    return ApplicationError(
        f"enrichment provider unavailable for {domain}: {reason}", type="EnrichmentUnavailable"
    )


def _profile_from_body(domain: str, raw: bytes) -> CompanyProfile:
    try:
        body: Any = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise _malformed(domain, "the body is not a JSON object")
    if not isinstance(body.get("name"), str) or not body["name"].strip():
        raise _malformed(domain, "it has no company 'name'")
    for field in _PROFILE_TEXT_FIELDS:
        if body.get(field) is not None and not isinstance(body[field], str):
            raise _malformed(domain, f"'{field}' is not a string")
    employees = body.get("employees")
    if employees is not None and (
        isinstance(employees, bool) or not isinstance(employees, int) or employees < 0
    ):
        raise _malformed(domain, "'employees' is not a non-negative integer")
    values = {field: body.get(field) for field in _PROFILE_TEXT_FIELDS}
    return CompanyProfile(
        domain=domain,
        name=values["name"],
        industry=values["industry"],
        employees=employees,
        size_band=values["size_band"],
        country=values["country"],
        complete=employees is not None and all(v is not None for v in values.values()),
    )


def _malformed(domain: str, reason: str) -> ApplicationError:
    activity.logger.error("enrich_company %s: malformed provider answer: %s", domain, reason)
    return ApplicationError(
        f"provider answered 200 for {domain} but {reason}",
        type="EnrichmentRejected",
        non_retryable=True,
    )
