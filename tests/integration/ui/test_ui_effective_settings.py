"""The settings page shows this API process's effective configuration with its secrets masked, in a real browser
(Debian's Chromium, headless) against a real ``flareport api`` process."""

from __future__ import annotations

import os

import pytest
from playwright.async_api import Browser, expect

from fptest.api_helpers import MASTER

from .conftest import CHROMIUM, PASSWORD


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)")
async def test_the_settings_page_lists_the_configuration_with_secrets_masked(
    api_url: str, browser: Browser, prefix: str
) -> None:
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    await page.goto(api_url + "/ui/settings")
    await page.fill("input[name=username]", "admin")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    table = page.locator("#effective-settings")
    await expect(table.locator("tr", has_text="master_api_key")).to_contain_text("set (hidden)")
    await expect(table.locator("tr", has_text="admin_password_hash")).to_contain_text("not set")
    await expect(table.locator("tr", has_text="common.key_prefix")).to_contain_text(prefix)
    await expect(table).to_contain_text("docs/configuration.md")
    for secret in (MASTER, PASSWORD):
        assert secret not in await page.content(), "no secret on the page until the master key is asked for"
