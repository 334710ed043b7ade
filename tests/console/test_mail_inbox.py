"""The virtual inbox in a real browser: a message's HTML, sandboxed, its text part and checks."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.async_api import Page, expect

from activities.email import EmailActivities
from activities.mailer import SmtpMailer
from crm.mail.checks import spamassassin_installed
from crm.platform.settings import Settings
from crm.store.db import Database
from devstack.mailsink import MailSink, read_messages
from tests.console.conftest import SignIn, snapshot
from workflows.contracts import EmailRequest, step_key

EVIL = "<script>alert(1)</script>"
PUBLIC_URL = "https://crm.example.com"


@pytest.fixture
def api_settings(api_settings: Settings, mail_sink: MailSink) -> Settings:
    """The API's settings with the test session's SMTP sink as the inbox, behind https."""
    return api_settings.model_copy(
        update={"mail_sink_dir": mail_sink.maildir, "public_url": PUBLIC_URL}
    )


async def send_follow_up(database: Database, mail_sink: MailSink, settings: Settings) -> str:
    """A lead's follow-up (marketing mail) to a fresh address whose name is a script tag."""
    process_id = f"lead-l-{uuid.uuid4().hex[:10]}"
    address = f"lena.{process_id}@acme-corp.io"
    mailer = SmtpMailer(mail_sink.host, mail_sink.port)
    email = EmailActivities(
        database, mailer, sender=settings.mail_from, public_url=settings.public_url
    )
    request = EmailRequest(
        key=step_key(process_id, "email_follow_up_1"),
        process_id=process_id,
        to=address,
        template="lead_follow_up",
        context={"name": EVIL, "company": "Acme", "final": False, "number": 1, "total": 3},
    )
    await email.send_email(request)
    await mailer.aclose()
    return address


async def test_inbox_shows_a_messages_html_sandboxed_its_text_headers_and_checks(
    tab: Page,
    sign_in: SignIn,
    api_url: str,
    api_settings: Settings,
    database: Database,
    mail_sink: MailSink,
) -> None:
    address = await send_follow_up(database, mail_sink, api_settings)
    dialogs: list[str] = []
    tab.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await sign_in(tab, "support")

    await tab.goto(f"{api_url}/console/mail")
    row = tab.locator("tr", has_text=address)
    await expect(row).to_contain_text("marketing")
    await expect(row).to_contain_text("pass")
    await row.get_by_role("link").click()

    await expect(tab.get_by_role("heading", level=1)).to_contain_text(f"Following up, {EVIL}")
    checks = tab.locator("table.checks")
    for name in ("text part", "HTML part", "unsubscribe", "links", "images have alt"):
        await expect(checks.locator("tr", has_text=name)).to_contain_text("pass")
    await expect(checks.locator("tr", has_text="size under 102 KB")).to_contain_text("KB")
    spam = checks.locator("tr", has_text="SpamAssassin")
    if spamassassin_installed():
        await expect(spam).to_contain_text("score")
        await expect(spam.locator("td").nth(1)).to_have_text("pass")
    else:
        await expect(spam).to_contain_text("not installed")

    frame = tab.frame_locator("iframe")
    await expect(frame.locator("body")).to_contain_text(f"Hi {EVIL},")  # shown as text
    await expect(frame.locator("a", has_text="Unsubscribe")).to_have_attribute(
        "href", re.compile(r"^https://crm\.example\.com/email/unsubscribe/\S+$")
    )
    await expect(frame.locator("body")).to_contain_text("Kungsgatan 1")
    await expect(tab.locator("pre.text-part")).to_contain_text("Email preferences:")
    await expect(tab.locator("table.headers")).to_contain_text("List-Unsubscribe-Post")
    await snapshot(tab, "mail-message")
    assert dialogs == []

    framed = await tab.request.get(
        f"{api_url}/console/mail/{read_messages(mail_sink.maildir, to=address)[0].key}/html"
    )
    policy = framed.headers["content-security-policy"]
    assert policy.startswith("sandbox;") and "script-src" not in policy
    assert "frame-ancestors 'self'" in policy


async def test_an_unknown_message_is_not_found_and_the_nav_marks_the_inbox(
    tab: Page, sign_in: SignIn, api_url: str, api_settings: Settings
) -> None:
    await sign_in(tab, "support")
    await tab.goto(f"{api_url}/console/mail/1.nothing-here")
    await expect(tab.locator("main")).to_contain_text("no such message")
    await tab.goto(f"{api_url}/console/mail")
    await expect(tab.locator("nav a[aria-current=page]")).to_have_text("Mail")
