"""How the console keeps its users and their forms safe.

Sign-in exchanges an API key (or a JWT the API accepts) for a session cookie:
HttpOnly, SameSite=Strict, scoped to ``/console``, Secure when the request
came over https. Every form carries the session's CSRF token and every POST
is refused without it; the sign-in form, which has no session yet, is
protected by a double-submit cookie instead. Every console response carries
a Content-Security-Policy that admits only crmflow's own scripts, styles and
images, and no page is framed, cached or sent with a referrer.
"""

from __future__ import annotations

import secrets
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import Depends, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import Authenticator
from api.deps import DatabaseDep
from crm.platform.principals import Principal
from crm.store.console_sessions import SignedIn, close_session, session_of

SESSION_COOKIE = "crmflow_session"
SIGN_IN_COOKIE = "crmflow_sign_in"
CONSOLE_PATH = "/console"
#: The roles that may use the console's pages besides "My work" (any staff member's).
CONSOLE_ROLES = ("support", "admin")

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; connect-src 'self'"
)
_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


class SignInRequired(Exception):
    """The page needs a session and the request has none: the user is sent to sign in."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class ConsoleRefused(Exception):
    """The signed-in user may not do this (a role, a missing or wrong CSRF token)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ConsoleHeaders:
    """Pure ASGI middleware adding the console's security headers to its responses."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not (
            path == CONSOLE_PATH or path.startswith(CONSOLE_PATH + "/")
        ):
            await self._app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name for name, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    header for header in _HEADERS if header[0] not in present
                ]
            await send(message)

        await self._app(scope, receive, with_headers)


def is_secure(request: Request) -> bool:
    """Whether the request reached the API over https (directly or through a proxy)."""
    return request.url.scheme == "https"


async def read_form(request: Request) -> dict[str, str]:
    """The fields of a URL-encoded form body, the first value of each."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return {name: values[0] for name, values in parse_qs(body).items()}


async def signed_in(request: Request, database: DatabaseDep) -> SignedIn:
    """The request's live session; raises SignInRequired when there is none, or when the
    API key it was signed in with has been revoked (the session ends)."""
    token = request.cookies.get(SESSION_COOKIE)
    found = await session_of(database, token) if token else None
    if found is not None and found.key_id is not None:
        authenticator: Authenticator = request.app.state.authenticator
        if not await authenticator.key_is_live(found.key_id):
            await close_session(database, token or "")
            found = None
    if found is None:
        raise SignInRequired(request.url.path)
    return found


SessionDep = Annotated[SignedIn, Depends(signed_in)]


def require_role(principal: Principal, *roles: str) -> None:
    """Raise ConsoleRefused 403 unless ``principal`` has one of ``roles``."""
    if not principal.has_any(*roles):
        raise ConsoleRefused(
            403,
            f"This page needs the role {' or '.join(roles)}; "
            f"{principal.id} has {', '.join(sorted(principal.roles)) or 'none'}.",
        )


def check_csrf(session: SignedIn, form: dict[str, str]) -> None:
    """Raise ConsoleRefused 403 unless the form carries the session's CSRF token."""
    if not secrets.compare_digest(form.get("csrf_token", ""), session.csrf_token):
        raise ConsoleRefused(
            403, "The form's security token is missing or stale: reload the page and try again."
        )


def safe_next(path: str | None) -> str:
    """Where to go after signing in: a console path, never another site."""
    if path and path.startswith(CONSOLE_PATH) and not path.startswith("//") and "\\" not in path:
        return path
    return CONSOLE_PATH
