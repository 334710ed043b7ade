"""One-click unsubscribe from a real received email, end to end on the time-skipping server.

The production worker sends through the real SMTP sink into a real SQLite
database; the API is served over real HTTP on the same database, and the
worker's public URL is the API's, so the link in a received message is the
one a mail provider would POST to.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import httpx
import pytest
from sqlmodel import col, select
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from crm.automations.validation import parse_definition
from crm.platform.temporal import time_skipping_server
from crm.store.models import AuditEntry, EmailSuppression
from devstack.mailsink import StoredMessage
from tests.conftest import eventually
from tests.support.automations import record_event, start_run
from tests.support.lead import inbox, lead_input, start_lead, step_of, zone_at_local_hour
from tests.support.servers import run_asgi_server
from tests.support.stack import Stack


@pytest.fixture(scope="module")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A server for this module: every run here ends, so its clock stays free."""
    async with time_skipping_server() as env:
        yield env


@pytest.fixture
def api_url(idle_stack: Stack) -> Iterator[str]:
    """The API over real HTTP on this test's database (the links need no Temporal)."""
    with run_asgi_server(create_app(idle_stack.settings)) as base_url:
        yield base_url


@pytest.fixture
async def stack(idle_stack: Stack, api_url: str) -> AsyncIterator[Stack]:
    """The production worker, its links pointing at the API above."""
    async with idle_stack.worker(public_url=api_url):
        yield idle_stack


async def audit_steps(stack: Stack, process_id: str) -> list[str]:
    query = select(AuditEntry).where(AuditEntry.process_id == process_id)
    rows = await stack.database.all(query.order_by(col(AuditEntry.id)))
    return [row.step for row in rows]


def automation(address_field: str = "email") -> dict[str, object]:
    return {
        "id": "csat-and-receipt",
        "name": "Ask for feedback, then confirm the ticket is closed",
        "object": "ticket",
        "fields": {"name": "string", address_field: "string"},
        "trigger": {"types": ["updated"]},
        "steps": [
            {
                "id": "ask_feedback",
                "email": {
                    "to": {"field": address_field},
                    "subject": "How did we do, {{ record.name }}?",
                    "body": "Hi {{ record.name }},\n\nTell us how we did: just reply.\n",
                },
            },
            {
                "id": "closed_receipt",
                "email": {
                    "to": {"field": address_field},
                    "subject": "Your ticket is closed",
                    "body": "Hi {{ record.name }},\n\nYour ticket is closed.\n",
                    "category": "transactional",
                },
            },
        ],
    }


async def test_one_click_unsubscribe_holds_back_marketing_mail_but_not_transactional_mail(
    stack: Stack, api_url: str, time_skipping_env: WorkflowEnvironment
) -> None:
    zone = zone_at_local_hour(await time_skipping_env.get_current_time(), 10)
    lead = lead_input(stack.policy, timezone=zone, source="webinar")  # medium: follow-ups
    handle = await start_lead(stack.client, stack.task_queue, lead)
    first = (await eventually(lambda: _inbox(stack, lead.email, handle.id), bool))[0]
    assert step_of(first) == "email_first_touch"
    assert first.header("X-Crmflow-Class") == "marketing"
    assert first.header("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"
    assert first.html is not None and "Unsubscribe" in first.html
    link = re.fullmatch(r"<([^>]+)>", first.header("List-Unsubscribe") or "")
    assert link is not None and link.group(1).startswith(f"{api_url}/email/unsubscribe/")

    async with httpx.AsyncClient(timeout=10) as browser:
        shown = await browser.get(link.group(1))
        assert shown.status_code == 200 and "Unsubscribe" in shown.text
        assert "frame-ancestors 'none'" in shown.headers["content-security-policy"]
        one_click = await browser.post(
            link.group(1),
            content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert one_click.status_code == 200, one_click.text
        forged = await browser.post(link.group(1)[:-3] + "AAA")
        assert forged.status_code == 404

    result = await handle.result()  # fourteen days pass; each follow-up is held back
    assert result.outcome == "unresponsive"
    assert [step_of(m) for m in await _inbox(stack, lead.email, handle.id)] == ["email_first_touch"]
    steps = await audit_steps(stack, handle.id)
    assert "email_unsubscribed" in steps
    assert steps.count("email_suppressed:lead_follow_up") == 3

    definition = parse_definition(automation(), stack.policy)
    event = record_event(
        definition,
        "t-991",
        "updated",
        {"name": "Lena", "email": lead.email.upper()},
        at=datetime.now(UTC),
    )
    run = await start_run(stack.client, stack.task_queue, definition, event)
    await run.result()
    received = await _inbox(stack, lead.email, run.id)
    assert [m.subject for m in received] == ["Your ticket is closed"]
    assert received[0].header("X-Crmflow-Class") == "transactional"
    assert received[0].header("List-Unsubscribe") is None
    assert "email_suppressed:csat-and-receipt.ask_feedback" in await audit_steps(stack, run.id)
    rows = await stack.database.all(select(EmailSuppression))
    assert [(r.address, r.category, r.reason) for r in rows] == [
        (lead.email.lower(), "marketing", "unsubscribed")
    ]


async def _inbox(stack: Stack, address: str, process_id: str) -> list[StoredMessage]:
    return inbox(stack.maildir, address, process_id)
