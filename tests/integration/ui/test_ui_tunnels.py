"""The Tunnels page: the account's tunnels with their connectors (version, origin IP, since when), their agent, who
created them and how old the listing is; Restart and Redeploy only for a tunnel Flareport created, each a form with
the session's CSRF token; a forged post for another tunnel refused with the API's reason. In-process and in a real
browser (Debian's Chromium, headless) against a real ``flareport api`` process."""

from __future__ import annotations

import html
import os
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from playwright.async_api import Browser, Dialog, expect

from flareport_common.keys import Keys
from flareport_common.messages.intents import IntentMessage, TunnelRestartRequested, TunnelsRefreshRequested
from fptest import tunnels_seed
from fptest.api_helpers import stream_messages
from fptest.tunnels_seed import FOREIGN, IMAGE, ORIGIN_IP, OURS

from .conftest import CHROMIUM, PASSWORD, Ui

SHOTS = (
    Path(__file__).resolve().parents[3] / "docs" / "img"
    if os.environ.get("FLAREPORT_UPDATE_SCREENSHOTS") == "1"
    else None
)


async def seed(redis: aioredis.Redis, keys: Keys) -> None:
    pipe = redis.pipeline(transaction=True)
    tunnels_seed.queue(pipe, keys)
    await pipe.execute()


async def test_only_a_tunnel_flareport_created_can_be_restarted_and_a_forged_post_is_refused(ui: Ui) -> None:
    await seed(ui.redis, ui.keys)
    await ui.logged_in()
    page = await ui.html("/ui/tunnels")
    ours = page.split(f'id="tunnel-{OURS}"', 1)[1].split("</tr>", 1)[0]
    foreign = page.split(f'id="tunnel-{FOREIGN}"', 1)[1].split("</tr>", 1)[0]
    assert ORIGIN_IP in ours and "cloudflared 2025.9.0" in ours and 'action="/ui/tunnels/restart"' in ours
    assert "<form" not in foreign and "not created by Flareport" in foreign, "nothing offered for a foreign tunnel"

    missing_csrf = await ui.client.post("/ui/tunnels/restart", data={"tunnel_id": OURS}, allow_redirects=False)
    assert missing_csrf.status == 403
    await ui.post("/ui/tunnels/restart", tunnel_id=FOREIGN)
    assert "not created by Flareport" in html.unescape(await ui.html("/ui/tunnels")), "the refusal is the notice"
    assert await stream_messages(ui.redis, ui.keys.intents, IntentMessage) == []

    await ui.post("/ui/tunnels/restart", tunnel_id=OURS)
    await ui.post("/ui/tunnels/refresh")
    restart, refresh = await stream_messages(ui.redis, ui.keys.intents, IntentMessage)
    assert isinstance(restart, TunnelRestartRequested) and (restart.agent_id, restart.image) == ("a1", None)
    assert isinstance(refresh, TunnelsRefreshRequested)
    [entry] = await ui.redis.lrange(ui.keys.admin_audit, 0, -1)
    assert b'"actor":"ui:admin"' in entry and b'"action":"tunnel_restart"' in entry, entry


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)")
async def test_the_tunnels_page_in_a_real_browser(
    api_url: str, browser: Browser, redis: aioredis.Redis, keys: Keys
) -> None:
    await seed(redis, keys)
    page = await browser.new_page(viewport={"width": 1400, "height": 800})

    async def accept(dialog: Dialog) -> None:
        await dialog.accept()

    page.on("dialog", accept)  # the confirmation of a restart or redeploy
    await page.goto(api_url + "/ui/tunnels")
    await page.fill("input[name=username]", "admin")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.locator("h1")).to_contain_text("Tunnels")
    await expect(page.locator("#tunnels-freshness")).to_contain_text("Listed from Cloudflare")
    await expect(page.locator("#tunnels-freshness")).to_contain_text("ago")
    ours = page.locator(f"#tunnel-{OURS}")
    await expect(ours.locator(".connector")).to_contain_text("cloudflared 2025.9.0")
    await expect(ours.locator(".origin-ip")).to_have_text(ORIGIN_IP)
    await expect(ours.locator(".connector")).to_contain_text("since 2h ago")
    await expect(ours).to_contain_text("web host")
    await expect(ours.locator("td.created")).to_have_text("yes")
    foreign = page.locator(f"#tunnel-{FOREIGN}")
    await expect(foreign.locator("td.created")).to_have_text("no")
    await expect(foreign.locator("button")).to_have_count(0)
    if SHOTS is not None:
        await page.screenshot(path=str(SHOTS / "tunnels.png"), full_page=True)

    await ours.locator("button", has_text="Restart").click()
    await expect(page.locator(".flash")).to_contain_text(f"Restart of the cloudflared of tunnel {OURS} requested")
    await page.locator(f"#tunnel-{OURS} input[name=image]").fill("other/cloudflared:1")
    await page.locator(f"#tunnel-{OURS}").locator("button", has_text="Redeploy").click()
    await expect(page.locator(".flash")).to_contain_text(
        f"the agent runs only its configured cloudflared image '{IMAGE}'"
    )
    await page.locator(f"#tunnel-{OURS}").locator("button", has_text="Redeploy").click()  # the field is filled again
    await expect(page.locator(".flash")).to_contain_text(f"Redeploy of the cloudflared of tunnel {OURS} from {IMAGE}")

    restart, redeploy = await stream_messages(redis, keys.intents, IntentMessage)
    assert isinstance(restart, TunnelRestartRequested) and restart.image is None
    assert isinstance(redeploy, TunnelRestartRequested) and redeploy.image == IMAGE
