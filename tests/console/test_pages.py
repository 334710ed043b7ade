"""The console's pages in a real browser: reports on known outcomes, runs, a timeline."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

from playwright.async_api import Page, expect

from crm.store.db import Database
from crm.store.models import Task
from tests.api.conftest import KeyedClient
from tests.api.test_onboardings import new_customer
from tests.conftest import eventually
from tests.console.conftest import SignIn, snapshot
from tests.db.test_reports import MONDAY, emit_all, event, store_tickets, ticket

RANGE = "start=2026-03-02&end=2026-03-15&period=week"


async def cells(page: Page, key: str) -> list[str]:
    """The body cells of column ``key`` of the page's report table, as shown."""
    return [
        text.strip() for text in await page.locator(f"tbody td[data-key={key}]").all_inner_texts()
    ]


async def total(page: Page, key: str) -> str:
    return (await page.locator(f"tfoot td[data-key={key}]").inner_text()).strip()


async def seed_outcomes(database: Database) -> None:
    """Two weeks from Monday 2026-03-02 of each report's outcomes, for tenant ``a``."""
    week_two = MONDAY + timedelta(days=7)
    await store_tickets(
        database,
        ticket(MONDAY, first=("met", 600), resolution=("met", 3600), tenant="a"),
        ticket(MONDAY, first=("met", 1200), resolution=("met", 7200), tenant="a"),
        ticket(
            MONDAY + timedelta(days=1),
            first=("breached", 4000),
            resolution=("breached", 90000),
            escalations=("warning", "breach"),
            tenant="a",
        ),
        ticket(week_two, first=("met", 300), resolution=("met", 5400), tenant="a"),
        ticket(MONDAY, first=("breached", 9000), resolution=("breached", 9000), tenant="b"),
    )
    started = MONDAY - timedelta(days=4)
    await emit_all(
        database,
        event("onboarding.activated", MONDAY, tenant="a", started_at=started, plan="growth"),
        event(
            "onboarding.activated",
            week_two,
            tenant="a",
            started_at=started + timedelta(days=7),
            plan="growth",
        ),
        event("onboarding.stalled", week_two, tenant="a", plan="starter"),
        event("renewal.renewed", MONDAY, tenant="a", annual_value=1200.0, plan="growth"),
        event("renewal.lapsed", week_two, tenant="a", annual_value=800.0, plan="growth"),
        event(
            "renewal.term_started",
            MONDAY,
            tenant="a",
            term=1,
            renewal_date=(datetime.now(UTC) + timedelta(days=30)).isoformat(),
            annual_value=5000.0,
            plan="growth",
        ),
        event("lead.routed", MONDAY, tenant="a", grade="A"),
        event("lead.qualified", week_two, tenant="a", grade="A"),
        event(
            "automation.goal_met",
            MONDAY,
            tenant="a",
            automation_id="deal-won-handoff",
            version=2,
        ),
    )


async def test_each_report_shows_the_seeded_numbers_for_the_users_tenant(
    api_url: str, tab: Page, sign_in: SignIn, database: Database
) -> None:
    await seed_outcomes(database)
    await sign_in(tab, "tenant-a")

    await tab.goto(f"{api_url}/console/reports")
    await tab.get_by_role("link", name="Ticket SLA").click()
    await tab.fill("input[name=start]", "2026-03-02")
    await tab.fill("input[name=end]", "2026-03-15")
    await tab.get_by_role("button", name="Show").click()
    await expect(tab.locator("table.report")).to_be_visible()
    assert await cells(tab, "period") == ["2026-03-02", "2026-03-09"]
    assert await cells(tab, "tickets") == ["3", "1"]  # tenant b's breach is not shown
    assert await cells(tab, "first_response_met") == ["2", "1"]
    assert await cells(tab, "first_response_breached") == ["1", "0"]
    assert await total(tab, "first_response_compliance") == "75.0%"
    assert await total(tab, "escalations_breach") == "1"
    assert await tab.locator("svg.chart rect title").count() >= 2
    await snapshot(tab, "report-sla")

    await tab.goto(f"{api_url}/console/reports/onboarding?{RANGE}")
    assert await total(tab, "activated") == "2"
    assert await total(tab, "stalled") == "1"
    assert await total(tab, "activation_rate") == "66.7%"
    # both took four days; the median is read from log buckets (within 2.2%)
    median = await total(tab, "time_to_activation_median")
    assert re.fullmatch(r"4d( \d+[hm])?|3d 2[2-3]h", median), median
    await snapshot(tab, "report-onboarding")

    await tab.goto(f"{api_url}/console/reports/renewals?{RANGE}&by=plan")
    assert await cells(tab, "plan") == ["growth", "growth"]
    assert await total(tab, "value_renewed") == "1,200.00"
    assert await total(tab, "value_lapsed") == "800.00"
    outlook = tab.locator(".outlook [data-key=value_due_next_90_days] dd")
    assert await outlook.inner_text() == "5,000.00"  # the open term renewing in 30 days
    await snapshot(tab, "report-renewals")

    await tab.goto(f"{api_url}/console/reports/leads?{RANGE}")
    assert await total(tab, "routed") == "1"
    assert await total(tab, "qualified") == "1"
    await snapshot(tab, "report-leads")

    await tab.goto(f"{api_url}/console/reports/automations?{RANGE}&by=automation")
    assert await cells(tab, "automation") == ["deal-won-handoff"]
    assert await total(tab, "goal_met") == "1"
    await snapshot(tab, "report-automations")


async def test_a_report_downloads_as_csv_with_the_same_numbers(
    api_url: str, tab: Page, sign_in: SignIn, database: Database
) -> None:
    await seed_outcomes(database)
    await sign_in(tab, "tenant-a")
    await tab.goto(f"{api_url}/console/reports/sla?{RANGE}")

    async with tab.expect_download() as downloading:
        await tab.get_by_role("link", name="Download CSV").click()
    download = await downloading.value
    text = Path(await download.path()).read_text(encoding="utf-8")  # noqa: ASYNC240

    assert download.suggested_filename == "sla-2026-03-02-2026-03-15.csv"
    header, first, second, totals = text.splitlines()
    assert header.startswith("Period,Tickets,First response met,First response breached")
    assert first.startswith("2026-03-02,3,2,1") and second.startswith("2026-03-09,1,1,0")
    assert totals.startswith("total,4,3,1")


async def test_a_bad_range_is_explained_on_the_page(
    api_url: str, tab: Page, sign_in: SignIn
) -> None:
    await sign_in(tab, "support")

    answer = await tab.goto(f"{api_url}/console/reports/sla?start=2026-03-15&end=2026-03-01")

    assert answer is not None and answer.status == 422
    await expect(tab.get_by_role("alert")).to_have_text(re.compile("ends before it begins"))


async def test_a_range_beyond_the_days_a_report_can_count_is_explained_on_the_page(
    api_url: str, tab: Page, sign_in: SignIn
) -> None:
    await sign_in(tab, "support")
    explained = []
    for query, says in (
        ("start=9999-12-01&end=9999-12-31", "To: a report counts days up to 9999-11-30"),
        ("end=0001-02-01", "From: give the first day"),
    ):
        answer = await tab.goto(f"{api_url}/console/reports/automations?{query}")
        explained.append(answer.status if answer is not None else None)
        await expect(tab.get_by_role("alert")).to_have_text(re.compile(says))

    assert explained == [422, 422]
    last = await tab.goto(
        f"{api_url}/console/reports/automations?start=9999-11-01&end=9999-11-30&period=month"
    )
    assert last is not None and last.status == 200  # the last day a report counts is shown
    await expect(tab.locator("table.report")).to_be_visible()


async def test_runs_filter_by_customer_and_lead_to_the_customers_timeline(
    api_url: str, tab: Page, sign_in: SignIn, as_key: KeyedClient
) -> None:
    caller = as_key("tenant-a")
    mine = new_customer()
    started = await caller.post("/v1/onboardings", json=mine)
    await caller.post("/v1/onboardings", json=new_customer())
    process_id = started.json()["process_id"]
    await eventually(
        lambda: caller.get(f"/v1/processes/{process_id}/audit"),
        lambda answer: any(s["step"].startswith("task:") for s in answer.json()["steps"]),
    )
    await eventually(
        lambda: caller.get("/v1/processes", params={"customer_id": mine["customer_id"]}),
        lambda answer: len(answer.json()["runs"]) == 1,
    )
    await sign_in(tab, "tenant-a")

    await tab.goto(f"{api_url}/console/runs")
    await tab.fill("input[name=customer_id]", mine["customer_id"])
    await tab.get_by_role("button", name="Filter").click()
    rows = tab.locator("table.runs tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text(process_id)
    web_ui = rows.first.get_by_role("link", name="Web UI")
    assert quote(process_id, safe="") in (await web_ui.get_attribute("href") or "")
    await snapshot(tab, "runs-filtered")

    await rows.first.get_by_role("link", name=mine["customer_id"]).click()
    await expect(tab.get_by_role("heading", name=f"Customer {mine['customer_id']}")).to_be_visible()
    steps = await tab.locator("ol.timeline .step").all_inner_texts()
    assert any(step.startswith("task:") for step in steps), steps
    details = await tab.locator("ol.timeline .detail").all_inner_texts()
    assert details and not any(": None" in detail for detail in details), details
    await snapshot(tab, "customer-timeline")


async def test_another_tenants_customer_shows_nothing(
    api_url: str, tab: Page, sign_in: SignIn, as_key: KeyedClient
) -> None:
    theirs = new_customer()
    await as_key("tenant-b").post("/v1/onboardings", json=theirs)
    await sign_in(tab, "tenant-a")

    await tab.goto(f"{api_url}/console/runs?customer_id={theirs['customer_id']}")
    await expect(tab.locator("table.runs tbody td.empty")).to_have_text("No runs match.")
    await tab.goto(f"{api_url}/console/customers/{theirs['customer_id']}")
    await expect(tab.locator("ol.timeline .empty")).to_be_visible()


async def test_pages_fit_a_phone(api_url: str, browser_phone: Page, sign_in: SignIn) -> None:
    await sign_in(browser_phone, "support")
    for path in ("/console/runs", f"/console/reports/sla?{RANGE}", "/console/attention"):
        await browser_phone.goto(f"{api_url}{path}")
        overflow = await browser_phone.evaluate(
            "document.documentElement.scrollWidth - window.innerWidth"
        )
        assert overflow <= 0, f"{path} is {overflow}px wider than the phone"
    await snapshot(browser_phone, "phone-report-sla")


async def test_an_overdue_task_shows_in_attention_and_its_run_can_be_cancelled_there(
    api_url: str, tab: Page, sign_in: SignIn, as_key: KeyedClient, database: Database
) -> None:
    caller = as_key("tenant-a")
    started = await caller.post("/v1/onboardings", json=new_customer())
    process_id = started.json()["process_id"]
    overdue = Task(
        key=f"{process_id}/follow_up",
        process_id=process_id,
        customer_id="c-1",
        assignee_id="csm-ana",
        kind="follow_up",
        title="Call back about the import",
        due_at=datetime.now(UTC) - timedelta(hours=5),
        tenant="a",
    )
    await database.run(lambda session: session.add(overdue))
    await sign_in(tab, "tenant-a")

    await tab.goto(f"{api_url}/console/attention")
    item = tab.locator("ul.attention li", has_text="Call back about the import")
    await expect(item).to_be_visible()
    await snapshot(tab, "attention")
    await item.get_by_role("button", name="Cancel run").click()

    await expect(tab.get_by_role("status")).to_have_text(f"Cancellation of {process_id} requested.")
    await eventually(
        lambda: caller.get(f"/v1/processes/{process_id}"),
        lambda answer: answer.json()["status"] == "cancelled",
    )


async def test_a_report_asked_without_a_range_covers_the_twelve_weeks_up_to_today(
    api_url: str, tab: Page, sign_in: SignIn
) -> None:
    """As the API's default: 84 days, today the last."""
    await sign_in(tab, "tenant-a")
    today = datetime.now(UTC).date()  # read first: the page may be made after midnight
    await tab.goto(f"{api_url}/console/reports/sla")

    assert await tab.input_value("input[name=end]") == today.isoformat()
    assert await tab.input_value("input[name=start]") == (today - timedelta(days=83)).isoformat()
