"""Schemathesis hooks: the three start rules a JSON Schema cannot state, for valid cases only.

The OpenAPI document states every other rule the API applies (enums from the
policy, patterns, bounds), so schemathesis' positive-data check holds the API
to it. Three depend on the clock or on the CRM records: a renewal's date must
be in the future, a renewal needs a contact when the customer has no record,
and a ticket cannot have been opened in the future. The API refuses those
with a 422 naming the field (tests/api prove it); here a case generated as
valid is made to meet them, so the check still fails on any other refusal.
Cases generated as invalid are left as they are.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import schemathesis
from schemathesis import Case, HookContext


def _instant(value: Any) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@schemathesis.hook
def map_case(context: HookContext, case: Case[Any]) -> Case[Any]:
    body = case.body
    if case.meta is None or not case.meta.generation.mode.is_positive or not isinstance(body, dict):
        return case
    now = datetime.now(UTC)
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
    return case
