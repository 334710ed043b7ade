"""Serving the console: its pages, its security headers and how it refuses.

``install_console(app)`` adds the pages under ``/console``, the security
headers, and the handlers that send a visitor without a session to sign in
and show a refusal, and any problem met on a console page, as a page rather than as
problem+json.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from api.console.inbox import router as inbox_router
from api.console.mail import router as mail_router
from api.console.pages import router
from api.console.rendering import page
from api.console.reports import router as reports_router
from api.console.security import CONSOLE_PATH, ConsoleHeaders, ConsoleRefused, SignInRequired
from api.console.webhooks import router as webhooks_router
from api.problems import Problem

_TITLES = {401: "Sign in again", 403: "Not allowed", 404: "Not found", 422: "Check the form"}


def install_console(app: FastAPI) -> None:
    """Serve the console under ``/console`` on ``app``."""
    app.include_router(router)
    app.include_router(reports_router)
    app.include_router(mail_router)
    app.include_router(inbox_router)
    app.include_router(webhooks_router)
    app.add_middleware(ConsoleHeaders)

    @app.exception_handler(SignInRequired)
    async def sign_in_first(request: Request, exc: SignInRequired) -> Response:
        target = f"{CONSOLE_PATH}/sign-in?{urlencode({'next': exc.next_path})}"
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(ConsoleRefused)
    async def refused(request: Request, exc: ConsoleRefused) -> Response:
        return _refused_page(exc.status, exc.message)

    app.state.problem_page = _problem_page


def _problem_page(request: Request, problem: Problem) -> Response | None:
    """A problem met on a console page (a path not valid, a run gone, Temporal away) as a
    page of the console; None elsewhere (the API answers problem+json)."""
    if request.url.path != CONSOLE_PATH and not request.url.path.startswith(f"{CONSOLE_PATH}/"):
        return None
    # a page's address that does not hold is not a form to check
    title = "Check the address" if problem.status == 422 and request.method == "GET" else None
    return _refused_page(problem.status, problem.detail or problem.title, problem.headers, title)


def _refused_page(
    status: int, message: str, headers: dict[str, str] | None = None, title: str | None = None
) -> Response:
    shown = page(
        "refused.html",
        status_code=status,
        title=title or _TITLES.get(status, "Refused" if status < 500 else "Something went wrong"),
        message=message,
    )
    shown.headers.update(headers or {})
    return shown
