"""The console's page weight: bytes a browser fetches for each page, and how many requests.

Starts a dev server and ``crmflow api`` (SQLite seeded with a year of
outcomes, 50 onboardings started so the runs page has a full page), signs
in through the form as a browser would, and fetches every page and what it
links to, reporting each page's HTML, with the stylesheet, and the bytes
sent (gzip, as a browser asks). Each console page is its HTML plus one
stylesheet: no script, no font, no image (charts are inline SVG).

    .venv/bin/python -m bench.console_weight
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlmodel import Session
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from bench.harness import api_server, crmflow_env, temporal_server
from crm.platform.principals import new_api_key, write_api_keys_file
from crm.store.db import Database
from crm.store.webhooks import Emitted, emit
from workflows.common import CUSTOMER_ID, PROCESS, STAGE

PAGES = (
    "/console/runs",
    "/console/customers/c-bench-0",
    "/console/reports",
    "/console/reports/sla?start={start}&end={end}",
    "/console/reports/onboarding?start={start}&end={end}&period=week&by=plan",
    "/console/reports/renewals?start={start}&end={end}&period=month",
    "/console/attention",
)


async def seed(database_url: str, now: datetime) -> None:
    """A year of onboarding and renewal outcomes, a few a day."""
    database = Database.from_url(database_url)
    await database.create_tables()
    events = []
    for day in range(365):
        at = now - timedelta(days=day)
        for number, (kind, plan) in enumerate(
            [
                ("onboarding.activated", "growth"),
                ("onboarding.stalled", "starter"),
                ("renewal.renewed", "growth"),
            ]
        ):
            process_id = f"bench-{day}-{number}"
            events.append(
                Emitted(
                    tenant=None,
                    event_id=f"{process_id}/outcome",
                    type=kind,
                    process_id=process_id,
                    occurred_at=at,
                    data={"process_id": process_id, "plan": plan, "annual_value": 1200.0},
                    started_at=at - timedelta(days=5),
                )
            )

    def store(session: Session) -> None:
        for event in events:
            emit(session, event)

    await database.run(store)
    await database.dispose()


async def start_runs(address: str, task_queue: str, count: int) -> None:
    """``count`` onboarding-shaped runs nobody works on: the runs page lists them."""
    client = await Client.connect(address)
    for number in range(count):
        await client.start_workflow(
            "OnboardingWorkflow",
            id=f"onboarding-c-bench-{number}",
            task_queue=task_queue,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(PROCESS, "onboarding"),
                    SearchAttributePair(CUSTOMER_ID, f"c-bench-{number}"),
                    SearchAttributePair(STAGE, "awaiting_milestones"),
                ]
            ),
        )


def main() -> None:
    asyncio.run(measure())


async def measure() -> None:
    now = datetime.now(UTC)
    start, end = (now - timedelta(days=365)).date(), now.date()
    with tempfile.TemporaryDirectory() as scratch, temporal_server() as address:
        state = Path(scratch)
        key, record = new_api_key("bench-support", ("support",))
        write_api_keys_file(state / "api-keys.yml", [record])
        task_queue = f"bench-{uuid.uuid4().hex[:6]}"
        env = crmflow_env(address, task_queue, state)
        await seed(env["CRMFLOW_DATABASE_URL"], now)
        await start_runs(address, task_queue, 50)
        with api_server(env) as base_url:
            async with httpx.AsyncClient(base_url=base_url, timeout=30) as browser:
                form = await browser.get("/console/sign-in")
                token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
                assert token is not None
                await browser.post(
                    "/console/sign-in", data={"key": key, "csrf_token": token.group(1)}
                )
                css = await browser.get("/console/static/console.css")
                print(f"{'page':<44} {'HTML':>8} {'+CSS':>8} {'sent':>8} requests")
                for path in PAGES:
                    answer = await browser.get(path.format(start=start, end=end))
                    assert answer.status_code == 200, (path, answer.status_code)
                    html = answer.content
                    whole = len(html) + len(css.content)
                    sent = int(answer.headers.get("content-length", len(html))) + len(css.content)
                    fetched = 1 + len(re.findall(rb'<(?:script|img|link rel="stylesheet")', html))
                    print(
                        f"{path.split('?')[0]:<44} {len(html):>8,} {whole:>8,} {sent:>8,} "
                        f"{fetched:>8}"
                    )


if __name__ == "__main__":
    main()
