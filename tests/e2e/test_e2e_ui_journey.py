"""An operator's first hour, in a real browser against the whole stack as processes.

Headless Chromium logs in to the web UI, generates an agent key, and a real agent started with that key on a real
Podman engine appears as pending; the operator enrols it from its page, a labelled container starts on the engine,
and its hostname goes active on the dashboard while the emulator receives the CNAME and the ingress rule; then the
operator revokes the key and the agent is refused.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from flareport_cli.dev import DevStack
from flareport_cli.localpodman import podman_available
from flareport_cli.localredis import free_port
from fptest.e2e_podman import IsolatedPodman
from fptest.waiting import wait_for

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
PASSWORD = "correct horse battery staple"
pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and podman_available()), reason="needs Debian's chromium and podman"
)
# Settings of the developer's own shell must not leak into the stack under test.
_FOREIGN = ("REDIS_URL", "CLOUDFLARE_API_TOKEN", "CF_API_TOKEN", "DOCKER_HOST", "MASTER_API_KEY",
            "FLAREPORT_ADMIN_PASSWORD_HASH", "FLAREPORT_KEY_PREFIX")  # fmt: skip


class Stack:
    def __init__(self, dev: DevStack, podman: IsolatedPodman, image: str) -> None:
        self.dev, self.podman, self.image = dev, podman, image

    @property
    def emulator(self) -> str:
        return self.dev.env["CLOUDFLARE_API_BASE_URL"].removesuffix("/client/v4")

    def emulator_state(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.emulator}/__emulator/state", timeout=5) as response:  # noqa: S310
            state: dict[str, Any] = json.loads(response.read())["result"]
        return state


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    podman = IsolatedPodman(tmp_path / "podman")
    podman.start()
    dev: DevStack | None = None
    try:
        image = podman.build_busybox_image()
        environ = {key: value for key, value in os.environ.items() if key not in _FOREIGN}
        environ.update(
            FLAREPORT_ADMIN_PASSWORD=PASSWORD,
            FLAREPORT_UI_EVENTS_SECONDS="0.3",
            CLOUDFLARED_IMAGE=image,
            GRACE_PERIOD_SECONDS="2",
            LOG_FORMAT="json",
        )
        dev = DevStack(tmp_path / "stack", api_port=free_port(), echo=False, environ=environ)
        dev.start(agent=False)
        yield Stack(dev, podman, image)
    finally:
        if dev is not None:
            dev.stop()
        podman.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


async def _reload_until(page: Page, selector: str, text: str, *, timeout: float = 90.0) -> None:
    """Reload until ``selector`` shows ``text``; the stack converges asynchronously."""
    deadline = time.monotonic() + timeout
    while True:
        if text in await page.locator(selector).inner_text():
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{selector} never showed {text!r}; it shows {await page.locator(selector).inner_text()!r}"
            )
        await page.wait_for_timeout(500)  # a reload interval, not synchronisation: the check above decides
        await page.reload()


async def test_operator_publishes_a_container_from_the_web_ui(stack: Stack, browser: Browser, tmp_path: Path) -> None:
    api = stack.dev.api_url
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    page.on("dialog", lambda dialog: dialog.accept())

    await page.goto(api + "/")
    await page.fill("input[name=username]", "admin")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.locator("h1")).to_contain_text("Hostnames")

    await page.click("nav >> text=Agent keys")
    await page.fill("input[name=label]", "docker-host-1")
    await page.click("text=Generate key")
    key = (await page.locator("#new-key").inner_text()).strip()

    agent = stack.dev.supervisor.start(
        "agent",
        [sys.executable, "-m", "flareport_cli", "agent"],
        {
            **stack.dev.env,
            "FLAREPORT_MASTER_URL": api,
            "FLAREPORT_API_KEY": key,
            "DOCKER_HOST": stack.podman.docker_host,
            "AGENT_DATA_DIR": str(tmp_path / "agent"),
            "FLAREPORT_HEALTH_PORT": str(free_port()),
        },
    )
    await page.goto(api + "/ui/agents")
    await expect(page.locator("table.agents")).to_contain_text("pending", timeout=60_000)

    await page.click("table.agents tbody a >> nth=0")
    await page.fill("input[name=tunnel_name]", "edge-docker-host-1")
    await page.click("button:has-text('Enrol')")
    await _reload_until(page, "h1", "active")

    hostname = f"app-{uuid.uuid4().hex[:6]}.example.test"
    stack.podman.podman(
        "--url", stack.podman.docker_host, "run", "-d", "--name", hostname.split(".")[0],
        "-l", "flareport.enable=true", "-l", f"flareport.hostname={hostname}", "-l", "flareport.service=http://web:80",
        stack.image,
    )  # fmt: skip
    await page.goto(api + "/ui/")
    await _reload_until(page, "table.rules", hostname)
    await _reload_until(page, "table.rules", "active")

    state = stack.emulator_state()
    names = [r["name"] for records in state["dns_records"].values() for r in records.values() if r["type"] == "CNAME"]
    assert names == [hostname], "the published hostname's CNAME, and nothing else"
    [config] = state["tunnel_configs"].values()
    assert [rule.get("hostname") for rule in config["config"]["ingress"]] == [hostname, None]

    await page.goto(api + "/ui/keys")
    await page.click("button[name=revoke]")
    await expect(page.locator(".flash")).to_contain_text("revoked")

    async def refused() -> bool:
        return any("revoked" in line.lower() for line in stack.dev.supervisor.tail(agent, 200).splitlines())

    await wait_for(refused, timeout=60, what="the agent to log that its key was revoked")
    assert agent.process.poll() is None, "a revoked agent keeps running (slow re-register attempts), it does not crash"
