"""The manual-rule form's origin options (cloudflared's ``originRequest``): set, shown again for an edit, cleared
back to cloudflared's default, and refused with the admin API's own message; in-process and in a real browser
(Debian's Chromium, headless) against a real ``flareport api`` process."""

from __future__ import annotations

import html
import os
from typing import Any

import pytest
import redis.asyncio as aioredis
from playwright.async_api import Browser, expect

from flareport_common.keys import Keys
from flareport_common.messages.intents import IntentMessage, ManualRuleUpserted
from flareport_common.messages.rules import OriginOptions
from fptest.api_helpers import MASTER, stream_messages

from .conftest import CHROMIUM, PASSWORD, Ui

ADMIN = {"Authorization": f"Bearer {MASTER}"}
RULE = {"hostname": "nas.example.com", "service": "https://10.0.0.7:5001", "agent_id": "ag-one"}


async def manual_rules(ui: Ui) -> list[dict[str, Any]]:
    return list((await (await ui.client.get("/api/v1/manual-rules", headers=ADMIN)).json())["rules"])


async def test_origin_options_are_saved_shown_for_an_edit_and_cleared(ui: Ui) -> None:
    await ui.logged_in()
    await ui.post(
        "/ui/manual-rules", **RULE, origin_server_name="nas.internal", http_host_header="nas.internal",
        no_tls_verify="on", http2_origin="off", disable_chunked_encoding="", match_sni_to_host="on",
    )  # fmt: skip
    [rule] = await manual_rules(ui)
    # "off" is kept apart from "not set": off overrides cloudflared's default, not set leaves it.
    assert rule["rule"]["origin"] == {
        "no_tls_verify": True,
        "origin_server_name": "nas.internal",
        "http_host_header": "nas.internal",
        "http2_origin": False,
        "match_sni_to_host": True,
    }

    form = await ui.html(f"/ui/manual-rules?edit={rule['rule_id']}")
    assert f'name="rule_id" value="{rule["rule_id"]}"' in form, "a rule with origin options is editable here"
    assert 'name="origin_server_name" placeholder="(optional) app.internal" value="nas.internal"' in form
    for name, shown in (("no_tls_verify", "on"), ("http2_origin", "off"), ("disable_chunked_encoding", "")):
        select = form.split(f'<select name="{name}">', 1)[1].split("</select>", 1)[0]
        assert f'<option value="{shown}" selected>' in select, f"{name} shows {shown or 'the default'} selected"

    # Saving the edit with everything back on "cloudflared's default" clears the options.
    await ui.post("/ui/manual-rules", rule_id=rule["rule_id"], **RULE)
    [edited] = await manual_rules(ui)
    assert edited["rule_id"] == rule["rule_id"] and edited["rule"]["origin"] == {}
    upserts = [i for i in await stream_messages(ui.redis, ui.keys.intents, IntentMessage)]
    assert [i.rule.origin for i in upserts if isinstance(i, ManualRuleUpserted)] == [
        OriginOptions(
            no_tls_verify=True,
            origin_server_name="nas.internal",
            http_host_header="nas.internal",
            http2_origin=False,
            match_sni_to_host=True,
        ),
        OriginOptions(),
    ]


async def test_bad_origin_options_are_refused_with_the_apis_message(ui: Ui) -> None:
    await ui.logged_in()
    body = {"rule": {**{k: v for k, v in RULE.items() if k != "agent_id"}, "origin": {"origin_server_name": "a b"}}}
    refused = await ui.client.post("/api/v1/manual-rules", json=body, headers=ADMIN)
    assert refused.status == 422
    said = (await refused.json())["error"]["message"]
    await ui.post("/ui/manual-rules", **RULE, origin_server_name="a b")
    assert said in html.unescape(await ui.html("/ui/manual-rules")), f"the form shows the API's refusal {said!r}"
    await ui.post("/ui/manual-rules", **RULE, no_tls_verify="maybe")
    assert "no_tls_verify" in await ui.html("/ui/manual-rules"), "a switch with another value is refused by name"
    assert await manual_rules(ui) == [] and await stream_messages(ui.redis, ui.keys.intents, IntentMessage) == []


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)")
async def test_setting_origin_options_in_a_real_browser(
    api_url: str, browser: Browser, redis: aioredis.Redis, keys: Keys
) -> None:
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await page.goto(api_url + "/ui/manual-rules")
    await page.fill("input[name=username]", "admin")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await expect(page.locator("h1")).to_have_text("Manual rules")

    await page.fill("input[name=hostname]", "nas.example.com")
    await page.fill("input[name=service]", "https://10.0.0.7:5001")
    await page.fill("input[name=agent_id]", "ag-one")
    await page.fill("input[name=origin_server_name]", "nas.internal")
    await page.select_option("select[name=no_tls_verify]", "on")
    await page.select_option("select[name=http2_origin]", "off")
    await page.click("text=Save manual rule")
    await expect(page.locator(".flash")).to_contain_text("Manual rule for nas.example.com saved")

    # The edit form shows what was saved.
    await page.locator("tr", has_text="nas.example.com").locator("a", has_text="Edit").click()
    await expect(page.locator("input[name=origin_server_name]")).to_have_value("nas.internal")
    await expect(page.locator("select[name=no_tls_verify]")).to_have_value("on")
    await expect(page.locator("select[name=http2_origin]")).to_have_value("off")
    await expect(page.locator("select[name=match_sni_to_host]")).to_have_value("")

    [intent] = [
        i for i in await stream_messages(redis, keys.intents, IntentMessage) if isinstance(i, ManualRuleUpserted)
    ]
    assert intent.rule.origin == OriginOptions(
        no_tls_verify=True, origin_server_name="nas.internal", http2_origin=False
    )
