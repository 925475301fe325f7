"""The access groups page: the admin chooses the id labels reference, the system groups are shown read-only, and
the admin API's refusals are shown as the notice; in-process and in a real browser (Debian's Chromium, headless)
against a real ``flareport api`` process."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
import redis.asyncio as aioredis
from playwright.async_api import Browser, expect

from flareport_common.keys import Keys
from flareport_common.messages.intents import AccessGroupUpserted, IntentMessage
from fptest.api_helpers import MASTER, stream_messages

from .conftest import CHROMIUM, PASSWORD, Ui

ADMIN = {"Authorization": f"Bearer {MASTER}"}
SYSTEM = ("public-default-bypass", "authenticated-default")


async def groups(ui: Ui) -> dict[str, Any]:
    listed = await (await ui.client.get("/api/v1/access-groups", headers=ADMIN)).json()
    return {g["group_id"]: g for g in listed["groups"]}


async def intents(redis: aioredis.Redis, keys: Keys) -> list[Any]:
    return await stream_messages(redis, keys.intents, IntentMessage)


async def test_system_groups_are_shown_read_only_with_their_meaning(ui: Ui) -> None:
    await ui.logged_in()
    page = await ui.html("/ui/access-groups")
    for group_id in SYSTEM:
        assert f"<code>{group_id}</code>" in page
        assert f'name="group_id" value="{group_id}"' not in page, "no delete (or edit) form for a system group"
        assert f"?edit={group_id}" not in page
    assert page.count('<span class="badge">system</span>') == 2
    assert "One-time PIN" in page and "account owner&#39;s email" in page
    # Not editable through a forged edit link either: the form stays an "add" form.
    assert "Add an access group" in await ui.html("/ui/access-groups?edit=public-default-bypass")


async def test_the_admin_chooses_the_id_and_sees_the_apis_refusals(ui: Ui) -> None:
    await ui.logged_in()
    saved = await ui.post("/ui/access-groups", new_group_id="admin-users", name="Admins", include="a@example.com")
    assert saved.status == 302
    page = await ui.html("/ui/access-groups")
    assert "saved as admin-users" in page and "access.group=admin-users" in page
    assert (await groups(ui))["admin-users"]["include"] == [{"email": {"email": "a@example.com"}}]
    assert 'name="group_id" value="admin-users"' in page, "an admin group can be deleted"

    # Left empty, the id comes from the name.
    await ui.post("/ui/access-groups", new_group_id="", name="On Call", include="@example.com")
    assert "on-call" in await groups(ui)

    refusals = [
        ({"new_group_id": "Admin Users", "name": "x", "include": "b@example.com"}, "group_id &#39;Admin Users&#39;"),
        ({"new_group_id": "admin-users", "name": "x", "include": "b@example.com"}, "already exists"),
        ({"new_group_id": "public-default-bypass", "name": "x", "include": "b@example.com"}, "is a system group"),
        ({"new_group_id": "empty", "name": "x", "include": ""}, "include needs at least one Access rule"),
        ({"group_id": "authenticated-default", "name": "x", "include": "b@example.com"}, "is a system group"),
    ]
    for fields, notice in refusals:
        await ui.post("/ui/access-groups", **fields)
        assert notice in await ui.html("/ui/access-groups"), (fields, notice)
    for group_id in SYSTEM:
        await ui.post("/ui/access-groups/delete", group_id=group_id)
        page = await ui.html("/ui/access-groups")
        assert f"access group &#39;{group_id}&#39; is a system group" in page
    assert set(await groups(ui)) == {*SYSTEM, "admin-users", "on-call"}
    assert (await groups(ui))["admin-users"]["name"] == "Admins", "the refused create changed nothing"
    sent = [(type(i), i.group_id) for i in await intents(ui.redis, ui.keys)]
    assert sent == [(AccessGroupUpserted, "admin-users"), (AccessGroupUpserted, "on-call")]


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)")
async def test_creating_a_group_with_a_chosen_id_in_a_real_browser(
    api_url: str, browser: Browser, redis: aioredis.Redis, keys: Keys
) -> None:
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    page.on("dialog", lambda dialog: dialog.accept())
    await page.goto(api_url + "/ui/access-groups")
    await page.fill("input[name=username]", "admin")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.locator("h1")).to_have_text("Access groups")

    system_row = page.locator("tr", has_text="public-default-bypass")
    await expect(system_row).to_contain_text("system")
    await expect(system_row).to_contain_text("built in, read-only")
    await expect(system_row.locator("button")).to_have_count(0)
    await expect(page.locator("tr", has_text="authenticated-default").locator("button")).to_have_count(0)

    await page.fill("input[name=name]", "Admins")
    await page.fill("input[name=new_group_id]", "admin-users")
    await page.fill("input[name=include]", "alice@example.com, @example.org")
    await page.click("text=Save access group")
    await expect(page.locator(".flash")).to_contain_text("saved as admin-users")
    row = page.locator("tr", has_text="admin-users")
    await expect(row).to_contain_text("alice@example.com")
    await expect(row.locator("button", has_text="Delete")).to_have_count(1)

    # The same id again: the API's refusal is the notice, and nothing else is stored.
    await page.fill("input[name=name]", "Others")
    await page.fill("input[name=new_group_id]", "admin-users")
    await page.fill("input[name=include]", "mallory@example.com")
    await page.click("text=Save access group")
    await expect(page.locator(".flash")).to_contain_text("access group 'admin-users' already exists")
    await expect(page.locator("body")).not_to_contain_text("mallory@example.com")

    sent = [(type(i), i.group_id, i.include) for i in await intents(redis, keys)]
    assert sent == [
        (
            AccessGroupUpserted,
            "admin-users",
            ({"email": {"email": "alice@example.com"}}, {"email_domain": {"domain": "example.org"}}),
        )
    ]
    assert re.search(r"/ui/access-groups$", page.url)
