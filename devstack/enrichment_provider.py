"""A local company-enrichment provider that speaks HTTP like a hosted one.

The local dev stack and the tests run it as a real HTTP server, so the
enrichment activity is exercised over the network exactly as in production:
status codes, ``application/problem+json`` bodies, ``Retry-After`` on 429,
bearer or ``X-Api-Key`` authentication.

``GET /v1/companies/{domain}`` answers with a profile derived from a SHA-256
hash of the normalised domain, so the same domain yields the same company in
every process and on every run. It has no data, and answers 404, for:

* free-mail providers (``gmail.com``, ``outlook.com``, ... in
  ``FREE_MAIL_DOMAINS``) and any of their subdomains, because an address there
  says nothing about the contact's employer;
* reserved names (RFC 2606 and RFC 6761): the TLDs ``.test``, ``.invalid``,
  ``.example`` and ``.localhost``, and ``example.com``, ``example.net`` and
  ``example.org`` with their subdomains.

A domain that is not a syntactically valid host name (after lowercasing and
IDNA encoding) answers 400. Requests are limited per client by a token bucket:
the client is the API key when one is sent, else the peer's host. ``/healthz``
is neither authenticated nor rate limited.
"""

import contextlib
import hashlib
import hmac
import math
import re
import time
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_CONTENT_TYPE = "application/problem+json"

FREE_MAIL_DOMAINS = frozenset(
    {
        "aol.com",
        "gmail.com",
        "gmx.at",
        "gmx.de",
        "gmx.net",
        "googlemail.com",
        "hotmail.com",
        "icloud.com",
        "live.com",
        "mac.com",
        "mail.com",
        "mail.ru",
        "me.com",
        "msn.com",
        "outlook.com",
        "pm.me",
        "proton.me",
        "protonmail.com",
        "web.de",
        "yahoo.com",
        "yandex.ru",
        "zoho.com",
    }
)
RESERVED_TLDS = frozenset({"test", "invalid", "example", "localhost"})
RESERVED_DOMAINS = frozenset({"example.com", "example.net", "example.org"})

INDUSTRIES = (
    "Software",
    "Financial Services",
    "Healthcare",
    "Manufacturing",
    "Retail",
    "Logistics",
    "Education",
    "Media",
    "Telecommunications",
    "Energy",
    "Professional Services",
    "Real Estate",
    "Hospitality",
    "Biotechnology",
)
COUNTRIES = (
    "US",
    "GB",
    "DE",
    "FR",
    "NL",
    "SE",
    "ES",
    "IT",
    "CA",
    "AU",
    "JP",
    "IN",
    "BR",
    "CH",
    "IE",
    "PL",
    "DK",
    "SG",
)
# (band, lowest, highest, weight): small companies are far more common.
SIZE_BANDS = (
    ("1-10", 1, 10, 30),
    ("11-50", 11, 50, 28),
    ("51-200", 51, 200, 20),
    ("201-1000", 201, 1000, 12),
    ("1001-5000", 1001, 5000, 7),
    ("5000+", 5001, 60000, 3),
)
# Second-level labels under which companies register (acme.co.uk, acme.com.au).
_PUBLIC_SECOND_LEVELS = frozenset({"co", "com", "net", "org", "ac", "gov", "ltd", "plc"})

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class InvalidDomainError(ValueError):
    """A string that is not a syntactically valid DNS host name."""


def normalize_domain(raw: str) -> str:
    """Return ``raw`` as a lowercase ASCII (IDNA) host name without a trailing dot.

    Raises ``InvalidDomainError`` when the result is not a host name of at
    least two labels of letters, digits and inner hyphens (at most 63 each,
    253 in all) under a non-numeric TLD; IP addresses and email addresses are
    therefore rejected.
    """
    candidate = raw.strip().lower().removesuffix(".")
    try:
        ascii_domain = candidate.encode("idna").decode("ascii")
    except UnicodeError as error:
        raise InvalidDomainError(f"not a valid domain: {raw!r}") from error
    labels = ascii_domain.split(".")
    if (
        len(ascii_domain) > 253
        or len(labels) < 2
        or not all(_LABEL.match(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise InvalidDomainError(f"not a valid domain: {raw!r}")
    return ascii_domain


def has_company_data(domain: str) -> bool:
    """Whether the provider knows a company at the normalised ``domain``.

    False for free-mail providers and reserved names (see the module
    docstring), including their subdomains; True for every other domain.
    """
    labels = domain.split(".")
    if labels[-1] in RESERVED_TLDS:
        return False
    parents = {".".join(labels[i:]) for i in range(len(labels) - 1)}
    return not parents & (FREE_MAIL_DOMAINS | RESERVED_DOMAINS)


def company_profile(domain: str) -> dict[str, Any]:
    """The deterministic profile of the normalised ``domain`` as a JSON object.

    Every field is derived from the SHA-256 digest of the domain, except the
    name (the registrable label, title-cased: ``acme-corp.io`` gives
    ``"Acme Corp"``) and, for country-code TLDs in ``COUNTRIES``, the country.
    """
    digest = hashlib.sha256(domain.encode("ascii")).digest()
    labels = domain.split(".")
    tld = labels[-1]

    band, lowest, highest, _ = _pick_size_band(int.from_bytes(digest[0:2], "big"))
    employees = lowest + int.from_bytes(digest[2:6], "big") % (highest - lowest + 1)
    country_from_tld = "GB" if tld == "uk" else tld.upper()
    country = (
        country_from_tld
        if country_from_tld in COUNTRIES
        else COUNTRIES[int.from_bytes(digest[6:8], "big") % len(COUNTRIES)]
    )
    return {
        "domain": domain,
        "name": _company_name(labels),
        "industry": INDUSTRIES[int.from_bytes(digest[8:10], "big") % len(INDUSTRIES)],
        "employees": employees,
        "size_band": band,
        "country": country,
    }


def _pick_size_band(draw: int) -> tuple[str, int, int, int]:
    total_weight = sum(weight for *_, weight in SIZE_BANDS)
    point = draw % total_weight
    for size_band in SIZE_BANDS:
        point -= size_band[3]
        if point < 0:
            return size_band
    return SIZE_BANDS[-1]


def _company_name(labels: list[str]) -> str:
    registrable = labels[-2]
    if len(labels) >= 3 and registrable in _PUBLIC_SECOND_LEVELS:
        registrable = labels[-3]
    if registrable.startswith("xn--"):
        with contextlib.suppress(UnicodeError):
            registrable = registrable.encode("ascii").decode("idna")
    return " ".join(part.capitalize() for part in registrable.split("-") if part)


class TokenBucketLimiter:
    """Token buckets per client: ``burst`` capacity, refilled at ``rate_per_second``.

    Not thread-safe; the provider calls it from its single event loop only.
    """

    # Beyond this many clients, buckets that have refilled are forgotten: a full
    # bucket behaves exactly like a new one.
    _PRUNE_ABOVE = 10_000

    def __init__(
        self,
        rate_per_second: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Start with no buckets; raises ``ValueError`` for a rate <= 0 or a burst < 1."""
        if rate_per_second <= 0:
            raise ValueError(f"rate_per_second must be positive, got {rate_per_second}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.rate_per_second = rate_per_second
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, updated_at)

    def acquire(self, client: str) -> int | None:
        """Take one token from ``client``'s bucket.

        Returns None when a token was taken, else the whole number of seconds
        (rounded up, at least 1) until the bucket holds a token again.
        """
        now = self._clock()
        tokens, updated_at = self._buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - updated_at) * self.rate_per_second)
        if tokens >= 1.0:
            self._buckets[client] = (tokens - 1.0, now)
            self._prune(now)
            return None
        self._buckets[client] = (tokens, now)
        return max(1, math.ceil((1.0 - tokens) / self.rate_per_second))

    def _prune(self, now: float) -> None:
        if len(self._buckets) <= self._PRUNE_ABOVE:
            return
        self._buckets = {
            client: (tokens, updated_at)
            for client, (tokens, updated_at) in self._buckets.items()
            if tokens + (now - updated_at) * self.rate_per_second < self.burst
        }


class Problem(Exception):
    """An RFC 9457 problem; raising it from a route answers ``application/problem+json``."""

    def __init__(
        self,
        status: int,
        type: str,
        title: str,
        detail: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Describe a problem with a stable ``type`` URI and a human-readable ``detail``."""
        super().__init__(detail)
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.headers = headers

    def response(self) -> JSONResponse:
        """The problem as an HTTP response with its status and headers."""
        return JSONResponse(
            {"type": self.type, "title": self.title, "status": self.status, "detail": self.detail},
            status_code=self.status,
            headers=self.headers,
            media_type=PROBLEM_CONTENT_TYPE,
        )


def create_provider_app(
    *,
    rate_per_second: float = 5.0,
    burst: int = 10,
    api_key: str | None = None,
) -> FastAPI:
    """Build the provider's ASGI app with its own rate-limit state.

    With ``api_key`` set, company lookups need ``Authorization: Bearer <key>``
    or ``X-Api-Key: <key>`` and otherwise answer 401. Raises ``ValueError``
    when ``rate_per_second`` is not positive or ``burst`` is below 1.
    """
    limiter = TokenBucketLimiter(rate_per_second, burst)
    app = FastAPI(title="crmflow local enrichment provider", docs_url=None, redoc_url=None)

    @app.exception_handler(Problem)
    async def problem_handler(_request: Request, problem: Problem) -> JSONResponse:
        return problem.response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error_handler(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        return Problem(
            error.status_code, "about:blank", str(error.detail), str(error.detail), error.headers
        ).response()

    @app.exception_handler(RequestValidationError)
    async def validation_error_handler(
        _request: Request, error: RequestValidationError
    ) -> JSONResponse:
        return Problem(400, "/problems/invalid-request", "Invalid request", str(error)).response()

    def authenticated_client(request: Request) -> str:
        """The rate-limit identity of the request, after checking its API key."""
        sent_key = _sent_api_key(request)
        if api_key is not None and (
            sent_key is None or not hmac.compare_digest(sent_key.encode(), api_key.encode())
        ):
            raise Problem(
                401,
                "/problems/unauthorized",
                "Unauthorized",
                "send the API key as 'Authorization: Bearer <key>' or 'X-Api-Key: <key>'",
                {"WWW-Authenticate": "Bearer"},
            )
        if sent_key is not None:
            return f"key:{hashlib.sha256(sent_key.encode()).hexdigest()}"
        return f"host:{request.client.host if request.client else 'unknown'}"

    def rate_limited_client(client: Annotated[str, Depends(authenticated_client)]) -> str:
        retry_after = limiter.acquire(client)
        if retry_after is not None:
            raise Problem(
                429,
                "/problems/rate-limited",
                "Too many requests",
                f"rate limit of {rate_per_second:g}/s (burst {burst}) exceeded; "
                f"retry in {retry_after} s",
                {"Retry-After": str(retry_after)},
            )
        return client

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/companies/{domain}", dependencies=[Depends(rate_limited_client)])
    async def get_company(domain: str) -> JSONResponse:
        try:
            normalized = normalize_domain(domain)
        except InvalidDomainError as error:
            raise Problem(400, "/problems/invalid-domain", "Invalid domain", str(error)) from None
        if not has_company_data(normalized):
            raise Problem(
                404,
                "/problems/company-not-found",
                "Company not found",
                f"no company data for {normalized}",
            )
        return JSONResponse(company_profile(normalized))

    return app


def _sent_api_key(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.headers.get("x-api-key") or None


def serve(
    host: str,
    port: int,
    *,
    rate_per_second: float,
    burst: int,
    api_key: str | None,
) -> None:
    """Run the provider with uvicorn on ``host:port`` until interrupted (blocking).

    Raises ``ValueError`` for an invalid rate or burst; uvicorn exits the
    process when the address cannot be bound.
    """
    app = create_provider_app(rate_per_second=rate_per_second, burst=burst, api_key=api_key)
    uvicorn.run(app, host=host, port=port)
