"""Cloudflare calls per job, counted by the emulator per endpoint: every call costs rate-limit budget, so a
call that creeps back in fails here. Next to each count, the case that must still read Cloudflare first.
"""

from __future__ import annotations

import base64
import json
from collections import Counter

import pytest
import redis.asyncio as aioredis

from flareport_cfemu.testing import RunningEmulator
from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys
from flareport_common.messages.cfjobs import (
    AccessPolicyDef,
    DesiredAccessApp,
    EnsureTunnel,
    IngressEntry,
    SyncAccessApp,
    SyncTunnelIngress,
)
from flareport_common.messages.cfresults import TunnelEnsured
from flareport_dns_worker import tunnels
from fptest.dnsworker_harness import (
    GET_CONFIG,
    PUT_CONFIG,
    drain,
    ingress_of,
    job_results,
    results,
    send,
    service,
    settings_for,
    token_of,
)

from .conftest import DASHBOARD_RULE, TUNNEL_ID

CREATE_TUNNEL = "POST /accounts/{account_id}/cfd_tunnel"
LIST_TUNNELS = "GET /accounts/{account_id}/cfd_tunnel"
GET_TOKEN = "GET /accounts/{account_id}/cfd_tunnel/{tunnel_id}/token"
LIST_APPS = "GET /accounts/{account_id}/access/apps"
CREATE_APP = "POST /accounts/{account_id}/access/apps"
CREATE_TAG = "POST /accounts/{account_id}/access/tags"
GET_TAG = "GET /accounts/{account_id}/access/tags/{tag_name}"
CATCH_ALL = {"service": "http_status:404"}


def calls(emu: RunningEmulator) -> dict[str, int]:
    return dict(Counter(emu.emulator.log.counters))


async def ensured(redis: aioredis.Redis, keys: Keys) -> list[TunnelEnsured]:
    return [r for r in await results(redis, keys) if isinstance(r, TunnelEnsured)]


def ingress_job(tunnel_id: str, version: str, *hostnames: str) -> SyncTunnelIngress:
    rules = tuple(IngressEntry(hostname=h, service="http://web:8080") for h in hostnames)
    return SyncTunnelIngress(tunnel_id=tunnel_id, version=version, rules=rules)


def token_tunnel(token: str | None) -> str:
    assert token, "an ensured tunnel must come with its token"
    return str(json.loads(base64.b64decode(token))["t"])


async def test_a_new_tunnel_and_its_first_ingress_cost_one_create_and_one_put(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        await send(redis, keys, [EnsureTunnel(agent_id="a1", tunnel_name="flareport-a1")])
        await drain(svc)
        [result] = await ensured(redis, keys)
        assert result.ok and result.created and result.tunnel_id
        assert token_tunnel(await token_of(redis, keys, result)) == result.tunnel_id, (
            "the token of the create's answer is handed out"
        )
        await send(redis, keys, [ingress_job(result.tunnel_id, "v1", "web.example.com")])
        await drain(svc)
        assert all(r.ok for r in await job_results(redis, keys))
        assert ingress_of(emu, result.tunnel_id) == [
            {"hostname": "web.example.com", "service": "http://web:8080"},
            CATCH_ALL,
        ]
        assert calls(emu) == {CREATE_TUNNEL: 1, PUT_CONFIG: 1}, "no lookup, token GET or configuration GET"

        # Once written, the configuration is no longer known to be ours alone: a dashboard edit is kept.
        emu.emulator.state.tunnel_configs[result.tunnel_id]["config"]["ingress"].insert(0, DASHBOARD_RULE)
        emu.emulator.clear_requests()
        await send(redis, keys, [ingress_job(result.tunnel_id, "v2", "web.example.com", "api.example.com")])
        await drain(svc)
        assert calls(emu) == {GET_CONFIG: 1, PUT_CONFIG: 1}, "a later change reads before it writes"
        hosts = [rule.get("hostname") for rule in ingress_of(emu, result.tunnel_id)]
        assert hosts == ["web.example.com", "api.example.com", DASHBOARD_RULE["hostname"], None]
    finally:
        await svc.close()


async def test_a_tunnel_of_that_name_is_adopted_with_its_rules_kept(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    # "dashboard-tunnel" exists with a dashboard rule: made by someone else, or by an attempt of ours that
    # crashed before its result was published. Either way it is adopted, never created twice.
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        await send(redis, keys, [EnsureTunnel(agent_id="a2", tunnel_name="dashboard-tunnel")])
        await drain(svc)
        [result] = await ensured(redis, keys)
        assert result.ok and not result.created and result.tunnel_id == TUNNEL_ID, "the live tunnel is adopted"
        assert token_tunnel(await token_of(redis, keys, result)) == TUNNEL_ID
        assert calls(emu) == {CREATE_TUNNEL: 1, LIST_TUNNELS: 1, GET_TOKEN: 1}, "refused create, lookup, token"
        assert [t["name"] for t in emu.emulator.state.tunnels.values()] == ["dashboard-tunnel"]

        await send(redis, keys, [ingress_job(TUNNEL_ID, "v1", "web.example.com")])
        await drain(svc)
        hosts = [rule.get("hostname") for rule in ingress_of(emu, TUNNEL_ID)]
        assert hosts == ["web.example.com", DASHBOARD_RULE["hostname"], None], "the dashboard rule is kept"
        assert calls(emu)[GET_CONFIG] == 1, "an adopted tunnel's configuration is read before the PUT"
    finally:
        await svc.close()


async def test_a_create_whose_answer_was_lost_finds_the_tunnel_and_reads_before_its_first_put(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    # The create reached Cloudflare but its answer did not come back (the connection dropped): the tunnel is
    # found by name, its token fetched, and its configuration - not known from an answer - read before a PUT.
    # The emulator cannot apply a request and then drop it, so the applied create is the seeded tunnel.
    emu.emulator.set_faults([{"endpoint": CREATE_TUNNEL, "sequence": ["drop"]}])
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        await send(redis, keys, [EnsureTunnel(agent_id="a5", tunnel_name="dashboard-tunnel")])
        await drain(svc)
        [result] = await ensured(redis, keys)
        assert (
            result.ok
            and result.tunnel_id == TUNNEL_ID
            and token_tunnel(await token_of(redis, keys, result)) == TUNNEL_ID
        )
        assert calls(emu) == {CREATE_TUNNEL: 1, LIST_TUNNELS: 1, GET_TOKEN: 1}
        assert len(emu.emulator.state.tunnels) == 1, "an ambiguous create is never sent again"

        await send(redis, keys, [ingress_job(TUNNEL_ID, "v1", "web.example.com")])
        await drain(svc)
        hosts = [rule.get("hostname") for rule in ingress_of(emu, TUNNEL_ID)]
        assert hosts == ["web.example.com", DASHBOARD_RULE["hostname"], None], "the dashboard rule is kept"
        assert calls(emu)[GET_CONFIG] == 1
    finally:
        await svc.close()


async def test_a_new_tunnel_whose_first_rules_come_late_is_read_before_the_put(
    emu: RunningEmulator,
    redis: aioredis.Redis,
    redis_server: LocalRedis,
    keys: Keys,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A trust window of zero stands for a first ingress job that arrives after the window has passed.
    monkeypatch.setattr(tunnels, "FRESH_TUNNEL_TRUST_SECONDS", 0.0)
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        await send(redis, keys, [EnsureTunnel(agent_id="a3", tunnel_name="flareport-a3")])
        await drain(svc)
        [result] = await ensured(redis, keys)
        assert result.ok and result.tunnel_id
        # Meanwhile someone adds a rule in the dashboard.
        emu.emulator.state.tunnel_configs[result.tunnel_id] = {
            "version": 1,
            "config": {"ingress": [DASHBOARD_RULE, CATCH_ALL]},
            "created_at": "2026-01-01T00:00:00Z",
        }
        await send(redis, keys, [ingress_job(result.tunnel_id, "v1", "web.example.com")])
        await drain(svc)
        hosts = [rule.get("hostname") for rule in ingress_of(emu, result.tunnel_id)]
        assert hosts == ["web.example.com", DASHBOARD_RULE["hostname"], None], "the dashboard rule is kept"
        assert calls(emu)[GET_CONFIG] == 1
    finally:
        await svc.close()


def access_job(hostname: str) -> SyncAccessApp:
    allow = AccessPolicyDef(name="staff", decision="allow", include=({"email_domain": {"domain": "example.com"}},))
    app = DesiredAccessApp(hostname=hostname, inline=(allow,))
    return SyncAccessApp(hostname=hostname, version="v1", app=app)


async def test_a_fresh_worker_creates_the_access_tag_once_for_many_concurrent_apps(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    names = [f"app{i:02d}.example.com" for i in range(20)]
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        await send(redis, keys, [access_job(name) for name in names])
        await drain(svc)
        assert all(r.ok and not r.errors for r in await job_results(redis, keys))
        assert sorted(a["domain"] for a in emu.emulator.state.access_apps.values()) == names
        # A new app is created without a lookup: Cloudflare refuses a second app on a domain.
        assert calls(emu) == {CREATE_TAG: 1, CREATE_APP: 20}, "the tag is created once, each app with one call"
    finally:
        await svc.close()


async def test_an_access_tag_made_earlier_is_used_after_one_check(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    # Another replica (or an earlier run) created the tag: the refused create is checked, then apps are made.
    client = emu.async_client()
    await client.post(f"/accounts/{emu.account_id}/access/tags", body={"name": "flareport"}, cast_to=object)
    emu.emulator.clear_requests()
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        await send(redis, keys, [access_job("one.example.com"), access_job("two.example.com")])
        await drain(svc)
        assert all(r.ok and not r.errors for r in await job_results(redis, keys))
        assert len(emu.emulator.state.access_apps) == 2
        assert calls(emu) == {CREATE_TAG: 1, GET_TAG: 1, CREATE_APP: 2}
    finally:
        await svc.close()
        await client.close()


async def test_an_app_of_ours_whose_observed_copy_was_lost_is_adopted_after_one_refused_create(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        await send(redis, keys, [access_job("kept.example.com")])
        await drain(svc)
        [app] = emu.emulator.state.access_apps.values()
        await redis.delete(keys.target_observed(access_job("kept.example.com").target))  # as after a Redis loss
        emu.emulator.clear_requests()

        again = SyncAccessApp(hostname="kept.example.com", version="v2", app=access_job("kept.example.com").app)
        await send(redis, keys, [again])
        await drain(svc)
        assert all(r.ok and not r.errors for r in await job_results(redis, keys))
        assert list(emu.emulator.state.access_apps.values()) == [app], "the same app, unchanged, and no second one"
        # The create is refused (the domain has an app), the lookup finds it tagged as ours and equal: no write.
        assert calls(emu) == {CREATE_APP: 1, LIST_APPS: 1}
        assert await redis.get(keys.target_observed(access_job("kept.example.com").target)), "observed again"
    finally:
        await svc.close()
