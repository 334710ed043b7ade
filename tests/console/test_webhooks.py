"""The console's webhooks pages in a real browser: an admin sees an endpoint disabled by a
410, enables it and sends its failed delivery again, which a real receiver then gets under
the same ``webhook-id``; other tenants and other roles see nothing of it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from playwright.async_api import Page, expect
from temporalio.client import Client

from activities.webhook_delivery import emit_event
from crm.platform.codec import new_codec_key
from crm.platform.settings import Settings
from crm.store.db import Database
from crm.store.webhooks import Emitted
from tests.api.conftest import KeyedClient
from tests.conftest import eventually
from tests.console.conftest import SignIn, snapshot
from tests.support.receivers import Receiver, running_receiver


@pytest.fixture
def api_settings(api_settings: Settings) -> Settings:
    return api_settings.model_copy(
        update={"sealing_keys": new_codec_key("console-1"), "outbound_allowed_hosts": ["127.0.0.1"]}
    )


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    with running_receiver() as running:
        yield running


def lapse(subscription_id: str) -> Emitted:
    """A renewal's lapse, its event id as long as a process run's (step and run id)."""
    return Emitted(
        tenant="a",
        event_id=f"renewal-{subscription_id}/offer_outcome@01a24e38-ac05-797a-8c81-4a2dd3121b97",
        type="renewal.lapsed",
        process_id=f"renewal-{subscription_id}",
        occurred_at=datetime.now(UTC),
        data={"subscription_id": subscription_id, "plan": "pro"},
    )


async def gone_endpoint(
    as_key: KeyedClient,
    receiver: tuple[Receiver, str],
    dev_client: Client,
    database: Database,
    settings: Settings,
) -> str:
    """Tenant a's endpoint, disabled by the 410 its first delivery got; its id."""
    app, base_url = receiver
    admin = as_key("admin-a")
    answer = await admin.post(
        "/v1/webhooks", json={"url": f"{base_url}/billing", "event_types": ["renewal.*"]}
    )
    endpoint_id = str(answer.json()["id"])
    app.planned["/billing"] = [410]
    await emit_event(dev_client, database, settings.task_queue, lapse("sub-7"))

    async def shown() -> dict[str, Any]:
        found: dict[str, Any] = (await admin.get(f"/v1/webhooks/{endpoint_id}")).json()
        return found

    await eventually(shown, lambda endpoint: endpoint["enabled"] is False)
    return endpoint_id


async def test_an_admin_enables_a_gone_endpoint_and_sends_its_failed_delivery_again(
    api_url: str,
    tab: Page,
    sign_in: SignIn,
    as_key: KeyedClient,
    receiver: tuple[Receiver, str],
    dev_client: Client,
    database: Database,
    api_settings: Settings,
) -> None:
    endpoint_id = await gone_endpoint(as_key, receiver, dev_client, database, api_settings)
    app, base_url = receiver
    await sign_in(tab, "admin-a")

    await tab.get_by_role("link", name="Webhooks").click()
    row = tab.locator("table.endpoints tbody tr")
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("disabled")
    await expect(row.locator("td[data-key=failed]")).to_have_text("1")
    await expect(row.locator("td[data-key=pending]")).to_have_text("0")
    await snapshot(tab, "webhooks")

    await tab.get_by_role("link", name=f"{base_url}/billing").click()
    await expect(tab.locator(".endpoint")).to_contain_text("the endpoint answered 410 Gone")
    delivery = tab.locator("table.deliveries tbody tr")
    await expect(delivery).to_have_count(1)
    await expect(delivery).to_contain_text("renewal.lapsed")
    await expect(delivery.locator("td.attempts summary")).to_have_text(
        re.compile(r"1: last 410 in \d+ ms")
    )
    await expect(delivery.get_by_role("button", name="Send again")).to_have_count(0)  # disabled
    await snapshot(tab, "webhook-disabled")

    await tab.get_by_role("button", name="Enable").click()
    await expect(tab.locator(".flash")).to_contain_text("Endpoint enabled")
    await tab.get_by_role("button", name="Send 1 failed again").click()
    await expect(tab.locator(".flash")).to_have_text("1 failed delivery sent again.")

    async def state() -> str:
        await tab.reload()
        return (await tab.locator("table.deliveries tbody tr .status").inner_text()).strip()

    await eventually(state, lambda shown: shown == "delivered")
    await tab.locator("table.deliveries summary").click()
    attempts = tab.locator("table.deliveries td.attempts li")
    await expect(attempts).to_have_count(2)
    await expect(attempts.nth(1)).to_contain_text(": 200, ")
    await snapshot(tab, "webhook-redelivered")
    sideways = await tab.evaluate(
        "(() => { const log = document.querySelector('table.deliveries').parentElement;"
        " return log.scrollWidth - log.clientWidth; })()"
    )
    assert sideways <= 0, "the log fits at 1280 px: a long event id wraps"
    token = await tab.locator("input[name=csrf_token]").first.get_attribute("value")
    too_long = await tab.request.post(
        f"{api_url}/console/webhooks/{endpoint_id}/redeliver",
        form={"csrf_token": token or "", "delivery_id": "1" * 19},
    )
    assert too_long.status == 422 and "not a delivery" in await too_long.text()
    elsewhere = await tab.request.post(
        f"{api_url}/console/webhooks/{endpoint_id}/redeliver",
        form={"csrf_token": token or "", "delivery_id": "999999"},
    )
    assert elsewhere.status == 404 and "no failed delivery 999999 here" in await elsewhere.text()
    first, second = app.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    webhook_id = await tab.locator("table.deliveries tbody tr").get_attribute("data-webhook-id")
    assert webhook_id == first.headers["webhook-id"]
    assert endpoint_id in tab.url


async def test_another_tenant_and_a_support_key_see_nothing_and_a_forged_form_is_refused(
    api_url: str,
    tab: Page,
    sign_in: SignIn,
    as_key: KeyedClient,
    receiver: tuple[Receiver, str],
    dev_client: Client,
    database: Database,
    api_settings: Settings,
) -> None:
    endpoint_id = await gone_endpoint(as_key, receiver, dev_client, database, api_settings)

    await sign_in(tab, "admin-b")
    await tab.goto(f"{api_url}/console/webhooks")
    await expect(tab.locator("table.endpoints tbody")).to_contain_text("No endpoints yet")
    answer = await tab.goto(f"{api_url}/console/webhooks/{endpoint_id}")
    assert answer is not None and answer.status == 404
    await expect(tab.locator("main")).to_contain_text("no webhook endpoint")
    for path, status in (("/webhooks/ep_nope", 422), ("/customers/a'b", 422)):
        answer = await tab.goto(f"{api_url}/console{path}")  # a page, not problem+json
        assert answer is not None and answer.status == status
        assert answer.headers["content-type"].startswith("text/html")
        await expect(tab.get_by_role("heading", name="Check the address")).to_be_visible()
    forged = await tab.request.post(
        f"{api_url}/console/webhooks/{endpoint_id}/enable", form={"csrf_token": "guess"}
    )
    assert forged.status == 403
    await tab.goto(f"{api_url}/console/webhooks")
    token = await tab.locator("input[name=csrf_token]").first.get_attribute("value")
    for action in ("enable", "redeliver"):  # a good token of the other tenant's session
        other = await tab.request.post(
            f"{api_url}/console/webhooks/{endpoint_id}/{action}", form={"csrf_token": token or ""}
        )
        assert other.status == 404, action
    await tab.context.clear_cookies()

    await sign_in(tab, "tenant-a")  # service and support, not admin
    await expect(tab.get_by_role("link", name="Webhooks")).to_have_count(0)
    answer = await tab.goto(f"{api_url}/console/webhooks")
    assert answer is not None and answer.status == 403
    shown = (await as_key("admin-a").get(f"/v1/webhooks/{endpoint_id}")).json()
    assert shown["enabled"] is False  # nothing above changed it
