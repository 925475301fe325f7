"""The backup page: a refused upload is the notice (naming the field) and writes nothing, in-process; and in a real
browser (Debian's Chromium, headless) against a real ``flareport api`` process, the downloaded backup restores an
access group and a manual rule deleted since, first as a dry run, then applied."""

from __future__ import annotations

import json
import os
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from playwright.async_api import Browser, expect

from flareport_cli.admin.client import ApiClient
from flareport_common.keys import Keys
from flareport_common.messages.intents import IntentMessage
from fptest.api_helpers import MASTER, stream_messages

from .conftest import CHROMIUM, PASSWORD, Ui

# docs/img/backup.png is written only on request (a test run leaves the work tree unchanged).
SHOTS = (
    Path(__file__).resolve().parents[3] / "docs" / "img"
    if os.environ.get("FLAREPORT_UPDATE_SCREENSHOTS") == "1"
    else None
)


async def upload(ui: Ui, content: bytes, *, apply: bool) -> str:
    data = aiohttp.FormData()
    data.add_field("csrf", ui.csrf)
    data.add_field("file", content, filename="backup.json", content_type="application/json")
    if apply:
        data.add_field("apply", "on")
    response = await ui.client.post("/ui/backup/restore", data=data, allow_redirects=True)
    assert response.status == 200, await response.text()
    return str(await response.text())


async def test_a_refused_upload_is_the_notice_and_writes_nothing(ui: Ui) -> None:
    await ui.logged_in()
    document = {
        "format": "flareport-backup",
        "format_version": 1,
        "created_at": "2026-01-02T03:04:05Z",
        "source_prefix": "old:",
        "access_groups": [{"group_id": "ops", "name": "Ops", "include": [{"everyone": {}}]}],
        "manual_rules": [{"rule_id": "mr_1", "rule": {"hostname": "not a host", "service": "http://a:80"}}],
    }
    page = await upload(ui, json.dumps(document).encode(), apply=True)
    assert "(field: manual_rules[0].rule.hostname); nothing was restored" in page
    assert "The file is not a JSON document" in await upload(ui, b"{nope", apply=True)
    assert "The file is not a valid backup" in await upload(ui, b'{"format": "flareport-backup"}', apply=True)
    assert await stream_messages(ui.redis, ui.keys.intents, IntentMessage) == [], "nothing written"


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)")
async def test_download_then_upload_restores_what_was_deleted(
    api_url: str, browser: Browser, redis: aioredis.Redis, keys: Keys, tmp_path: Path
) -> None:
    client = ApiClient(api_url, MASTER)
    client.post("/api/v1/access-groups", {"group_id": "ops", "name": "Ops", "include": [{"everyone": {}}]})
    rule_id = client.post(
        "/api/v1/manual-rules", {"rule": {"hostname": "wiki.example.com", "service": "http://wiki:80"}}
    ).json()["rule_id"]

    page = await browser.new_page(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    await page.goto(api_url + "/ui/backup")
    await page.fill("input[name=username]", "admin")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.locator("h1")).to_have_text("Backup")
    await expect(page.locator("ul.redo")).to_contain_text("new key")

    async with page.expect_download() as waiting:
        await page.click("#download-backup")
    download = await waiting.value
    assert download.suggested_filename.startswith("flareport-backup-")
    saved = tmp_path / download.suggested_filename
    await download.save_as(saved)
    document = json.loads(saved.read_text())
    assert [g["group_id"] for g in document["access_groups"]] == ["ops"]
    assert [r["rule_id"] for r in document["manual_rules"]] == [rule_id]

    client.delete(f"/api/v1/manual-rules/{rule_id}")
    client.delete("/api/v1/access-groups/ops")

    await page.set_input_files("input[name=file]", str(saved))
    await page.click("button:text-is('Restore')")
    report = page.locator("#restore-report")
    await expect(report.locator("h2")).to_have_text("Dry run: nothing was written")
    await expect(report.locator("tr", has_text="wiki.example.com")).to_contain_text("would create")
    assert client.get("/api/v1/manual-rules").json()["rules"] == []

    await page.set_input_files("input[name=file]", str(saved))
    await page.check("input[name=apply]")
    await page.click("button:text-is('Restore')")
    await expect(report.locator("h2")).to_have_text("Restored")
    await expect(report.locator("tr", has_text="ops")).to_contain_text("created")
    if SHOTS is not None:
        await page.screenshot(path=str(SHOTS / "backup.png"), full_page=True)
    [restored] = client.get("/api/v1/manual-rules").json()["rules"]
    assert (restored["rule_id"], restored["rule"]["service"]) == (rule_id, "http://wiki:80")
    assert client.get("/api/v1/access-groups/ops").json()["name"] == "Ops"
