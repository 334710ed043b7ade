"""Signing in to the console, and what it refuses without a session or a CSRF token."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx
import jwt
import pytest
from playwright.async_api import BrowserContext, Page, expect

from api import auth
from api.auth import token_expiry
from crm.platform.principals import key_id_of
from crm.store.db import Database
from crm.store.keystore import create_key, revoke_key
from tests.console.conftest import SignIn, snapshot


async def test_sign_in_exchanges_a_key_for_a_strict_http_only_session_cookie(
    api_url: str, tab: Page, context: BrowserContext, api_keys: dict[str, str]
) -> None:
    await tab.goto(f"{api_url}/console/reports")
    await expect(tab).to_have_url(re.compile(r"/console/sign-in\?next=%2Fconsole%2Freports$"))
    await snapshot(tab, "sign-in")

    await tab.fill("#key", api_keys["support"])
    async with tab.expect_response(re.compile(r"/console/reports$")) as landed:
        await tab.click("button[type=submit]")
    response = await landed.value

    await expect(tab.get_by_role("heading", name="Reports")).to_be_visible()
    session = next(c for c in await context.cookies() if c["name"] == "crmflow_session")
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"
    assert session["path"] == "/console"
    assert api_keys["support"] not in tab.url
    policy = (await response.all_headers())["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy


async def test_a_wrong_key_is_refused_on_the_form(
    api_url: str, tab: Page, api_keys: dict[str, str]
) -> None:
    await tab.goto(f"{api_url}/console/sign-in")
    await tab.fill("#key", api_keys["support"] + "x")
    await tab.click("button[type=submit]")

    await expect(tab.get_by_role("alert")).to_have_text(re.compile("unknown, revoked or expired"))
    await expect(tab).to_have_url(re.compile(r"/console/sign-in$"))


async def test_a_service_key_cannot_use_the_console(
    api_url: str, tab: Page, api_keys: dict[str, str]
) -> None:
    await tab.goto(f"{api_url}/console/sign-in")
    await tab.fill("#key", api_keys["service"])
    await tab.click("button[type=submit]")

    await expect(tab.get_by_role("alert")).to_have_text(re.compile("needs the role support"))


async def test_pages_and_actions_need_a_session(api_url: str) -> None:
    async with httpx.AsyncClient(base_url=api_url) as anonymous:
        for path in ("/console", "/console/runs", "/console/reports/sla", "/console/attention"):
            answer = await anonymous.get(path)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/console/sign-in?next=")
        cancel = await anonymous.post("/console/processes/onboarding-c-1/cancel")
        assert cancel.status_code == 303
        assert cancel.headers["location"].startswith("/console/sign-in")


async def test_a_post_without_the_sessions_csrf_token_is_refused(
    api_url: str, tab: Page, sign_in: SignIn
) -> None:
    await sign_in(tab, "support")

    forged = await tab.request.post(
        f"{api_url}/console/sign-out", form={"csrf_token": "not-the-token"}
    )
    missing = await tab.request.post(f"{api_url}/console/sign-out", form={})

    assert forged.status == 403 and missing.status == 403
    assert "security token" in await forged.text()
    await tab.goto(f"{api_url}/console/reports")  # still signed in
    await expect(tab.get_by_role("heading", name="Reports")).to_be_visible()


async def test_the_sign_in_form_needs_its_own_token(api_url: str, api_keys: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=api_url) as anonymous:
        answer = await anonymous.post(
            "/console/sign-in", data={"key": api_keys["support"], "csrf_token": "guess"}
        )
    assert answer.status_code == 403
    assert "crmflow_session" not in answer.headers.get("set-cookie", "")


async def test_signing_out_ends_the_session(api_url: str, tab: Page, sign_in: SignIn) -> None:
    await sign_in(tab, "support")
    cookie = next(c for c in await tab.context.cookies() if c["name"] == "crmflow_session")

    await tab.get_by_role("button", name="Sign out").click()
    await expect(tab).to_have_url(re.compile(r"/console/sign-in$"))

    async with httpx.AsyncClient(base_url=api_url) as replay:  # the old cookie is dead
        answer = await replay.get(
            "/console/runs", headers={"cookie": f"crmflow_session={cookie['value']}"}
        )
    assert answer.status_code == 303


async def test_revoking_the_key_ends_its_console_session(
    api_url: str, tab: Page, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "KEY_CACHE_SECONDS", 0.0)  # the API re-reads keys at once
    key = await create_key(database, "support-sam", ("support",))
    await tab.goto(f"{api_url}/console/sign-in")
    await tab.fill("#key", key)
    await tab.click("button[type=submit]")
    await expect(tab.get_by_role("heading", name="Runs")).to_be_visible()

    key_id = key_id_of(key)
    assert key_id is not None
    await revoke_key(database, key_id)
    await tab.goto(f"{api_url}/console/reports")

    await expect(tab).to_have_url(re.compile(r"/console/sign-in\?next="))


def test_a_session_signed_in_with_a_token_ends_when_the_token_does() -> None:
    expiry = datetime(2030, 1, 1, tzinfo=UTC)
    token = jwt.encode({"sub": "ann", "exp": expiry}, "k" * 32, algorithm="HS256")

    assert token_expiry(token) == expiry
    assert token_expiry("crm_abc_def") is None
