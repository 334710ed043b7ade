"""Business keys are per tenant: two tenants' customer ``shared-42`` are two runs.

A run of a tenant is ``{process}-{key}@{tenant}``; a principal without a
tenant keeps ``{process}-{key}``. Runs a tenant started before ids named the
tenant keep their old id and are still found by a start, read, signalled
and cancelled by it.
"""

from __future__ import annotations

import uuid

import httpx
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from crm.platform.settings import Settings
from tests.api.conftest import bearer
from tests.conftest import eventually
from tests.support.onboarding import onboarding_input
from workflows.common import CUSTOMER_ID, PROCESS, STAGE
from workflows.onboarding import OnboardingWorkflow


def signup(customer_id: str) -> dict[str, str]:
    return {
        "customer_id": customer_id,
        "company_name": "Acme",
        "contact_name": "Ann Lee",
        "contact_email": f"ann.{uuid.uuid4().hex[:8]}@acme-corp.io",
        "plan": "starter",
    }


async def test_two_tenants_with_the_same_customer_id_get_two_runs_and_neither_sees_the_other(
    api_url: str, api_keys: dict[str, str]
) -> None:
    customer_id = f"shared-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as http:
        acme = await http.post(
            "/v1/onboardings", json=signup(customer_id), headers=bearer(api_keys["tenant-a"])
        )
        globex = await http.post(
            "/v1/onboardings", json=signup(customer_id), headers=bearer(api_keys["tenant-b"])
        )
        untenanted = await http.post(
            "/v1/onboardings", json=signup(customer_id), headers=bearer(api_keys["service"])
        )
        assert (acme.status_code, globex.status_code, untenanted.status_code) == (201, 201, 201)
        assert acme.json()["process_id"] == f"onboarding-{customer_id}@a"
        assert globex.json()["process_id"] == f"onboarding-{customer_id}@b"
        assert untenanted.json()["process_id"] == f"onboarding-{customer_id}"

        again = await http.post(
            "/v1/onboardings", json=signup(customer_id), headers=bearer(api_keys["tenant-a"])
        )
        assert again.status_code == 200
        assert again.json()["run_id"] == acme.json()["run_id"]
        seen_by_globex = await http.get(
            f"/v1/processes/{acme.json()['process_id']}", headers=bearer(api_keys["tenant-b"])
        )
        assert seen_by_globex.status_code == 404
        assert acme.json()["run_id"] not in seen_by_globex.text


async def test_a_tenants_run_from_before_tenant_ids_is_found_read_signalled_and_cancelled(
    api_url: str, api_keys: dict[str, str], dev_client: Client, api_settings: Settings
) -> None:
    customer = onboarding_input()
    old_id = f"onboarding-{customer.customer_id}"
    earlier = await dev_client.start_workflow(
        OnboardingWorkflow.run,
        customer,
        id=old_id,
        task_queue=api_settings.task_queue,
        memo={"tenant": "a"},
        search_attributes=_shown_as_onboarding(customer.customer_id),
    )
    tenant_a = bearer(api_keys["tenant-a"])
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as http:
        found = await http.post(
            "/v1/onboardings", json=signup(customer.customer_id), headers=tenant_a
        )
        assert found.status_code == 200, found.text
        assert found.json()["process_id"] == old_id
        assert found.json()["run_id"] == earlier.first_execution_run_id

        view = await http.get(f"/v1/processes/{old_id}", headers=tenant_a)
        assert view.status_code == 200
        event = await http.post(
            f"/v1/processes/{old_id}/events", json={"type": "first_value"}, headers=tenant_a
        )
        assert event.status_code == 202, event.text

        async def reached() -> list[str]:
            state = (await http.get(f"/v1/processes/{old_id}", headers=tenant_a)).json()["state"]
            return [step["step"] for step in (state or {}).get("steps", [])]

        await eventually(reached, until=lambda steps: "milestone:first_value" in steps)
        cancelled = await http.post(f"/v1/processes/{old_id}/cancel", json={}, headers=tenant_a)
        assert cancelled.status_code == 202
        hidden = await http.get(f"/v1/processes/{old_id}", headers=bearer(api_keys["tenant-b"]))
        assert hidden.status_code == 404


def _shown_as_onboarding(customer_id: str) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(PROCESS, "onboarding"),
            SearchAttributePair(CUSTOMER_ID, customer_id),
            SearchAttributePair(STAGE, "starting"),
        ]
    )
