"""Tunnel lifecycle (ensure, adopt, delete only our own) and Access apps (tagged, foreign ones untouched)."""

from __future__ import annotations

import base64
import json
from typing import Any

import redis.asyncio as aioredis

from flareport_cfemu.testing import RunningEmulator
from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys
from flareport_common.messages.cfjobs import (
    AccessPolicyDef,
    DeleteTunnel,
    DesiredAccessApp,
    EnsureTunnel,
    ReusablePolicyRef,
    SyncAccessApp,
    VerifyTarget,
)
from flareport_common.messages.cfresults import TunnelEnsured
from fptest.dnsworker_harness import drain, job_results, results, send, service, settings_for

from .conftest import TUNNEL_ID

BYPASS = AccessPolicyDef(name="public-default-bypass", decision="bypass", include=({"everyone": {}},))
STAFF = AccessPolicyDef(name="staff", decision="allow", include=({"email_domain": {"domain": "example.com"}},))


async def ensured(redis: aioredis.Redis, keys: Keys) -> list[TunnelEnsured]:
    return [r for r in await results(redis, keys) if isinstance(r, TunnelEnsured)]


async def test_ensure_creates_a_remote_tunnel_once_and_delete_removes_only_ours(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        await send(redis, keys, [EnsureTunnel(agent_id="a1", tunnel_name="flareport-a1")])
        await drain(svc)
        await send(redis, keys, [EnsureTunnel(agent_id="a1", tunnel_name="flareport-a1")])
        await drain(svc)
        first, second = await ensured(redis, keys)
        assert first.ok and first.created and first.tunnel_id and first.token_ref and first.token is None
        assert second.ok and not second.created and second.tunnel_id == first.tunnel_id, "a second ensure adopts"
        # The results stream says only where the token waits for its agent.
        stored: Any = await redis.get(keys.agent_secret("a1", first.token_ref))
        token = json.loads(base64.b64decode(stored))
        assert token["t"] == first.tunnel_id, "the token is cloudflared's TUNNEL_TOKEN for that tunnel"
        tunnel = emu.emulator.state.tunnels[first.tunnel_id]
        assert tunnel["config_src"] == "cloudflare"

        # An existing tunnel adopted by name is never deleted; the one we created is.
        await send(redis, keys, [EnsureTunnel(agent_id="a2", tunnel_name="dashboard-tunnel", create=False)])
        await drain(svc)
        assert (await ensured(redis, keys))[-1].tunnel_id == TUNNEL_ID
        await send(redis, keys, [DeleteTunnel(tunnel_id=TUNNEL_ID), DeleteTunnel(tunnel_id=first.tunnel_id)])
        await drain(svc)
        refused, deleted = await job_results(redis, keys)
        assert not refused.ok and refused.errors[0].kind == "refused"
        assert emu.emulator.state.tunnels[TUNNEL_ID]["deleted_at"] is None
        assert deleted.ok and emu.emulator.state.tunnels[first.tunnel_id]["deleted_at"] is not None
    finally:
        await svc.close()


async def test_ensure_without_create_reports_a_missing_tunnel(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        await send(redis, keys, [EnsureTunnel(agent_id="a9", tunnel_name="nope", create=False)])
        await drain(svc)
        [result] = await ensured(redis, keys)
        assert not result.ok and result.error is not None and "nope" in result.error.message
    finally:
        await svc.close()


async def test_access_app_is_created_tagged_updated_and_deleted(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    svc = service(settings_for(redis_server.url, prefix, emu), redis)

    def apps() -> list[dict[str, object]]:
        return list(emu.emulator.state.access_apps.values())

    def app_job(version: str, app: DesiredAccessApp | None) -> SyncAccessApp:
        return SyncAccessApp(hostname="app.example.com", version=version, app=app)

    inline = DesiredAccessApp(hostname="app.example.com", inline=(BYPASS,))
    grouped = DesiredAccessApp(
        hostname="app.example.com", reusable=(ReusablePolicyRef(group_id="staff", policy=STAFF),)
    )
    try:
        await send(redis, keys, [app_job("v1", inline)])
        await drain(svc)
        [app] = apps()
        assert app["domain"] == "app.example.com" and app["tags"] == ["flareport"]
        assert app["app_launcher_visible"] is False, "always sent: Cloudflare's default would show it"
        emu.emulator.clear_requests()
        await send(redis, keys, [app_job("v2", inline)])
        await drain(svc)
        assert emu.emulator.log.total == 0, "an unchanged app costs no call"

        await send(redis, keys, [app_job("v3", grouped)])
        await drain(svc)
        [app] = apps()
        reusable = [p for p in emu.emulator.state.access_policies.values() if p["reusable"]]
        assert [p["name"] for p in reusable] == ["flareport group staff"]
        assert app["_policy_links"] == [{"id": reusable[0]["id"], "precedence": 1}], "groups alone: only their policy"
        assert not [p for p in emu.emulator.state.access_policies.values() if not p["reusable"]], "inline ones gone"

        await send(redis, keys, [app_job("v4", None)])
        await drain(svc)
        assert apps() == []
        assert all(r.ok for r in await job_results(redis, keys))
    finally:
        await svc.close()


async def test_foreign_access_app_is_never_touched(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    emu.emulator.seed({"access_apps": [{"domain": "app.example.com", "type": "self_hosted", "name": "by hand"}]})
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        spec = DesiredAccessApp(hostname="app.example.com", inline=(BYPASS,))
        await send(redis, keys, [SyncAccessApp(hostname="app.example.com", version="v1", app=spec)])
        await send(redis, keys, [SyncAccessApp(hostname="app.example.com", version="v2", app=None)])
        await drain(svc)
        [conflict, _] = await job_results(redis, keys)
        assert [(e.kind, e.hostname) for e in conflict.errors] == [("conflict", "app.example.com")]
        [app] = emu.emulator.state.access_apps.values()
        assert app["name"] == "by hand" and app["tags"] == [], "an app without our tag must stay as it is"
    finally:
        await svc.close()


async def test_dockflare_access_apps_are_adopted_in_place_only_when_the_operator_opted_in(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    emu.emulator.seed(
        {
            "access_apps": [
                {"domain": "app.example.com", "type": "self_hosted", "name": "DockFlare-app.example.com"},
                {"domain": "hand.example.com", "type": "self_hosted", "name": "made by hand"},
            ]
        }
    )
    ids = {app["domain"]: app_id for app_id, app in emu.emulator.state.access_apps.items()}
    jobs = [
        SyncAccessApp(hostname=h, version="v1", app=DesiredAccessApp(hostname=h, inline=(BYPASS,)))
        for h in ("app.example.com", "hand.example.com")
    ]

    # Not opted in: DockFlare's app is foreign like any other.
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        await send(redis, keys, jobs)
        await drain(svc)
        assert {e.hostname for r in await job_results(redis, keys) for e in r.errors if e.kind == "conflict"} == {
            "app.example.com",
            "hand.example.com",
        }
    finally:
        await svc.close()
    assert all(app["tags"] == [] for app in emu.emulator.state.access_apps.values())

    emu.emulator.clear_requests()
    svc = service(settings_for(redis_server.url, prefix, emu, FLAREPORT_ADOPT_DOCKFLARE_ACCESS="true"), redis)
    try:
        await send(redis, keys, [SyncAccessApp(hostname=j.hostname, version="v2", app=j.app) for j in jobs])
        await drain(svc)
        latest = {r.target: r for r in await job_results(redis, keys) if r.version == "v2"}
    finally:
        await svc.close()

    apps = {app["domain"]: (app_id, app) for app_id, app in emu.emulator.state.access_apps.items()}
    app_id, adopted = apps["app.example.com"]
    assert app_id == ids["app.example.com"], "adopted in place: the same app, never deleted and recreated"
    assert adopted["tags"] == ["flareport"] and adopted["name"] == "app.example.com", "our tag and settings now"
    [note] = next(r for t, r in latest.items() if "app.example.com" in t and "hand" not in t).notes
    assert note.hostname == "app.example.com" and "DockFlare-app.example.com" in note.message
    assert apps["hand.example.com"][1]["tags"] == [], "an app DockFlare did not name stays untouched"
    hand = next(r for t, r in latest.items() if "hand.example.com" in t)
    assert [e.kind for e in hand.errors] == ["conflict"] and not hand.notes
    log = emu.emulator.log
    assert log.count("DELETE /accounts/{account_id}/access/apps/{app_id}") == 0, "no app was deleted"
    created = [k for k, n in log.status_counters.items() if k.startswith("POST /accounts/{account_id}/access/apps 2")]
    assert created == [] and len(emu.emulator.state.access_apps) == 2, "no app was created"
    assert log.count("PUT /accounts/{account_id}/access/apps/{app_id}") == 1, "one write: the adoption"


async def test_an_app_mixing_both_kinds_or_without_policy_is_refused_and_the_app_in_place_kept(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    staff = ReusablePolicyRef(group_id="staff", policy=STAFF)
    try:
        kept = DesiredAccessApp(hostname="app.example.com", reusable=(staff,))
        await send(redis, keys, [SyncAccessApp(hostname="app.example.com", version="v1", app=kept)])
        await drain(svc)
        [before] = emu.emulator.state.access_apps.values()
        emu.emulator.clear_requests()

        mixed = DesiredAccessApp(hostname="app.example.com", reusable=(staff,), inline=(BYPASS,))
        empty = DesiredAccessApp(hostname="app.example.com")
        regex = DesiredAccessApp(hostname="app.example.com", path="^/api/.*", inline=(BYPASS,))
        await send(
            redis,
            keys,
            [
                SyncAccessApp(hostname="app.example.com", version="v2", app=mixed),
                SyncAccessApp(hostname="app.example.com", version="v3", app=empty),
                SyncAccessApp(hostname="app.example.com", path="^/api/.*", version="v1", app=regex),
            ],
        )
        await drain(svc)
        _, *refused = await job_results(redis, keys)
        assert [(r.ok, r.errors[0].kind) for r in refused] == [(False, "invalid")] * 3
        messages = sorted(r.errors[0].message for r in refused)  # two targets: their jobs may run in any order
        assert ["no policy" in m for m in messages] == [False, True, False]
        assert ["both reusable" in m for m in messages] == [True, False, False]
        assert ["regular expression" in m for m in messages] == [False, False, True]
        assert emu.emulator.log.total == 0, "refused before any call"
        [after] = emu.emulator.state.access_apps.values()
        assert after == before, "fail closed: the app in place (its protection) stays"
    finally:
        await svc.close()


async def test_an_app_linking_groups_is_not_rewritten_and_a_changed_group_updates_only_its_policy(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    admins = AccessPolicyDef(name="admins", decision="allow", include=({"email": {"email": "a@example.com"}},))

    def job(version: str, *refs: ReusablePolicyRef) -> SyncAccessApp:
        app = DesiredAccessApp(hostname="app.example.com", path="/admin/", reusable=refs)
        return SyncAccessApp(hostname="app.example.com", path="/admin/", version=version, app=app)

    staff = ReusablePolicyRef(group_id="staff", policy=STAFF)
    try:
        await send(redis, keys, [job("v1", staff, ReusablePolicyRef(group_id="admins", policy=admins))])
        await drain(svc)
        [app] = emu.emulator.state.access_apps.values()
        assert app["domain"] == "app.example.com/admin"
        by_name = {p["name"]: p["id"] for p in emu.emulator.state.access_policies.values()}
        assert app["_policy_links"] == [
            {"id": by_name["flareport group staff"], "precedence": 1},
            {"id": by_name["flareport group admins"], "precedence": 2},
        ]

        # The same app again (a new version of the job): read, compared by policy id and precedence, not written.
        await send(redis, keys, [job("v2", staff, ReusablePolicyRef(group_id="admins", policy=admins))])
        await drain(svc)
        assert (await job_results(redis, keys))[-1].writes == 0

        # A group's definition changes: its reusable policy is updated in place, the app keeps its links.
        wider = AccessPolicyDef(name="admins", decision="allow", include=({"email_domain": {"domain": "example.com"}},))
        await send(redis, keys, [job("v3", staff, ReusablePolicyRef(group_id="admins", policy=wider))])
        await drain(svc)
        last = (await job_results(redis, keys))[-1]
        assert last.ok and last.writes == 1, "one PUT of the policy, no app write"
        assert emu.emulator.state.access_policies[by_name["flareport group admins"]]["include"] == [
            {"email_domain": {"domain": "example.com"}}
        ]
    finally:
        await svc.close()


async def test_an_app_on_a_path_with_capitals_converges_and_is_not_rewritten(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    app = DesiredAccessApp(hostname="App.example.com", path="/Admin", inline=(BYPASS,))
    try:
        for version in ("v1", "v2"):
            await send(
                redis, keys, [SyncAccessApp(hostname="App.example.com", path="/Admin", version=version, app=app)]
            )
            await drain(svc)
        await send(redis, keys, [VerifyTarget(target="access:App.example.com/Admin")])
        await drain(svc)
        results = await job_results(redis, keys)
        assert [(r.ok, r.errors, r.writes) for r in results] == [(True, (), 2), (True, (), 0), (True, (), 0)]
        [stored] = emu.emulator.state.access_apps.values()
        assert stored["domain"] == "app.example.com/Admin"
    finally:
        await svc.close()
