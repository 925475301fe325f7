"""The rule override page: an admin overrides a container rule's service, origin options and Access over its labels
and reverts it to the labels; the same use cases (and refusals) as the API; in-process and in a real browser
(Debian's Chromium, headless) against a real ``flareport api`` process."""

from __future__ import annotations

import html
import os
import tempfile
from pathlib import Path

import msgspec
import pytest
import redis.asyncio as aioredis
from playwright.async_api import Browser, Dialog, expect

from flareport_api.schemas import AuditEntry
from flareport_common.keys import Keys
from flareport_common.messages.intents import IntentMessage, RuleOverrideCleared, RuleOverrideSet
from flareport_common.messages.rules import AccessSpec, OriginOptions, RuleOverride
from flareport_common.readmodel import RuleRecord
from fptest.api_helpers import stream_messages

from .conftest import CHROMIUM, PASSWORD, Ui, put_rule

# The documentation's screenshot is rewritten only on request (as in test_ui_browser).
SHOTS = (
    Path(__file__).resolve().parents[3] / "docs" / "img"
    if os.environ.get("FLAREPORT_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "flareport-screenshots"
)
CONTAINER = RuleRecord(key="app.example.com/api", hostname="app.example.com", path="/api", service="http://app:80",
                       agent_id="ag-one", container_name="app", status="active")  # fmt: skip
MANUAL = RuleRecord(key="wiki.example.com", hostname="wiki.example.com", service="http://wiki:80", source="manual",
                    manual_rule_id="mr_1", status="active")  # fmt: skip
PAGE = "/ui/rules/override?key=app.example.com%2Fapi"


async def test_only_container_rules_can_be_overridden_and_refusals_are_the_apis(ui: Ui) -> None:
    await ui.put_rule(CONTAINER)
    await ui.put_rule(MANUAL)
    await ui.logged_in()
    dashboard = await ui.html("/ui/")
    assert dashboard.count("/ui/rules/override?key=") == 1, "a manual rule is edited on its own page instead"
    manual = await ui.client.get("/ui/rules/override?key=wiki.example.com", allow_redirects=False)
    assert manual.status == 302 and manual.headers["Location"] == "/ui/"

    form = {"csrf": ui.csrf, "key": CONTAINER.key, "back": PAGE, "service": "ftp://nope"}
    await ui.client.post("/ui/rules/override", data=form, allow_redirects=False)
    assert "service" in html.unescape(await ui.html(PAGE)), "the API's refusal naming the field"
    forged = {"csrf": ui.csrf, "key": MANUAL.key, "back": "/ui/", "service": "http://other:80"}
    await ui.client.post("/ui/rules/override", data=forged, allow_redirects=False)
    assert "is the manual rule mr_1: edit it instead" in await ui.html("/ui/")
    assert await stream_messages(ui.redis, ui.keys.intents, IntentMessage) == []


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)")
async def test_override_and_revert_in_a_real_browser(
    api_url: str, browser: Browser, redis: aioredis.Redis, keys: Keys
) -> None:
    await put_rule(redis, keys, CONTAINER)
    page = await browser.new_page(viewport={"width": 1280, "height": 900})

    async def confirm(dialog: Dialog) -> None:
        await dialog.accept()

    page.on("dialog", confirm)
    await page.goto(api_url + "/ui/")
    await page.fill("input[name=username]", "admin")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")

    await page.locator("tr", has_text="app.example.com/api").locator("a", has_text="override").click()
    await expect(page.locator("h1")).to_contain_text("app.example.com/api")
    await expect(page.locator("button", has_text="Revert to labels")).to_have_count(0)
    await page.fill("input[name=service]", "https://app:8443")
    await page.select_option("select[name=no_tls_verify]", "on")
    await page.select_option("select[name=access_mode]", "none")
    await page.click("text=Save override")
    await expect(page.locator(".flash")).to_contain_text("Override of app.example.com/api saved")
    # Back on the same page, the form shows the override.
    await expect(page.locator("input[name=service]")).to_have_value("https://app:8443")
    await expect(page.locator("select[name=no_tls_verify]")).to_have_value("on")
    await expect(page.locator("select[name=access_mode]")).to_have_value("none")
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / "rule-override.png"), full_page=True)

    await page.click("text=Revert to labels")
    await expect(page.locator(".flash")).to_contain_text("app.example.com/api follows its labels again")
    await expect(page.locator("button", has_text="Revert to labels")).to_have_count(0)

    set_, cleared = await stream_messages(redis, keys.intents, IntentMessage)
    assert isinstance(set_, RuleOverrideSet) and isinstance(cleared, RuleOverrideCleared)
    assert (set_.hostname, set_.path) == (cleared.hostname, cleared.path) == ("app.example.com", "/api")
    expected = RuleOverride(service="https://app:8443", origin=OriginOptions(no_tls_verify=True), access=AccessSpec())
    assert set_.override == expected
    audit = [(e.actor, e.action) for e in await recent(redis, keys)]
    assert audit == [("ui:admin", "rule_override_cleared"), ("ui:admin", "rule_override_set")]


async def recent(redis: aioredis.Redis, keys: Keys) -> list[AuditEntry]:
    return [msgspec.json.decode(raw, type=AuditEntry) for raw in await redis.lrange(keys.admin_audit, 0, -1)]
