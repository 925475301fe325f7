"""Every page renders what the reconciler wrote into the read model, and every form writes the same intents (or
key changes) as the matching admin API route."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from flareport_api.app import create_app
from flareport_api.state import CONTEXT
from flareport_api.ui.fingerprint import fingerprint
from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys
from flareport_common.messages.base import utcnow
from flareport_common.messages.deadletters import DeadLetter
from flareport_common.messages.events import TunnelState
from flareport_common.messages.intents import (
    AgentDecommissioned,
    AgentEnrolled,
    AgentRemoved,
    AgentRenamed,
    IntentMessage,
)
from flareport_common.messages.rules import AccessSpec
from flareport_common.readmodel import AgentRecord, RuleRecord
from flareport_common.streams.codec import encode
from fptest.api_helpers import MASTER, stream_messages
from fptest.waiting import wait_for

from .conftest import PASSWORD, Ui, ui_settings

ADMIN = {"Authorization": f"Bearer {MASTER}"}


async def _seed(ui: Ui) -> None:
    now = utcnow()
    await ui.put_agent(
        AgentRecord(
            agent_id="ag-one",
            display_name="web-host",
            status="active",
            hostname="docker1",
            last_seen=now,
            tunnel_id="tun-123",
            tunnel_name="flareport-ag-one",
            tunnel=TunnelState(container_state="running"),
        )
    )
    await ui.put_agent(AgentRecord(agent_id="ag-two", display_name="new-host", status="pending"))
    await ui.redis.lpush(
        ui.keys.agent_heartbeats("ag-one"),
        b'{"at":"2026-01-01T00:00:00Z","tunnel":{"container_state":"running"},"docker_reachable":true}',
    )
    await ui.put_rule(
        RuleRecord(
            key="shop.example.com",
            hostname="shop.example.com",
            service="http://shop:8080",
            agent_id="ag-one",
            container_name="shop",
            zone_name="example.com",
            tunnel_id="tun-123",
            status="active",
            access=AccessSpec(policy="authenticate"),
        )
    )
    await ui.put_rule(
        RuleRecord(
            key="bad.example.com",
            hostname="bad.example.com",
            service="http://bad:80",
            agent_id="ag-one",
            container_name="bad",
            status="error",
            error="zone example.org is not in this account",
            error_code=7003,
        )
    )
    await ui.put_rule(
        RuleRecord(
            key="old.example.com",
            hostname="old.example.com",
            service="http://old:80",
            agent_id="ag-one",
            container_name="old",
            status="pending_deletion",
            delete_at=now + timedelta(minutes=5),
        )
    )


async def test_dashboard_lists_every_hostname_with_status_source_and_reason(ui: Ui) -> None:
    await _seed(ui)
    await ui.logged_in()
    html = await ui.html("/ui/")
    for text in ("shop.example.com", "bad.example.com", "old.example.com", "web-host", "tun-123", "authenticate"):
        assert text in html
    assert "zone example.org is not in this account" in html and "Cloudflare 7003" in html
    assert re.search(r"deleted in [45]m", html), "pending deletion shows its countdown"

    errors_only = await ui.html("/ui/?status=error")
    assert "bad.example.com" in errors_only and "shop.example.com" not in errors_only
    searched = await ui.html("/ui/?q=SHOP")
    assert "shop.example.com" in searched and "bad.example.com" not in searched
    nothing = await ui.html("/ui/?q=%3Cscript%3E")
    assert "<script>" not in nothing and "&lt;script&gt;" in nothing, "search text is escaped"


async def test_agents_pages_show_status_heartbeats_tunnel_and_commands(ui: Ui) -> None:
    await _seed(ui)
    await ui.logged_in()
    html = await ui.html("/ui/agents")
    assert "web-host" in html and "new-host" in html
    assert 'class="beat ok"' in html, "the heartbeat strip shows the running tunnel"
    assert "cloudflared: running" in html
    pending = await ui.html("/ui/agents?status=pending")
    assert "new-host" in pending and "web-host" not in pending
    detail = await ui.html("/ui/agents/ag-one")
    assert "flareport-ag-one" in detail and "shop.example.com" in detail and "No commands yet" in detail
    missing = await ui.client.get("/ui/agents/nobody", allow_redirects=False)
    assert missing.status == 404


async def test_agent_forms_write_the_same_intents_as_the_admin_api(ui: Ui) -> None:
    await _seed(ui)
    await ui.logged_in()
    back = "/ui/agents/ag-two"
    response = await ui.post("/ui/agents/ag-two/enroll", tunnel_name="edge-2", allowed_zones="example.com", back=back)
    assert response.status == 302 and response.headers["Location"] == back
    assert "Enrolling new-host" in await ui.html(back), "a one-time notice says what happened"
    assert "Enrolling" not in await ui.html(back), "... and only once"
    await ui.post("/ui/agents/ag-two/rename", display_name="edge host", back=back)
    await ui.post("/ui/agents/ag-two/decommission", back=back)
    await ui.post("/ui/agents/ag-two/remove", back=back)
    intents: list[IntentMessage] = await stream_messages(ui.redis, ui.keys.intents, IntentMessage)
    assert [type(i) for i in intents] == [AgentEnrolled, AgentRenamed, AgentDecommissioned, AgentRemoved]
    enrolled = intents[0]
    assert isinstance(enrolled, AgentEnrolled)
    assert (enrolled.agent_id, enrolled.tunnel_name, enrolled.allowed_zones) == ("ag-two", "edge-2", ("example.com",))

    both = await ui.post("/ui/agents/ag-one/enroll", tunnel_name="a", tunnel_id="b", back="/ui/agents/ag-one")
    assert both.status == 302
    assert "not both" in await ui.html("/ui/agents/ag-one")
    online = await ui.post("/ui/agents/ag-one/remove", back="/ui/agents/ag-one")
    assert online.status == 302
    assert "decommission it first" in await ui.html("/ui/agents/ag-one")
    assert len(await stream_messages(ui.redis, ui.keys.intents, IntentMessage)) == 4, "refused forms write nothing"


async def test_a_generated_key_is_shown_once_works_and_can_be_revoked(ui: Ui) -> None:
    await ui.logged_in()
    response = await ui.post("/ui/keys", label="host-9")
    html = await response.text()
    key = re.search(r'<code id="new-key">(fpk_[^<]+)</code>', html)
    assert key, "the new key is on the page"
    assert f"FLAREPORT_API_KEY={key.group(1)}" in html and "FLAREPORT_MASTER_URL=http://" in html
    assert key.group(1) not in await ui.html("/ui/keys"), "shown once: the key list never shows it again"

    agent = {"Authorization": f"Bearer {key.group(1)}"}
    registered = await ui.client.post("/api/v1/agents/register", json={"display_name": "h9"}, headers=agent)
    assert registered.status == 200
    agent_id = (await registered.json())["agent_id"]
    assert "h9" in await ui.html("/ui/agents"), "a registered agent shows up before the reconciler records it"
    key_id = re.search(r"<code>(key_[^<]+)</code>", await ui.html("/ui/keys"))
    assert key_id
    await ui.post("/ui/keys/revoke", key_id=key_id.group(1))
    # The open page's script re-fetching itself meanwhile must leave the notice to the redirect's page.
    live = await ui.client.get("/ui/keys", headers={"X-Requested-With": "live"})
    assert "revoked. To keep it refused" not in await live.text()
    assert f"Key {key_id.group(1)} (host-9) revoked." in await ui.html("/ui/keys")
    refused = await ui.client.post(f"/api/v1/agents/{agent_id}/heartbeat", json={}, headers=agent)
    assert refused.status == 401
    assert (await refused.json())["error"]["code"] == "key_revoked"


async def test_dead_letters_page_replays_onto_the_source_stream(ui: Ui) -> None:
    letter = DeadLetter(
        source_stream=ui.keys.events,
        source_id="1-1",
        group="reconciler",
        consumer="r1",
        reason="permanent_error",
        error="boom in handler",
        deliveries=5,
        payload={"m": '{"type":"x"}'},
    )
    raw: Any = await ui.redis.xadd(ui.keys.dead_letters, encode(letter))  # type: ignore[arg-type]
    entry = raw.decode()
    await ui.logged_in()
    html = await ui.html("/ui/dead-letters")
    assert "boom in handler" in html and entry in html
    await ui.post("/ui/dead-letters/replay", entry_id=entry)
    assert await ui.redis.xlen(ui.keys.dead_letters) == 0
    replayed: Any = await ui.redis.xrange(ui.keys.events)
    assert replayed[-1][1] == {b"m": b'{"type":"x"}'}
    assert "No dead letters" in await ui.html("/ui/dead-letters")


async def test_manual_rules_and_access_groups_pages(ui: Ui) -> None:
    rule = {"rule": {"hostname": "manual.example.com", "service": "http://10.0.0.5:80"}}
    created = await ui.client.post("/api/v1/manual-rules", json=rule, headers=ADMIN)
    assert created.status == 201, await created.text()
    rule_id = (await created.json())["rule_id"]
    group = await ui.client.post(
        "/api/v1/access-groups",
        json={"name": "staff", "include": [{"email_domain": {"domain": "x.com"}}]},
        headers=ADMIN,
    )
    assert group.status == 201, await group.text()
    await ui.logged_in()
    assert "manual.example.com" in await ui.html("/ui/manual-rules")
    groups = await ui.html("/ui/access-groups")
    assert "staff" in groups and "x.com" in groups
    await ui.post("/ui/manual-rules/delete", rule_id=rule_id)
    assert "No manual rules" in await ui.html("/ui/manual-rules")
    tags = [type(i).__name__ for i in await stream_messages(ui.redis, ui.keys.intents, IntentMessage)]
    assert tags[-1] == "ManualRuleDeleted"


async def test_settings_show_the_master_key_only_after_the_password(ui: Ui) -> None:
    await ui.logged_in()
    assert MASTER not in await ui.html("/ui/settings")
    wrong = await ui.post("/ui/settings/master-key", password="nope")
    assert wrong.status == 302
    page = await ui.html("/ui/settings")
    assert "Wrong password" in page and MASTER not in page
    right = await ui.post("/ui/settings/master-key", password=PASSWORD)
    assert right.status == 200
    assert MASTER in await right.text()
    assert right.headers["Cache-Control"] == "no-store"


async def test_live_stream_says_changed_when_the_read_model_changes(ui: Ui) -> None:
    await ui.logged_in()
    response = await ui.client.get("/ui/events")
    assert response.headers["Content-Type"].startswith("text/event-stream")
    seen: list[str] = []

    async def next_version() -> str:
        while True:
            line = (await response.content.readline()).decode()
            if line.startswith("data:"):
                seen.append(line)
                return line

    reader: asyncio.Task[Any] = asyncio.ensure_future(next_version())
    await wait_for(lambda: _done(reader), timeout=10, what="the baseline version")
    reader = asyncio.ensure_future(next_version())
    await ui.put_rule(RuleRecord(key="new.example.com", hostname="new.example.com", service="http://n:1"))
    await wait_for(lambda: _done(reader), timeout=10, what="a 'changed' event after a rule appeared")
    assert seen[0] != seen[1]
    response.close()


def stamp(html: str) -> str:
    match = re.search(r'data-version="([0-9a-f]{16})"', html)
    assert match, "every page carries the read-model version it was rendered from"
    return match.group(1)


async def version_event(response: Any) -> str:
    """The next version a ``/ui/events`` stream sends."""
    while True:
        line = (await asyncio.wait_for(response.content.readline(), 10)).decode()
        if line.startswith("data:"):
            return str(json.loads(line.removeprefix("data:"))["version"])


async def versions_until(ui: Ui, done: Callable[[str], bool]) -> str:
    """Open a stream and read it until a version satisfies ``done``; return that version."""
    response = await ui.client.get("/ui/events")
    try:
        while not done(version := await version_event(response)):
            pass
        return version
    finally:
        response.close()


async def test_a_page_is_stamped_with_the_version_it_shows_so_a_change_before_subscribing_is_not_missed(
    ui: Ui,
) -> None:
    """The page's script refreshes whenever the stream's version is not the page's ``data-version``."""
    await ui.logged_in()
    unchanged = stamp(await ui.html("/ui/"))
    first = await versions_until(ui, lambda _: True)
    assert first == unchanged, "nothing changed: the stream's first version is the page's, so it does not refresh"

    stale = stamp(await ui.html("/ui/"))
    # A rule appears after the page was rendered but before its script subscribes: the stream must say so.
    await ui.put_rule(RuleRecord(key="late.example.com", hostname="late.example.com", service="http://l:1"))
    assert await versions_until(ui, lambda v: v != stale) != stale
    assert "late.example.com" in await ui.html("/ui/")


async def test_a_new_stream_starts_with_the_current_version_while_the_watcher_still_holds_an_older_one(
    redis_server: LocalRedis, prefix: str, keys: Keys, redis: aioredis.Redis
) -> None:
    """An open dashboard keeps the watcher running between its reads; a page loaded after a change (a form's
    redirect) must not be told the watcher's older version, or it refreshes at once and loses its notice."""
    settings = ui_settings(redis_server.url, prefix, ui_events_seconds=3600)  # one read, then a long sleep
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    ui = Ui(client=client, keys=keys, redis=redis)
    try:
        await ui.logged_in()
        other_tab = await client.get("/ui/events")
        await version_event(other_tab)
        await ui.put_rule(RuleRecord(key="new.example.com", hostname="new.example.com", service="http://n:1"))
        page = stamp(await ui.html("/ui/"))
        assert await versions_until(ui, lambda _: True) == page
        other_tab.close()
    finally:
        await client.close()


async def _done(task: asyncio.Task[Any]) -> bool:
    return task.done()


async def test_manual_rule_and_access_group_forms_store_and_send_intents(ui: Ui) -> None:
    await ui.logged_in()
    saved = await ui.post(
        "/ui/manual-rules",
        hostname="wiki.example.com",
        service="http://10.0.0.9:3000",
        agent_id="ag-one",
        access_policy="authenticate",
        access_groups="staff",
    )
    assert saved.status == 302
    page = await ui.html("/ui/manual-rules")
    assert "Manual rule for wiki.example.com saved" in page and "http://10.0.0.9:3000" in page
    bad = await ui.post("/ui/manual-rules", hostname="wiki2.example.com", service="ftp://nope")
    assert bad.status == 302
    assert "service" in await ui.html("/ui/manual-rules"), "the admin API's validation message names the field"

    await ui.post("/ui/access-groups", name="staff", include="alice@example.com, @example.org", session_duration="8h")
    groups = await ui.html("/ui/access-groups")
    assert "Access group &#39;staff&#39; saved" in groups and "example.org" in groups
    listed = await (await ui.client.get("/api/v1/access-groups", headers=ADMIN)).json()
    [include] = [g["include"] for g in listed["groups"] if not g["system"]]
    assert include == [{"email": {"email": "alice@example.com"}}, {"email_domain": {"domain": "example.org"}}]

    tags = [type(i).__name__ for i in await stream_messages(ui.redis, ui.keys.intents, IntentMessage)]
    assert tags == ["ManualRuleUpserted", "AccessGroupUpserted"], "the invalid rule wrote nothing"


async def test_manual_rules_and_access_groups_are_edited_in_place(ui: Ui) -> None:
    await ui.logged_in()
    await ui.post("/ui/manual-rules", hostname="wiki.example.com", service="http://10.0.0.9:3000", agent_id="ag-one")
    [rule] = (await (await ui.client.get("/api/v1/manual-rules", headers=ADMIN)).json())["rules"]
    form = await ui.html(f"/ui/manual-rules?edit={rule['rule_id']}")
    assert f'name="rule_id" value="{rule["rule_id"]}"' in form and 'value="http://10.0.0.9:3000"' in form
    await ui.post(
        "/ui/manual-rules", rule_id=rule["rule_id"], hostname="wiki.example.com", service="http://10.0.0.9:4000",
        agent_id="ag-one", access_policy="bypass",
    )  # fmt: skip
    [edited] = (await (await ui.client.get("/api/v1/manual-rules", headers=ADMIN)).json())["rules"]
    assert edited["rule_id"] == rule["rule_id"], "an edit keeps the rule's id instead of adding a rule"
    assert edited["rule"]["service"] == "http://10.0.0.9:4000"
    assert edited["rule"]["access"]["policy"] == "bypass"

    # A rule with settings the form has no field for (an Access session duration) is not editable here: nothing
    # is dropped.
    access = {"policy": "authenticate", "session_duration": "8h"}
    api_rule = {"rule": {"hostname": "api.example.com", "service": "https://api:8443", "access": access}}
    created = await (await ui.client.post("/api/v1/manual-rules", json=api_rule, headers=ADMIN)).json()
    assert f"/ui/manual-rules?edit={created['rule_id']}" not in await ui.html("/ui/manual-rules")
    await ui.post(
        "/ui/manual-rules", rule_id=created["rule_id"], hostname="api.example.com", service="https://api:8443"
    )
    kept = await (await ui.client.get(f"/api/v1/manual-rules/{created['rule_id']}", headers=ADMIN)).json()
    assert kept["rule"]["access"] == access

    await ui.post("/ui/access-groups", name="staff", include="alice@example.com")
    listed = await (await ui.client.get("/api/v1/access-groups", headers=ADMIN)).json()
    [group] = [g for g in listed["groups"] if not g["system"]]
    assert 'value="alice@example.com"' in await ui.html(f"/ui/access-groups?edit={group['group_id']}")
    await ui.post(
        "/ui/access-groups", group_id=group["group_id"], name="staff", include="alice@example.com, @example.org"
    )
    listed = await (await ui.client.get("/api/v1/access-groups", headers=ADMIN)).json()
    [updated] = [g for g in listed["groups"] if not g["system"]]
    assert updated["group_id"] == group["group_id"]
    assert updated["include"] == [
        {"email": {"email": "alice@example.com"}},
        {"email_domain": {"domain": "example.org"}},
    ]
    tags = [type(i).__name__ for i in await stream_messages(ui.redis, ui.keys.intents, IntentMessage)]
    assert tags.count("ManualRuleUpserted") == 3 and tags.count("AccessGroupUpserted") == 2


async def test_live_stream_reports_every_change_the_api_itself_makes(ui: Ui) -> None:
    """Keys, their binding and revocation, manual rules, access groups and dead letters move the fingerprint (it no
    longer reads every document, so each of these writers must raise the read-model counter or be read directly)."""
    await ui.logged_in()
    ctx = ui.client.app[CONTEXT]
    response = await ui.client.get("/ui/events")
    versions: list[str] = []

    async def read_stream() -> None:
        while line := (await response.content.readline()).decode():
            if line.startswith("data:"):
                versions.append(json.loads(line.removeprefix("data:"))["version"])

    reader = asyncio.ensure_future(read_stream())

    async def changes(what: str, act: Callable[[], Awaitable[object]]) -> None:
        before = await fingerprint(ctx)
        await act()
        after = await fingerprint(ctx)
        assert after != before, f"{what} changes the live-update fingerprint"

        async def delivered() -> bool:
            return after in versions

        await wait_for(delivered, timeout=10, what=f"a 'changed' event after {what}")

    created: list[Any] = []

    async def generate() -> None:
        created.append(await (await ui.post("/ui/keys", label="host-7")).text())

    await changes("generating a key", generate)
    key = re.search(r'<code id="new-key">(fpk_[^<]+)</code>', created[0])
    assert key, "the new key is on the page"
    agent = {"Authorization": f"Bearer {key.group(1)}"}
    await changes(
        "an agent registering with it",
        lambda: ui.client.post("/api/v1/agents/register", json={"display_name": "h7"}, headers=agent),
    )
    key_id = re.search(r"<code>(key_[^<]+)</code>", await ui.html("/ui/keys"))
    assert key_id
    await changes("revoking it", lambda: ui.post("/ui/keys/revoke", key_id=key_id.group(1)))
    await changes(
        "saving a manual rule", lambda: ui.post("/ui/manual-rules", hostname="w.example.com", service="http://w:1")
    )
    await changes("saving an access group", lambda: ui.post("/ui/access-groups", name="ops", include="o@example.com"))
    letter = DeadLetter(
        source_stream=ui.keys.events,
        source_id="1-1",
        group="reconciler",
        consumer="r1",
        reason="permanent_error",
        error="boom",
        deliveries=5,
        payload={"m": '{"type":"x"}'},
    )
    entries: list[Any] = []

    async def dead_letter() -> None:
        entries.append(await ui.redis.xadd(ui.keys.dead_letters, encode(letter)))  # type: ignore[arg-type]

    await changes("a message being dead-lettered", dead_letter)
    await changes("replaying it", lambda: ui.post("/ui/dead-letters/replay", entry_id=entries[0].decode()))
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader
    response.close()
