"""Schemathesis hooks: the rules a JSON Schema cannot state, for valid cases only.

The OpenAPI document states every other rule the API applies (enums from the
policy, patterns, bounds), so schemathesis' positive-data check holds the API
to it. Four depend on the clock or on the CRM records: a renewal's date must
be in the future, a renewal needs a contact when the customer has no record,
a ticket cannot have been opened in the future, and an event cannot have
happened in it. The API refuses those
with a 422 naming the field (tests/api prove it); here a case generated as
valid is made to meet them, so the check still fails on any other refusal.
An automation definition's schema gives its shape; what its CEL and templates
mean, which staff and steps it names, is checked on submit (422 with a
pointer per mistake, tests/unit/test_automation_validation.py), so a
definition generated as valid becomes a shipped example under the generated id.
A webhook URL whose host is an address inside the network is refused on submit
(422 on ``url``, tests/api/test_webhooks.py); a generated one becomes a public
URL. A report's range ends after it starts, by ``LAST_END``, and spans at most
three years (422 on ``end``, tests/api/test_reports.py): a generated one that
does not becomes one that does. A page token is one the API gave, which no generated one is: it
is left out. Cases generated as invalid are left as they are.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import schemathesis
import yaml
from schemathesis import Case, HookContext

from crm.platform.urls import address_problem
from crm.reports import LAST_END


def _instant(value: Any) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


EXAMPLE = yaml.safe_load(
    (Path(__file__).parents[2] / "examples" / "automations" / "deal-won-handoff.yaml").read_text()
)
_AUTOMATION_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def _valid_definition(generated: Any) -> dict[str, Any]:
    """The example definition, under the generated id when that id is one."""
    chosen = generated.get("id") if isinstance(generated, dict) else None
    valid_id = isinstance(chosen, str) and _AUTOMATION_ID.match(chosen)
    return {**EXAMPLE, "id": chosen if valid_id else EXAMPLE["id"]}


def _report_range(query: dict[str, Any]) -> dict[str, Any]:
    """A report's range that ends after it starts and by ``LAST_END``, within three years."""
    try:
        start = datetime.fromisoformat(str(query["start"])).date()
        end = datetime.fromisoformat(str(query["end"])).date()
    except (KeyError, ValueError):
        return {**query, "start": "2026-01-05", "end": "2026-04-06"}
    if end > LAST_END or not timedelta(0) < end - start <= timedelta(days=1000):
        return {**query, "start": "2026-01-05", "end": "2026-04-06"}
    return query


@schemathesis.hook
def map_case(context: HookContext, case: Case[Any]) -> Case[Any]:
    body = case.body
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return case
    if case.query and "page_token" in case.query:
        case.query = {name: value for name, value in case.query.items() if name != "page_token"}
    if case.path.startswith("/v1/reports/"):
        case.query = _report_range(case.query or {})
    if case.method.upper() == "POST" and case.path in (
        "/v1/automations",
        "/v1/automations/validate",
    ):
        case.body = _valid_definition(body)  # sent as JSON or YAML: the same document
        return case
    if not isinstance(body, dict):
        return case
    now = datetime.now(UTC)
    url = body.get("url")
    if case.path.startswith("/v1/webhooks") and isinstance(url, str) and address_problem(url, []):
        body["url"] = "https://hooks.example.com/crmflow"
    if case.method.upper() == "POST" and case.path == "/v1/automations/preview":
        body["definition"] = _valid_definition(body.get("definition"))
    if case.method.upper() == "POST" and case.path == "/v1/renewals":
        renewal_date = _instant(body.get("renewal_date"))
        if renewal_date is None or renewal_date <= now + timedelta(days=1):
            body["renewal_date"] = (now + timedelta(days=400)).isoformat()
        if body.get("contact_email") is None:
            body["contact_email"] = "ann.lee@acme-corp.io"
    if case.method.upper() == "POST" and case.path == "/v1/tickets":
        created_at = _instant(body.get("created_at"))
        if created_at is not None and created_at > now:
            body["created_at"] = now.isoformat()
    if case.method.upper() == "POST" and case.path.endswith("/events"):
        occurred_at = _instant(body.get("occurred_at"))
        if occurred_at is not None and occurred_at > now:
            body["occurred_at"] = now.isoformat()
    return case
