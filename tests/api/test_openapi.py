"""The OpenAPI document says what the API accepts: the policy's values are enums.

A client generated from it sends only plans, priorities, tiers, staff ids,
time zones and events the API takes, with each event's data as its process
declares it.
"""

from __future__ import annotations

from typing import Any

import pytest

from api.main import create_app
from crm.platform.settings import Settings
from crm.policy import Policy
from processes import PROCESSES


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return create_app(Settings()).openapi()


def body_schema(spec: dict[str, Any], path: str) -> dict[str, Any]:
    ref = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    return resolve(spec, ref)


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def enum_of(spec: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """The enum of a property, looking through ``anyOf: [enum, null]``."""
    schema = resolve(spec, schema)
    if "enum" in schema:
        return list(schema["enum"])
    if "const" in schema:
        return [schema["const"]]
    return [value for option in schema.get("anyOf", []) for value in enum_of(spec, option)]


def test_start_bodies_list_the_policys_plans_priorities_tiers_and_staff_as_enums(
    spec: dict[str, Any],
) -> None:
    policy = Policy()
    onboarding = body_schema(spec, "/v1/onboardings")["properties"]
    assert enum_of(spec, onboarding["plan"]) == list(policy.onboarding.plans)

    ticket = body_schema(spec, "/v1/tickets")["properties"]
    assert enum_of(spec, ticket["priority"]) == list(policy.sla.priorities)
    assert set(enum_of(spec, ticket["tier"])) >= set(policy.onboarding.plans)
    assert "Europe/Stockholm" in enum_of(spec, ticket["timezone"])

    renewal = body_schema(spec, "/v1/renewals")["properties"]
    assert enum_of(spec, renewal["plan"]) == list(policy.onboarding.plans)
    assert enum_of(spec, renewal["owner"]) == [member.id for member in policy.staff]

    lead = body_schema(spec, "/v1/leads")["properties"]
    assert "America/New_York" in enum_of(spec, lead["timezone"])


def test_the_events_body_is_one_schema_per_event_of_every_registered_process(
    spec: dict[str, Any],
) -> None:
    policy = Policy()
    body = body_schema(spec, "/v1/processes/{process_id}/events")
    assert body["discriminator"]["propertyName"] == "type"
    members = {
        enum_of(spec, resolve(spec, option)["properties"]["type"])[0]: resolve(spec, option)
        for option in body["oneOf"]
    }
    every_event = {event.name for process in PROCESSES for event in process.events(policy)}
    assert set(members) == every_event
    assert {"account_configured", "status_changed", "renewed", "replied"} <= every_event

    status = resolve(spec, members["status_changed"]["properties"]["data"])
    assert enum_of(spec, status["properties"]["status"]) == [
        "open",
        "pending",
        "on_hold",
        "solved",
        "pending_customer",  # the old name of pending, still taken
    ]
    assert status["required"] == ["status"]
    priority = resolve(spec, members["priority_changed"]["properties"]["data"])
    assert enum_of(spec, priority["properties"]["priority"]) == list(policy.sla.priorities)
    renewed = resolve(spec, members["renewed"]["properties"]["data"])
    assert enum_of(spec, renewed["properties"]["plan"]) == list(policy.onboarding.plans)


def test_the_events_route_names_the_events_of_each_process(spec: dict[str, Any]) -> None:
    description = spec["paths"]["/v1/processes/{process_id}/events"]["post"]["description"]
    assert (
        "Support-ticket SLA (`sla-...`): `customer_replied`, `agent_replied`, `status_changed`, "
        "`fields_changed`" in description
    )
    assert "Customer onboarding (`onboarding-...`): `account_configured`, `first_value`" in (
        description
    )


def test_the_codec_endpoints_declare_their_payloads(spec: dict[str, Any]) -> None:
    for path in ("/codec/decode", "/codec/encode"):
        body = body_schema(spec, path)
        assert body["properties"]["payloads"]["type"] == "array"
        assert body["additionalProperties"] is False
