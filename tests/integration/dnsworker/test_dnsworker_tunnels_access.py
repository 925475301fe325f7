"""Tunnel lifecycle (ensure, adopt, delete only our own) and Access apps (tagged, foreign ones untouched)."""

from __future__ import annotations

import base64
import json
from typing import Any

import redis.asyncio as aioredis

from flareport_cfemu.testing import RunningEmulator
from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys
from flareport_common.messages.cfjobs import DeleteTunnel, DesiredAccessApp, EnsureTunnel, SyncAccessApp
from flareport_common.messages.cfresults import TunnelEnsured
from flareport_common.messages.rules import AccessSpec
from fptest.dnsworker_harness import drain, job_results, results, send, service, settings_for

from .conftest import TUNNEL_ID


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

    def app_job(
        version: str, spec: AccessSpec | None, groups: dict[str, dict[str, object]] | None = None
    ) -> SyncAccessApp:
        app = None if spec is None else DesiredAccessApp(hostname="app.example.com", spec=spec, groups=groups or {})
        return SyncAccessApp(hostname="app.example.com", version=version, app=app)

    try:
        await send(redis, keys, [app_job("v1", AccessSpec(policy="bypass"))])
        await drain(svc)
        [app] = apps()
        assert app["domain"] == "app.example.com" and app["tags"] == ["flareport"]
        emu.emulator.clear_requests()
        await send(redis, keys, [app_job("v2", AccessSpec(policy="bypass"))])
        await drain(svc)
        assert emu.emulator.log.total == 0, "an unchanged app costs no call"

        group: dict[str, object] = {"include": [{"email_domain": {"domain": "example.com"}}]}
        await send(redis, keys, [app_job("v3", AccessSpec(groups=("staff",)), {"staff": group})])
        await drain(svc)
        [app] = apps()
        reusable = [p for p in emu.emulator.state.access_policies.values() if p["reusable"]]
        assert [p["name"] for p in reusable] == ["flareport group staff"]
        assert app["_policy_links"] == [{"id": reusable[0]["id"], "precedence": 1}], "groups alone: only their policy"

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
        spec = DesiredAccessApp(hostname="app.example.com", spec=AccessSpec(policy="bypass"))
        await send(redis, keys, [SyncAccessApp(hostname="app.example.com", version="v1", app=spec)])
        await send(redis, keys, [SyncAccessApp(hostname="app.example.com", version="v2", app=None)])
        await drain(svc)
        [conflict, _] = await job_results(redis, keys)
        assert [(e.kind, e.hostname) for e in conflict.errors] == [("conflict", "app.example.com")]
        [app] = emu.emulator.state.access_apps.values()
        assert app["name"] == "by hand" and app["tags"] == [], "an app without our tag must stay as it is"
    finally:
        await svc.close()
