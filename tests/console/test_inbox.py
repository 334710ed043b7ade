"""People's work in the console, in a real browser: deciding an approval, completing and
handing over tasks, notifications; refusals shown on the page."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from playwright.async_api import Page, expect

from crm.store.db import Database
from crm.store.models import Task
from devstack.mailsink import read_messages
from tests.api.conftest import KeyedClient
from tests.api.test_onboardings import new_customer
from tests.api.test_renewals_and_approvals import renewal_body
from tests.conftest import eventually
from tests.console.conftest import SignIn, snapshot
from workflows.task_types import pool_assignee


async def kickoff_task(caller: httpx.AsyncClient, process_id: str) -> dict[str, object]:
    tasks = await eventually(
        lambda: caller.get("/v1/tasks", params={"process_id": process_id}),
        lambda answer: len(answer.json()) == 1,
    )
    task: dict[str, object] = tasks.json()[0]
    return task


def staff_key(staff: str) -> str:
    return "approver" if staff == "mgr-hana" else f"approver:{staff}"


async def test_a_csm_completes_the_kickoff_task_and_the_onboarding_hears_it(
    tab: Page, sign_in: SignIn, as_key: KeyedClient
) -> None:
    caller = as_key("caller")
    started = await caller.post("/v1/onboardings", json=new_customer())
    process_id = started.json()["process_id"]
    task = await kickoff_task(caller, process_id)
    await sign_in(tab, staff_key(str(task["assignee_id"])))

    await expect(tab.get_by_role("heading", name="My work")).to_be_visible()
    card = tab.locator(f"li[data-task='{task['id']}']")
    await expect(card).to_contain_text(str(task["title"]))
    await snapshot(tab, "inbox")
    await card.get_by_role("textbox").fill("Call booked for Tuesday")
    await card.get_by_role("button", name="Complete").click()

    await expect(tab.get_by_role("status")).to_have_text("Task completed.")
    await expect(tab.locator(f"li[data-task='{task['id']}']")).to_have_count(0)
    state = await eventually(
        lambda: caller.get(f"/v1/processes/{process_id}"),
        lambda answer: any(
            s["step"] == "task:kickoff:done" for s in answer.json()["state"]["steps"]
        ),
    )
    [done] = [s for s in state.json()["state"]["steps"] if s["step"] == "task:kickoff:done"]
    assert done["detail"] == f"done by {task['assignee_id']}: Call booked for Tuesday"
    audit = (await caller.get(f"/v1/processes/{process_id}/audit")).json()["steps"]
    assert {"step": "task_done:kickoff"}.items() <= next(
        s for s in audit if s["step"] == "task_done:kickoff"
    ).items()


async def test_a_handed_over_task_moves_to_the_colleagues_work_with_a_notification(
    browser_phone: Page, tab: Page, sign_in: SignIn, as_key: KeyedClient
) -> None:
    caller = as_key("caller")
    started = await caller.post("/v1/onboardings", json=new_customer())
    process_id = started.json()["process_id"]
    task = await kickoff_task(caller, process_id)
    assignee = str(task["assignee_id"])
    await sign_in(tab, staff_key(assignee))

    card = tab.locator(f"li[data-task='{task['id']}']")
    options = await card.locator("select[name=to] option").all_inner_texts()
    colleague = next(name for name in options if name.startswith("csm-"))
    await card.locator("select[name=to]").select_option(colleague)
    await card.get_by_role("button", name="Hand over").click()
    await expect(tab.get_by_role("status")).to_have_text("Task handed over.")
    await expect(tab.locator(f"li[data-task='{task['id']}']")).to_have_count(0)

    await sign_in(browser_phone, staff_key(colleague))  # the colleague, on their phone
    await expect(browser_phone.locator(f"li[data-task='{task['id']}']")).to_be_visible()
    note = browser_phone.locator("ul.notifications li.unread", has_text=str(task["title"]))
    await expect(note).to_contain_text(f"{assignee} handed you the task")
    await snapshot(browser_phone, "inbox-phone")
    await note.get_by_role("button", name="Mark read").click()
    await expect(browser_phone.get_by_role("status")).to_have_text("Marked read.")
    await expect(
        browser_phone.locator("ul.notifications li.unread", has_text=str(task["title"]))
    ).to_have_count(0)
    moved = (await caller.get("/v1/tasks", params={"process_id": process_id})).json()[0]
    assert moved["assignee_id"] == colleague
    state = await eventually(
        lambda: caller.get(f"/v1/processes/{process_id}"),
        lambda answer: any(
            s["step"] == "task:kickoff:reassigned" for s in answer.json()["state"]["steps"]
        ),
    )
    assert state.status_code == 200


async def test_a_manager_approves_a_discount_and_the_offer_email_goes_out(
    tab: Page, sign_in: SignIn, as_key: KeyedClient, api_keys: dict[str, str], mail_sink: object
) -> None:
    caller = as_key("caller")
    body = renewal_body(
        renewal_date=(datetime.now(UTC) + timedelta(days=45)).date().isoformat(), owner="csm-ana"
    )
    usage = await caller.post(
        f"/v1/subscriptions/{body['subscription_id']}/usage",
        json={"metric": "seats", "used": 45, "included": 50},
    )
    assert usage.status_code == 201, usage.text
    started = await caller.post("/v1/renewals", json=body)
    process_id = started.json()["process_id"]
    state = await eventually(
        lambda: caller.get(f"/v1/processes/{process_id}"),
        lambda answer: (
            (answer.json().get("state") or {}).get("details", {}).get("upsell")
            == "awaiting_approval"
        ),
        within=20,
    )
    approval_id = state.json()["state"]["details"]["approval_id"]

    await sign_in(tab, "approver")  # mgr-hana, the owner's manager
    card = tab.locator(f"li[data-approval='{approval_id}']")
    await expect(card).to_contain_text("discount")
    await snapshot(tab, "inbox-approval")
    await card.get_by_role("textbox").fill("Worth it for a 3-year customer")
    await card.get_by_role("button", name="Approve").click()
    await expect(tab.get_by_role("status")).to_have_text("Approved.")

    maildir = mail_sink.maildir  # type: ignore[attr-defined]
    offers = await eventually(
        lambda: _async(read_messages(maildir, to=body["contact_email"])),
        lambda mails: any(m.header("X-Crmflow-Step") == "term1_email_upsell_offer" for m in mails),
        within=20,
    )
    assert offers


async def test_the_wrong_approver_is_refused_on_the_page(
    tab: Page, sign_in: SignIn, as_key: KeyedClient, api_url: str
) -> None:
    caller = as_key("caller")
    body = renewal_body(
        renewal_date=(datetime.now(UTC) + timedelta(days=45)).date().isoformat(), owner="csm-ana"
    )
    await caller.post(
        f"/v1/subscriptions/{body['subscription_id']}/usage",
        json={"metric": "seats", "used": 45, "included": 50},
    )
    process_id = (await caller.post("/v1/renewals", json=body)).json()["process_id"]
    state = await eventually(
        lambda: caller.get(f"/v1/processes/{process_id}"),
        lambda answer: (answer.json().get("state") or {}).get("details", {}).get("approval_id"),
        within=20,
    )
    approval_id = state.json()["state"]["details"]["approval_id"]
    await sign_in(tab, "approver:fin-olga")
    token = await tab.locator("form.who input[name=csrf_token]").get_attribute("value")

    await expect(tab.locator(f"li[data-approval='{approval_id}']")).to_have_count(0)
    answer = await tab.request.post(
        f"{api_url}/console/approvals/{approval_id}/decide",
        form={"csrf_token": token or "", "decision": "approve", "comment": "me"},
    )

    assert answer.status == 403
    assert re.search("not the current approver|may decide", await answer.text(), re.I)


async def _async(value: object) -> object:
    return value


async def test_a_pool_task_is_claimed_from_my_work(
    tab: Page, sign_in: SignIn, database: Database
) -> None:
    waiting = Task(
        key=f"lead-l-{uuid.uuid4().hex[:8]}/call",
        process_id="lead-l-claim",
        customer_id="l-claim",
        assignee_id=pool_assignee("csm-smb"),
        kind="call",
        title=f"Call back {uuid.uuid4().hex[:6]}",
        due_at=datetime.now(UTC) + timedelta(hours=4),
    )
    await database.run(lambda session: session.add(waiting))
    await sign_in(tab, staff_key("csm-cleo"))

    card = tab.locator("ul.pool-tasks li", has_text=waiting.title)
    await expect(card).to_be_visible()
    await card.get_by_role("button", name="Claim").click()

    await expect(tab.get_by_role("status")).to_have_text("Task claimed: it is yours.")
    await expect(tab.locator("ul.tasks li", has_text=waiting.title)).to_be_visible()
    await expect(tab.locator("ul.pool-tasks li", has_text=waiting.title)).to_have_count(0)
