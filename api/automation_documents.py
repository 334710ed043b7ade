"""Automation documents in HTTP: how a definition is read from a request body (JSON, or
YAML with ``Content-Type: application/yaml``) and how its JSON Schema is published in the
OpenAPI document, where the definition routes' bodies refer to it."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request

from api.problems import Problem, documented_problem, invalid_document
from crm.automations.validation import (
    DefinitionError,
    definition_schema,
    parse_definition,
    parse_document_text,
)
from crm.domain.automation import AutomationDefinition
from crm.policy import Policy

#: The media types a definition may be sent as, and how each is read.
DOCUMENT_TYPES = {
    "application/json": "application/json",
    "application/yaml": "application/yaml",
    "application/x-yaml": "application/yaml",
    "text/yaml": "application/yaml",
}
#: The request body of the routes that take a definition, as the OpenAPI document shows it.
DOCUMENT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/AutomationDocument"}},
            # the same document, written in YAML
            "application/yaml": {"schema": {"$ref": "#/components/schemas/AutomationDocument"}},
        },
    }
}
#: Their answer to a body of another media type.
UNSUPPORTED: dict[int | str, dict[str, Any]] = {
    415: documented_problem("The body is neither JSON nor YAML")
}


def document_automation_schema(app: FastAPI) -> None:
    """Put the definition's JSON Schema in the app's OpenAPI components (``AutomationDocument``,
    its parts as ``Automation<Part>``), where the definition routes' bodies refer to it."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        schema = original()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        if "AutomationDocument" not in components:
            document = definition_schema()
            parts = document.pop("$defs", {})
            components["AutomationDocument"] = _components_refs(document)
            for name, part in parts.items():
                components[f"Automation{name}"] = _components_refs(part)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _components_refs(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {
            key: (
                value.replace("#/$defs/", "#/components/schemas/Automation")
                if key == "$ref" and isinstance(value, str)
                else _components_refs(value)
            )
            for key, value in schema.items()
        }
    if isinstance(schema, list):
        return [_components_refs(item) for item in schema]
    return schema


async def read_definition(
    request: Request, policy: Policy, allowed_hosts: list[str]
) -> tuple[dict[str, Any], AutomationDefinition]:
    """The body's document and the definition it describes; Problem 415 or 422 (an ``http``
    step's address inside the network that ``allowed_hosts`` does not allow included)."""
    media_type = request.headers.get("content-type", "application/json").partition(";")[0]
    reads_as = DOCUMENT_TYPES.get(media_type.strip().lower())
    if reads_as is None:
        raise Problem(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            f"send the definition as {' or '.join(DOCUMENT_TYPES)}, not {media_type!r}",
        )
    try:
        text = (await request.body()).decode()
    except UnicodeDecodeError:
        raise invalid_document([("", "the body is not UTF-8 text")]) from None
    try:
        document = parse_document_text(text, reads_as)
        return document, parse_definition(document, policy, allowed_hosts=allowed_hosts)
    except DefinitionError as err:
        raise invalid_document([(e.pointer, e.message) for e in err.errors]) from None
