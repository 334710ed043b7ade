"""The console in a real browser: Playwright driving Debian's Chromium.

``scripts/test`` installs Chromium from Debian; Playwright's own browser
download cannot work here, so the browser is launched from its path. One
browser serves the test session; each test gets a fresh context (its own
cookies) against its own API, worker and database. Every page a test looks
at is kept as a screenshot under ``.test-artifacts/console/``.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests.api.conftest import api_keys, api_settings, api_url, as_key  # noqa: F401

ARTIFACTS = Path(__file__).resolve().parents[2] / ".test-artifacts" / "console"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("Debian's chromium is not installed: scripts/test installs it")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield launched
        await launched.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    made = await browser.new_context(viewport={"width": 1280, "height": 900})
    made.set_default_timeout(15_000)
    yield made
    await made.close()


@pytest.fixture
async def tab(context: BrowserContext) -> Page:
    return await context.new_page()


SignIn = Callable[[Page, str], Awaitable[None]]


@pytest.fixture
def sign_in(api_url: str, api_keys: dict[str, str]) -> SignIn:  # noqa: F811
    """``await sign_in(page, key_name)``: sign in through the form with a test key."""

    async def go(page: Page, key_name: str) -> None:
        await page.goto(f"{api_url}/console/sign-in")
        await page.fill("#key", api_keys[key_name])
        await page.click("button[type=submit]")
        await page.wait_for_url(re.compile(r".*/console/(?!sign-in).*"))

    return go


async def snapshot(page: Page, name: str) -> None:
    """Keep a screenshot of the whole page as a test artefact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.fixture
async def browser_phone(browser: Browser) -> AsyncIterator[Page]:
    """A page in a phone-sized context (390 x 844, touch)."""
    made = await browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    made.set_default_timeout(15_000)
    yield await made.new_page()
    await made.close()
