"""``/v1/reports``: the catalogue, a report as JSON and CSV, its 422s and roles, and
outcomes of real runs reaching the reports under their tenant."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import select

from crm.store.db import Database
from crm.store.models import ProcessOutcome, SlaOutcome
from tests.api.conftest import KeyedClient
from tests.api.test_onboardings import new_customer
from tests.api.test_tickets import new_ticket
from tests.conftest import eventually
from tests.db.test_reports import MONDAY, emit_all, event, store_tickets, ticket

MARCH = {"start": "2026-03-02", "end": "2026-03-16"}


async def seed(database: Database) -> None:
    await emit_all(
        database,
        event("renewal.renewed", MONDAY, tenant="a", annual_value=1000, plan="growth"),
        event("renewal.lapsed", MONDAY, tenant="a", annual_value=250, plan="starter"),
        event("renewal.lapsed", MONDAY, annual_value=99, plan="starter"),
    )
    await store_tickets(database, ticket(MONDAY, tenant="a"), ticket(MONDAY, tenant="b"))


async def test_the_catalogue_lists_each_report_with_its_dimensions(as_key: KeyedClient) -> None:
    answer = await as_key("support").get("/v1/reports")

    assert answer.status_code == 200, answer.text
    reports = {r["name"]: r for r in answer.json()["reports"]}
    assert list(reports) == ["sla", "onboarding", "renewals", "leads", "automations"]
    assert reports["sla"]["dimensions"] == ["priority", "tier", "assignee"]
    assert reports["renewals"]["path"] == "/v1/reports/renewals"


async def test_a_report_shows_the_callers_tenant_its_own_outcomes(
    as_key: KeyedClient, database: Database
) -> None:
    await seed(database)

    tenant_a = await as_key("tenant-a").get("/v1/reports/renewals", params=MARCH)
    by_plan = await as_key("tenant-a").get(
        "/v1/reports/renewals", params={**MARCH, "by": "plan", "period": "month"}
    )
    no_tenant = await as_key("support").get("/v1/reports/renewals", params=MARCH)
    sla_b = await as_key("tenant-b").get("/v1/reports/sla", params=MARCH)

    assert tenant_a.status_code == 200, tenant_a.text
    table = tenant_a.json()
    assert [c["key"] for c in table["columns"][:4]] == ["period", "due", "value_due", "renewed"]
    assert [f["key"] for f in table["outlook"]] == ["due_next_90_days", "value_due_next_90_days"]
    assert [row["period"] for row in table["rows"]] == ["2026-03-02", "2026-03-09"]
    assert (table["totals"]["value_renewed"], table["totals"]["value_lapsed"]) == (1000.0, 250.0)
    assert [(r["period"], r["plan"], r["lapsed"]) for r in by_plan.json()["rows"]] == [
        ("2026-03-01", "growth", 0),
        ("2026-03-01", "starter", 1),
    ]
    assert no_tenant.json()["totals"]["value_lapsed"] == 99.0
    assert no_tenant.json()["totals"]["renewed"] == 0
    assert sla_b.json()["totals"]["tickets"] == 1


async def test_a_report_comes_as_csv_for_accept_or_format(
    as_key: KeyedClient, database: Database
) -> None:
    await seed(database)
    caller = as_key("tenant-a")

    accepted = await caller.get(
        "/v1/reports/renewals", params=MARCH, headers={"Accept": "text/csv"}
    )
    asked = await caller.get("/v1/reports/renewals", params={**MARCH, "format": "csv"})

    assert accepted.status_code == 200, accepted.text
    assert accepted.headers["content-type"].startswith("text/csv")
    assert accepted.headers["content-disposition"] == (
        'attachment; filename="renewals-2026-03-02-2026-03-16-week.csv"'
    )
    lines = list(csv.reader(io.StringIO(accepted.text)))
    assert lines[0][:4] == ["Period", "Due", "Annual value due", "Renewed"]
    assert [line[0] for line in lines[1:]] == ["2026-03-02", "2026-03-09", "total"]
    assert asked.text == accepted.text


async def test_a_bad_range_or_dimension_is_a_422_on_its_field_and_an_unknown_report_a_404(
    as_key: KeyedClient,
) -> None:
    caller = as_key("support")

    backwards = await caller.get(
        "/v1/reports/sla", params={"start": "2026-03-02", "end": "2026-03-01"}
    )
    too_long = await caller.get(
        "/v1/reports/sla", params={"start": "2020-01-01", "end": "2026-01-01"}
    )
    wrong_by = await caller.get("/v1/reports/sla", params={"by": "plan"})
    unknown = await caller.get("/v1/reports/pipeline")

    for answer, field in ((backwards, "end"), (too_long, "end"), (wrong_by, "by")):
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["errors"][0]["loc"] == ["query", field]
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"


async def test_a_range_ending_after_the_last_day_a_report_can_count_is_a_422_on_end(
    as_key: KeyedClient,
) -> None:
    caller = as_key("support")
    year_end = {"start": "9999-12-01", "end": "9999-12-31"}

    weekly = await caller.get("/v1/reports/automations", params=year_end)
    monthly = await caller.get("/v1/reports/automations", params={**year_end, "period": "month"})
    last = await caller.get(
        "/v1/reports/automations", params={"start": "9999-11-01", "end": "9999-12-01"}
    )

    for answer in (weekly, monthly):
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["errors"][0]["loc"] == ["query", "end"]
        assert answer.json()["detail"] == "end: at most 9999-12-01"
    assert last.status_code == 200, last.text
    assert last.json()["rows"][-1]["period"] == "9999-11-29"


async def test_only_support_and_admin_read_reports(as_key: KeyedClient) -> None:
    statuses = {
        role: (await as_key(role).get("/v1/reports/leads")).status_code
        for role in ("service", "approver", "support", "admin")
    }

    assert statuses == {"service": 403, "approver": 403, "support": 200, "admin": 200}


def _this_week() -> dict[str, Any]:
    today = datetime.now(UTC).date()
    return {"start": (today - timedelta(days=7)).isoformat(), "period": "month"}


async def test_an_onboarding_cancelled_through_the_api_is_in_the_onboarding_report(
    as_key: KeyedClient, database: Database
) -> None:
    caller = as_key("tenant-a")
    started = await caller.post("/v1/onboardings", json=new_customer(plan="growth"))
    process_id = started.json()["process_id"]

    cancelled = await caller.post(f"/v1/processes/{process_id}/cancel", json={"reason": "churn"})
    assert cancelled.status_code == 202, cancelled.text

    async def report() -> dict[str, Any]:
        answer = await caller.get("/v1/reports/onboarding", params={**_this_week(), "by": "plan"})
        assert answer.status_code == 200, answer.text
        table: dict[str, Any] = answer.json()
        return table

    table = await eventually(report, lambda table: table["totals"]["cancelled"] == 1)
    assert [(r["plan"], r["cancelled"]) for r in table["rows"]] == [("growth", 1)]
    facts = await database.all(
        select(ProcessOutcome).where(ProcessOutcome.process_id == process_id)
    )
    assert [(f.tenant, f.outcome, f.plan) for f in facts] == [("a", "cancelled", "growth")]
    assert facts[0].started_at is not None  # read from Temporal: when the run began
    other = await as_key("tenant-b").get("/v1/reports/onboarding", params=_this_week())
    assert other.json()["totals"]["cancelled"] == 0


async def test_a_cancelled_ticket_is_in_its_tenants_sla_report(
    as_key: KeyedClient, database: Database
) -> None:
    caller = as_key("tenant-a")
    started = await caller.post("/v1/tickets", json=new_ticket(priority="low", tier="growth"))
    assert started.status_code == 201, started.text
    process_id = started.json()["process_id"]

    await caller.post(f"/v1/processes/{process_id}/cancel", json={"reason": "duplicate"})

    async def sla() -> dict[str, Any]:
        answer = await caller.get("/v1/reports/sla", params={**_this_week(), "by": "priority"})
        table: dict[str, Any] = answer.json()
        return table

    table = await eventually(sla, lambda table: table["totals"]["tickets"] == 1)
    assert [(r["priority"], r["tickets"]) for r in table["rows"]] == [("low", 1)]
    stored = await database.all(select(SlaOutcome).where(SlaOutcome.process_id == process_id))
    assert [outcome.tenant for outcome in stored] == ["a"]
    no_tenant = await as_key("support").get("/v1/reports/sla", params=_this_week())
    assert no_tenant.json()["totals"]["tickets"] == 0
