"""The dashboard's "Delete now" on a rule in ``pending_deletion``: the same use case as the API's force-delete route,
recorded in the audit list under the signed-in admin's name and shown under "Recent admin actions"; in a real
browser (Debian's Chromium, headless) against a real ``flareport api`` process, and in-process for the refusal."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
import redis.asyncio as aioredis
from playwright.async_api import Browser, Dialog, expect

from flareport_common.keys import Keys
from flareport_common.messages.base import utcnow
from flareport_common.messages.intents import IntentMessage, RuleForceDeleted
from flareport_common.readmodel import RuleRecord
from fptest.api_helpers import stream_messages

from .conftest import CHROMIUM, PASSWORD, Ui, put_rule


def rules() -> list[RuleRecord]:
    later = utcnow() + timedelta(minutes=9)
    return [
        RuleRecord(key="old.example.com/api", hostname="old.example.com", path="/api", service="http://old:80",
                   agent_id="ag-one", container_name="old", status="pending_deletion", delete_at=later),
        RuleRecord(key="live.example.com", hostname="live.example.com", service="http://live:80", agent_id="ag-one",
                   container_name="live", status="active"),
    ]  # fmt: skip


async def test_delete_now_is_offered_only_for_pending_deletions_and_refused_otherwise(ui: Ui) -> None:
    for rule in rules():
        await ui.put_rule(rule)
    await ui.logged_in()
    page = await ui.html("/ui/")
    assert page.count('action="/ui/rules/force-delete"') == 1, "only the rule in pending_deletion has the button"
    assert 'name="hostname" value="old.example.com"><input type="hidden" name="path" value="/api">' in page

    # A forged form for the active rule: the API's refusal is the notice, nothing is sent or recorded.
    form = {"csrf": ui.csrf, "hostname": "live.example.com", "path": ""}
    await ui.client.post("/ui/rules/force-delete", data=form, allow_redirects=False)
    assert "rule live.example.com is active, not pending_deletion" in await ui.html("/ui/")
    assert await stream_messages(ui.redis, ui.keys.intents, IntentMessage) == []
    assert await ui.redis.llen(ui.keys.admin_audit) == 0
    assert "Recent admin actions" not in await ui.html("/ui/")


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)")
async def test_delete_now_in_a_real_browser(api_url: str, browser: Browser, redis: aioredis.Redis, keys: Keys) -> None:
    for rule in rules():
        await put_rule(redis, keys, rule)
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    confirmations: list[str] = []

    async def confirm(dialog: Dialog) -> None:
        confirmations.append(dialog.message)
        await dialog.accept()

    page.on("dialog", confirm)
    await page.goto(api_url + "/ui/")
    await page.fill("input[name=username]", "admin")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")

    row = page.locator("tr", has_text="old.example.com/api")
    await expect(row).to_contain_text("pending deletion")
    await expect(page.locator("tr", has_text="live.example.com").locator("button")).to_have_count(0)
    await row.locator("button", has_text="Delete now").click()
    await expect(page.locator(".flash")).to_contain_text("Rule old.example.com/api is deleted now")
    assert confirmations == ["Delete old.example.com/api now, without waiting for its grace period?"]
    audit = page.locator("table.audit tr", has_text="old.example.com/api")
    await expect(audit).to_contain_text("ui:admin")
    await expect(audit).to_contain_text("rule force deleted")

    [intent] = await stream_messages(redis, keys.intents, IntentMessage)
    assert isinstance(intent, RuleForceDeleted)
    assert (intent.hostname, intent.path, intent.requested_by) == ("old.example.com", "/api", "ui:admin")
