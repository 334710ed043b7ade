"""Authentication and authorization of API requests.

Every route but ``/healthz`` needs credentials, sent as
``Authorization: Bearer <token>`` or ``X-Api-Key: <key>``. A token is either a
crmflow API key (``crm_...``; see ``crm.platform.principals``) or, when an identity
provider is configured (``CRMFLOW_JWT_*``), a JWT it signed, whose ``sub`` is
the principal and whose ``roles``, ``staff_id`` and ``tenant`` claims give
the rest. Missing or invalid credentials: 401; a principal without the role a
route needs: 403. Both are problem+json.

Keys from the database are remembered for ``KEY_CACHE_SECONDS`` so a request
does not cost a database round trip; a revoked key stops working within that
time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated

import jwt
from fastapi import Depends, Request
from sqlmodel import select

from api.problems import Problem
from crm.platform.logs import bind_principal
from crm.platform.principals import TENANT_PATTERN, ApiKeyRecord, Principal, key_id_of, matches
from crm.platform.settings import Settings
from crm.store.db import Database
from crm.store.models import ApiKey

KEY_CACHE_SECONDS = 30.0
_AUTHENTICATE = 'Bearer realm="crmflow"'


class Authenticator:
    """Turns a presented token into a Principal, or None when it is not valid."""

    def __init__(
        self, settings: Settings, database: Database, file_keys: dict[str, ApiKeyRecord]
    ) -> None:
        """``file_keys``: the keys of ``CRMFLOW_API_KEYS_FILE``, already validated."""
        self._file_keys = file_keys
        self._database = database
        self._settings = settings
        self._cache: dict[str, tuple[ApiKeyRecord | None, float]] = {}

    async def verify(self, token: str) -> Principal | None:
        key_id = key_id_of(token)
        if key_id is not None:
            record = await self._record(key_id)
            return record.principal_of() if record and matches(record, token) else None
        if self._settings.jwt_key:
            return self._verify_jwt(token)
        return None

    async def key_is_live(self, key_id: str) -> bool:
        """Whether API key ``key_id`` exists and is not revoked (as of ``KEY_CACHE_SECONDS``
        ago at most)."""
        return await self._record(key_id) is not None

    async def _record(self, key_id: str) -> ApiKeyRecord | None:
        if key_id in self._file_keys:
            return self._file_keys[key_id]
        cached = self._cache.get(key_id)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        statement = select(ApiKey).where(ApiKey.key_id == key_id, ApiKey.revoked_at == None)  # noqa: E711
        row = await self._database.run(lambda session: session.exec(statement).first(), write=False)
        record = None
        if row is not None:
            record = ApiKeyRecord(
                key_id=row.key_id,
                key_sha256=row.key_sha256,
                principal=row.principal,
                roles=tuple(row.roles),
                staff_id=row.staff_id,
                tenant=row.tenant,
            )
        self._cache[key_id] = (record, now + KEY_CACHE_SECONDS)
        return record

    def _verify_jwt(self, token: str) -> Principal | None:
        settings = self._settings
        assert settings.jwt_key is not None
        try:
            claims = jwt.decode(
                token,
                settings.jwt_key,
                algorithms=[settings.jwt_algorithm],
                audience=settings.jwt_audience,
                issuer=settings.jwt_issuer,
                options={"require": ["exp", "sub"]},
            )
        except jwt.PyJWTError:
            return None
        roles = claims.get("roles", [])
        tenant = claims.get("tenant")
        if not isinstance(roles, list):
            return None
        if tenant is not None and not (
            isinstance(tenant, str) and re.fullmatch(TENANT_PATTERN, tenant)
        ):
            return None
        return Principal(
            id=str(claims["sub"]),
            roles=frozenset(str(role) for role in roles),
            staff_id=claims.get("staff_id"),
            tenant=tenant,
        )


def token_expiry(token: str) -> datetime | None:
    """When a JWT that was verified expires (its ``exp``); None for anything else."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    expiry = claims.get("exp")
    return datetime.fromtimestamp(expiry, UTC) if isinstance(expiry, int | float) else None


def presented_token(request: Request) -> str | None:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.headers.get("x-api-key") or None


async def current_principal(request: Request) -> Principal:
    """The authenticated caller; 401 problem when credentials are missing or invalid."""
    return await _authenticate(request)


async def _authenticate(request: Request) -> Principal:
    token = presented_token(request)
    if token is None:
        raise Problem(
            401,
            "unauthenticated",
            "Authentication required",
            "send an API key as 'Authorization: Bearer <key>' or 'X-Api-Key: <key>'",
            headers={"WWW-Authenticate": _AUTHENTICATE},
        )
    authenticator: Authenticator = request.app.state.authenticator
    principal = await authenticator.verify(token)
    if principal is None:
        raise Problem(
            401,
            "invalid-credentials",
            "Invalid credentials",
            "the API key or token is unknown, revoked or expired",
            headers={"WWW-Authenticate": f'{_AUTHENTICATE}, error="invalid_token"'},
        )
    bind_principal(principal.id)
    return principal


def requires(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting principals with any of ``roles``; 403 problem otherwise."""

    async def check(
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> Principal:
        if not principal.has_any(*roles):
            raise _forbidden(principal, roles)
        return principal

    return check


def requires_staff_or(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting staff members (principals with a ``staff_id``) and principals
    with any of ``roles``; 403 problem otherwise."""

    async def check(
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> Principal:
        if principal.staff_id is None and not principal.has_any(*roles):
            raise _forbidden(principal, ("a staff member's key", *roles))
        return principal

    return check


def _forbidden(principal: Principal, roles: tuple[str, ...]) -> Problem:
    return Problem(
        403,
        "forbidden",
        "Not allowed",
        f"this needs the role {' or '.join(roles)}; "
        f"{principal.id} has {', '.join(sorted(principal.roles)) or 'none'}",
    )


Authenticated = Annotated[Principal, Depends(current_principal)]
Service = Annotated[Principal, Depends(requires("service"))]
Support = Annotated[Principal, Depends(requires("support"))]
ServiceOrSupport = Annotated[Principal, Depends(requires("service", "support"))]
Approver = Annotated[Principal, Depends(requires("approver"))]
ApproverOrSupport = Annotated[Principal, Depends(requires("approver", "support"))]
Admin = Annotated[Principal, Depends(requires("admin"))]
AdminOrSupport = Annotated[Principal, Depends(requires("admin", "support"))]
StaffMember = Annotated[Principal, Depends(requires_staff_or())]
StaffOrSupport = Annotated[Principal, Depends(requires_staff_or("support"))]
StaffServiceOrSupport = Annotated[Principal, Depends(requires_staff_or("service", "support"))]


class StartRateLimiter:
    """A token bucket per principal for the process-start endpoints; 429 when empty."""

    def __init__(self, rate_per_second: float, burst: int) -> None:
        self._rate = rate_per_second
        self._burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, principal: Principal) -> None:
        """Take one start from ``principal``'s bucket (no await: atomic on the event loop)."""
        now = time.monotonic()
        tokens, since = self._buckets.get(principal.id, (float(self._burst), now))
        tokens = min(self._burst, tokens + (now - since) * self._rate)
        if tokens < 1:
            wait = max(1, round((1 - tokens) / self._rate + 0.5))
            self._buckets[principal.id] = (tokens, now)
            raise Problem(
                429,
                "rate-limited",
                "Too many starts",
                f"{principal.id} may start {self._rate:g} processes/s (burst {self._burst})",
                headers={"Retry-After": str(wait)},
            )
        self._buckets[principal.id] = (tokens - 1, now)


async def start_allowed(request: Request) -> Principal:
    """A ``service`` principal within its start rate (one dependency: the start path is hot)."""
    principal = await _authenticate(request)
    if not principal.has_any("service"):
        raise _forbidden(principal, ("service",))
    limiter: StartRateLimiter = request.app.state.start_limiter
    limiter.take(principal)
    return principal


Starter = Annotated[Principal, Depends(start_allowed)]
