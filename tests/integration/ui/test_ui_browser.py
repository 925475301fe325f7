"""The web UI in a real browser (Debian's Chromium, headless, through Playwright) against a real ``flareport api``
process: log in, generate a key (seen once), watch an agent that registers over the agent protocol appear live,
enrol it, revoke its key and see the agent refused. Saves a screenshot of every page under docs/img/."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
import yaml
from playwright.async_api import Browser, Page, async_playwright, expect

from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys
from flareport_common.messages.base import utcnow
from flareport_common.messages.deadletters import DeadLetter
from flareport_common.messages.events import TunnelState
from flareport_common.messages.intents import AgentEnrolled, IntentMessage
from flareport_common.messages.rules import AccessSpec
from flareport_common.readmodel import AgentRecord, RuleRecord
from flareport_common.streams.codec import encode
from fptest.api_helpers import MASTER, stream_messages
from fptest.cli_helpers import api_process

from .conftest import PASSWORD, put_agent, put_rule

# The documentation's screenshots are rewritten only on request, so a test run leaves the work tree as it was.
SHOTS = (
    Path(__file__).resolve().parents[3] / "docs" / "img"
    if os.environ.get("FLAREPORT_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "flareport-screenshots"
)
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)"
)


@pytest.fixture
def api_url(redis_server: LocalRedis, prefix: str, tmp_path: Path) -> Iterator[str]:
    extra = {"FLAREPORT_ADMIN_PASSWORD": PASSWORD, "FLAREPORT_UI_EVENTS_SECONDS": "0.3"}
    with api_process(redis_server.url, prefix, tmp_path / "api.log", extra) as process:
        yield process.url


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


async def _shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def _seed_read_model(redis: aioredis.Redis, keys: Keys, agent_id: str) -> None:
    """What the reconciler would have written once the agent's containers were published."""
    now = utcnow()
    rules = [
        RuleRecord(key="shop.example.com", hostname="shop.example.com", service="http://shop:8080", agent_id=agent_id,
                   container_name="shop", zone_name="example.com", tunnel_id="c0ffee-tunnel", status="active",
                   access=AccessSpec(policy="authenticate")),
        RuleRecord(key="api.example.com/v1", hostname="api.example.com", path="/v1", service="http://api:9000",
                   agent_id=agent_id, container_name="api", zone_name="example.com", status="pending"),
        RuleRecord(key="old.example.com", hostname="old.example.com", service="http://old:80", agent_id=agent_id,
                   container_name="old", zone_name="example.com", status="pending_deletion",
                   delete_at=now + timedelta(minutes=9)),
        RuleRecord(key="shop.example.org", hostname="shop.example.org", service="http://shop:8080",
                   agent_id=agent_id, container_name="shop", status="error",
                   error="hostname shop.example.org is outside this agent's allowed zones"),
        RuleRecord(key="status.example.com", hostname="status.example.com", service="http_status:204",
                   source="manual", manual_rule_id="mr_demo", zone_name="example.com", status="active"),
    ]  # fmt: skip
    for rule in rules:
        await put_rule(redis, keys, rule)
    letter = DeadLetter(source_stream=keys.cf_jobs, source_id="1700000000000-0", group="dns-worker", consumer="w1",
                        reason="delivery_cap", error="Cloudflare 10000: authentication error", deliveries=5,
                        payload={"m": '{"type":"sync_dns_zone"}'})  # fmt: skip
    await redis.xadd(keys.dead_letters, encode(letter))  # type: ignore[arg-type]


async def test_admin_journey_in_a_real_browser(
    api_url: str, browser: Browser, redis: aioredis.Redis, keys: Keys
) -> None:
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    page.on("dialog", lambda dialog: dialog.accept())

    await page.goto(api_url + "/")
    await expect(page).to_have_url(re.compile(r"/ui/login"))
    await _shot(page, "login")
    await page.fill("input[name=username]", "admin")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.locator("h1")).to_contain_text("Hostnames")

    # Generate a key: shown once, with a ready-to-paste .env snippet.
    await page.click("nav >> text=Agent keys")
    await page.fill("input[name=label]", "docker-host-1")
    await page.click("text=Generate key")
    key = (await page.locator("#new-key").inner_text()).strip()
    assert key.startswith("fpk_")
    await expect(page.locator("#env-snippet")).to_contain_text(f"FLAREPORT_API_KEY={key}")
    await expect(page.locator("#env-snippet")).to_contain_text(f"FLAREPORT_MASTER_URL={api_url}")
    # And the host's compose file: agent, socket proxy and network, reading the key from that .env.
    compose = yaml.safe_load(await page.locator("#compose-file").inner_text())
    assert set(compose["services"]) == {"agent", "docker-socket-proxy"}
    assert compose["services"]["agent"]["environment"]["FLAREPORT_API_KEY"].startswith("${FLAREPORT_API_KEY")
    assert key not in await page.locator("#compose-file").inner_text()
    await _shot(page, "keys-generated")
    await page.goto(api_url + "/ui/keys")
    assert key not in await page.content(), "the key is never shown again"

    # The agents page is open when an agent registers: it appears without a reload (server-sent events).
    await page.goto(api_url + "/ui/agents")
    await expect(page.locator("#live-status")).to_be_visible()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as agent:
        async with agent.post(api_url + "/api/v1/agents/register", json={"display_name": "docker-host-1"}) as r:
            assert r.status == 200
            agent_id = (await r.json())["agent_id"]
        await expect(page.locator("table.agents")).to_contain_text("docker-host-1", timeout=15_000)
        await expect(page.locator("table.agents")).to_contain_text("pending")

        # Enrol it from its page: the same intent as POST /api/v1/agents/{id}/enroll.
        await page.click("table.agents >> text=docker-host-1")
        await page.fill("input[name=tunnel_name]", "edge-docker-host-1")
        await page.click("button:has-text('Enrol')")
        await expect(page.locator(".flash")).to_contain_text("Enrolling docker-host-1")
        intents = await stream_messages(redis, keys.intents, IntentMessage)
        enrolled = [i for i in intents if isinstance(i, AgentEnrolled)]
        assert [(i.agent_id, i.tunnel_name) for i in enrolled] == [(agent_id, "edge-docker-host-1")]

        # What the reconciler records next; the pages show it.
        record = AgentRecord(
            agent_id=agent_id,
            display_name="docker-host-1",
            status="active",
            hostname="docker1",
            version="0.1.0",
            registered_at=utcnow(),
            last_seen=utcnow(),
            tunnel_id="c0ffee-tunnel",
            tunnel_name="edge-docker-host-1",
            tunnel=TunnelState(container_state="running"),
        )
        await put_agent(redis, keys, record)
        async with agent.post(
            f"{api_url}/api/v1/agents/{agent_id}/heartbeat", json={"tunnel": {"container_state": "running"}}
        ) as r:
            assert r.status == 200
        await _seed_read_model(redis, keys, agent_id)
        await page.reload()
        await expect(page.locator("h1")).to_contain_text("active")
        await _shot(page, "agent")
        await page.goto(api_url + "/ui/agents")
        await _shot(page, "agents")
        await page.goto(api_url + "/ui/")
        await expect(page.locator("table.rules")).to_contain_text("outside this agent's allowed zones")
        await _shot(page, "dashboard")
        for name, path in (("dead-letters", "/ui/dead-letters"), ("manual-rules", "/ui/manual-rules"),
                           ("access-groups", "/ui/access-groups")):  # fmt: skip
            await page.goto(api_url + path)
            await _shot(page, name)
        await page.goto(api_url + "/ui/settings")
        await page.fill("input[name=password]", PASSWORD)
        await page.click("text=Show master API key")
        await expect(page.locator("#master-key")).to_have_text(MASTER)
        await _shot(page, "settings")

        # Revoke the key: the agent's very next call is refused.
        await page.goto(api_url + "/ui/keys")
        await page.click("button[name=revoke]")
        await expect(page.locator(".flash")).to_contain_text("revoked")
        await _shot(page, "keys")
        async with agent.post(f"{api_url}/api/v1/agents/{agent_id}/heartbeat", json={}) as r:
            assert r.status == 401
            body: Any = await r.json()
            assert body["error"]["code"] == "key_revoked"

    await page.click("text=Log out")
    await expect(page).to_have_url(re.compile(r"/ui/login"))


async def test_last_seen_keeps_counting_on_an_open_page(
    api_url: str, browser: Browser, redis: aioredis.Redis, keys: Keys
) -> None:
    # Live updates follow the read model, and nothing in it changes while an agent is quiet: the page's own clock
    # must move "50s ago" on, or an open dashboard shows an agent as just seen for as long as it stays open.
    page = await browser.new_page()
    await page.goto(api_url + "/ui/login")
    await page.fill("input[name=username]", "admin")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.locator("h1")).to_contain_text("Hostnames")
    seen = utcnow() - timedelta(seconds=50)
    record = AgentRecord(
        agent_id="agt_quiet", display_name="quiet-host", status="active", registered_at=seen, last_seen=seen
    )
    await put_agent(redis, keys, record)
    version = await redis.get(keys.readmodel_version)

    await page.goto(api_url + "/ui/agents")
    cell = page.locator("table.agents time.ago").first
    await expect(cell).to_have_text(re.compile(r"^5\ds ago$"))
    await expect(cell).to_have_text("1m ago", timeout=20_000)
    assert await redis.get(keys.readmodel_version) == version, "nothing changed in the read model meanwhile"
    await page.goto(api_url + "/ui/agents/agt_quiet")
    await expect(page.locator("dl.facts time.ago").nth(1)).to_have_text("1m ago")
