"""RFC 9457 problem details: every error the API returns.

Each problem has a stable ``type`` (``urn:crmflow:problem:<name>``) that
clients can switch on, a short ``title`` and a ``detail`` for humans. Stack
traces never leave the server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from crm.platform.temporal import TemporalUnavailable

PROBLEM_JSON = "application/problem+json"

log = logging.getLogger("crmflow.api")


class Problem(Exception):
    """An error answered as problem+json with ``status`` and a stable ``kind``."""

    def __init__(
        self,
        status: int,
        kind: str,
        title: str,
        detail: str = "",
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.kind = kind
        self.title = title
        self.detail = detail
        self.headers = headers
        self.extra = extra


def invalid_input(field: str, message: str) -> Problem:
    """A 422 for one invalid field, shaped like FastAPI's own validation problems."""
    return Problem(
        422,
        "validation-error",
        "Invalid request",
        f"{field}: {message}",
        errors=[{"loc": ["body", field], "msg": message, "type": "value_error"}],
    )


def invalid_document(problems: list[tuple[str, str]]) -> Problem:
    """A 422 for a document body with ``(JSON pointer, message)`` problems, one error each."""
    errors = [
        {
            "loc": ["body", *_pointer_parts(pointer)],
            "msg": message,
            "type": "value_error",
            "pointer": pointer,
        }
        for pointer, message in problems
    ]
    detail = "; ".join(f"{pointer or '/'}: {message}" for pointer, message in problems)
    return Problem(422, "validation-error", "Invalid request", detail, errors=errors)


def _pointer_parts(pointer: str) -> list[str | int]:
    parts = [part.replace("~1", "/").replace("~0", "~") for part in pointer.split("/")[1:]]
    return [int(part) if part.isdigit() else part for part in parts]


#: How a part of the app with pages of its own shows a problem (``request.app.state.
#: problem_page``, set by the console): a page, or None to answer problem+json.
ProblemPage = Callable[[Request, Problem], Response | None]


def problem_response(request: Request, problem: Problem) -> Response:
    """The problem+json response for ``problem``, or the page the app shows for it."""
    shown: ProblemPage | None = getattr(request.app.state, "problem_page", None)
    page = shown(request, problem) if shown is not None else None
    if page is not None:
        return page
    body: dict[str, Any] = {
        "type": f"urn:crmflow:problem:{problem.kind}",
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": request.url.path,
        **problem.extra,
    }
    return JSONResponse(
        body, status_code=problem.status, media_type=PROBLEM_JSON, headers=problem.headers
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` as problem+json."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> Response:
        return problem_response(request, exc)

    @app.exception_handler(TemporalUnavailable)
    async def _temporal(request: Request, exc: TemporalUnavailable) -> Response:
        problem = Problem(503, "temporal-unavailable", "Temporal is unavailable", str(exc))
        return problem_response(request, problem)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        problem = Problem(422, "validation-error", "Invalid request", detail, errors=errors)
        return problem_response(request, problem)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        kind = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return problem_response(request, Problem(exc.status_code, kind, str(exc.detail)))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        problem = Problem(500, "internal-error", "Internal error", "The error was logged.")
        return problem_response(request, problem)


class FieldError(BaseModel):
    """One invalid field of a 422 problem; ``pointer`` is its JSON pointer in a document body."""

    loc: list[str | int]
    msg: str
    type: str
    pointer: str | None = None


class ProblemDetails(BaseModel):
    """An error, as RFC 9457 problem details (``application/problem+json``)."""

    type: str = Field(examples=["urn:crmflow:problem:validation-error"])
    title: str
    status: int
    detail: str = ""
    instance: str
    errors: list[FieldError] | None = None


def documented_problem(description: str) -> dict[str, Any]:
    """The OpenAPI response of a problem+json answer described by ``description``."""
    return {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}},
    }


#: The error answers every route may give, documented once for the whole API.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: documented_problem("Malformed request"),
    401: documented_problem("Missing or invalid credentials"),
    403: documented_problem("The caller's role does not allow this"),
    404: documented_problem("No such resource"),
    409: documented_problem(
        "The process has ended or does not take the event, the decision was already made, "
        "the business key is another tenant's, the automation's state does not allow it, "
        "or the event id was used for another event"
    ),
    413: documented_problem("Request body too large"),
    422: documented_problem("Invalid input; each invalid field is named"),
    429: documented_problem("Too many starts; retry after the Retry-After header"),
    503: documented_problem("Temporal or the database is unavailable"),
}


def document_problems(app: FastAPI) -> None:
    """Put ProblemDetails in the OpenAPI components so the error responses can refer to it."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(
                ProblemDetails.model_json_schema(ref_template="#/components/schemas/{model}").pop(
                    "$defs", {}
                )
            )
            components["ProblemDetails"] = ProblemDetails.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            components["ProblemDetails"].pop("$defs", None)
            components.pop("HTTPValidationError", None)
            components.pop("ValidationError", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
