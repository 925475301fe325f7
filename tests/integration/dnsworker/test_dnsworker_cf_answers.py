"""The dns-worker against Cloudflare's less friendly answers, as the stricter emulator gives them: a tunnel that
still has connections, an Access tag that already exists, 409s, codes nested in ``error_chain``, missing token
permissions, Zero Trust not set up, the record quota of new Free zones, and lists without ``total_pages``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from flareport_cfemu.testing import ACCOUNT_ID, RunningEmulator
from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys
from flareport_common.messages.cfjobs import (
    AccessPolicyDef,
    DeleteTunnel,
    DesiredAccessApp,
    DesiredRecord,
    EnsureTunnel,
    IngressEntry,
    SyncAccessApp,
    SyncDnsZone,
    SyncTunnelIngress,
)
from flareport_common.messages.cfresults import JobResult, TunnelEnsured
from fptest.dnsworker_harness import (
    BATCH,
    PUT_CONFIG,
    TOKEN,
    drain,
    job_results,
    records_named,
    results,
    send,
    service,
    settings_for,
)
from fptest.waiting import wait_for

from .conftest import TUNNEL_ID

SINGLE_POST = "POST /zones/{zone_id}/dns_records"
CREATE_APP = "POST /accounts/{account_id}/access/apps"
CREATE_TAG = "POST /accounts/{account_id}/access/tags"
CLEAN_CONNECTIONS = "DELETE /accounts/{account_id}/cfd_tunnel/{tunnel_id}/connections"
DELETE_TUNNEL = "DELETE /accounts/{account_id}/cfd_tunnel/{tunnel_id}"


def app_job(hostname: str, version: str = "v1") -> SyncAccessApp:
    bypass = AccessPolicyDef(name="public-default-bypass", decision="bypass", include=({"everyone": {}},))
    app = DesiredAccessApp(hostname=hostname, inline=(bypass,))
    return SyncAccessApp(hostname=hostname, version=version, app=app)


async def ensure_our_tunnel(redis: aioredis.Redis, keys: Keys, svc: Any, name: str) -> str:
    await send(redis, keys, [EnsureTunnel(agent_id=name, tunnel_name=name)])
    await drain(svc)
    [ensured] = [r for r in await results(redis, keys) if isinstance(r, TunnelEnsured) and r.agent_id == name]
    assert ensured.ok and ensured.created and ensured.tunnel_id
    return ensured.tunnel_id


# ---- tunnel deletion --------------------------------------------------------------------------------------------


async def test_tunnel_is_deleted_once_its_connections_drain_and_the_wait_is_reported(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    # Connections of a stopped connector linger far longer than the test: only their cleanup lets the delete through.
    emu.emulator.configure(connection_linger_seconds=3600)
    svc = service(settings_for(redis_server.url, prefix, emu, CLOUDFLARE_TUNNEL_DELETE_DEADLINE_SECONDS=30), redis)
    try:
        tunnel_id = await ensure_our_tunnel(redis, keys, svc, "agent-gone")
        async with emu.control() as control:
            await control.connect_tunnel(tunnel_id)  # the agent's cloudflared has not stopped yet
        await send(redis, keys, [DeleteTunnel(tunnel_id=tunnel_id, agent_id="agent-gone")])
        worker = asyncio.create_task(drain(svc))

        async def waiting() -> list[JobResult]:
            return [r for r in await job_results(redis, keys) if r.job_type == "delete_tunnel"]

        [pending] = await wait_for(waiting, timeout=20, what="a result saying the deletion waits")
        assert not pending.ok and pending.errors[0].kind == "pending"
        assert "active connections" in pending.errors[0].message and pending.errors[0].code == 1022
        assert emu.emulator.state.tunnels[tunnel_id]["deleted_at"] is None, "never deleted under a running connector"
        assert not worker.done(), "the worker keeps retrying until the deadline"

        async with emu.control() as control:
            await control.disconnect_tunnel(tunnel_id)  # the connector stops; its connections linger
        await asyncio.wait_for(worker, timeout=30)
        pending_again, done = await waiting()
        assert pending_again == pending and done.ok, "one progress report, then the final result"
        assert emu.emulator.state.tunnels[tunnel_id]["deleted_at"] is not None
        assert emu.emulator.count(CLEAN_CONNECTIONS) >= 1, "the lingering connections were cleaned up"
        cascaded = [r for r in emu.emulator.log.snapshot()["requests"] if r["endpoint"] == DELETE_TUNNEL]
        assert cascaded[-1]["status"] == 200
        assert not await redis.sismember(keys.cf_created_tunnels, tunnel_id)
    finally:
        await svc.close()


async def test_a_connector_that_never_stops_gets_its_tunnel_deleted_with_cascade_at_the_deadline(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    svc = service(settings_for(redis_server.url, prefix, emu, CLOUDFLARE_TUNNEL_DELETE_DEADLINE_SECONDS=1), redis)
    try:
        tunnel_id = await ensure_our_tunnel(redis, keys, svc, "agent-stuck")
        async with emu.control() as control:
            await control.connect_tunnel(tunnel_id)
        await send(redis, keys, [DeleteTunnel(tunnel_id=tunnel_id, agent_id="agent-stuck")])
        await asyncio.wait_for(drain(svc), timeout=30)
        final = [r for r in await job_results(redis, keys) if r.job_type == "delete_tunnel"][-1]
        assert final.ok
        assert emu.emulator.state.tunnels[tunnel_id]["deleted_at"] is not None
    finally:
        await svc.close()


# ---- Access tag -------------------------------------------------------------------------------------------------


async def test_the_access_tag_that_exists_counts_as_created_after_a_restart_and_on_a_second_replica(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    settings = settings_for(redis_server.url, prefix, emu)
    first = service(settings, redis, "w1")
    try:
        await send(redis, keys, [app_job("one.example.com")])
        await drain(first)
    finally:
        await first.close()
    # A restart, and two fresh replicas at once: each creates the tag, Cloudflare answers 409 to all but one.
    restarted, other = service(settings, redis, "w1"), service(settings, redis, "w2")
    try:
        await send(redis, keys, [app_job("two.example.com"), app_job("three.example.com")])
        await asyncio.wait_for(asyncio.gather(drain(restarted), drain(other)), timeout=60)
        outcomes = await job_results(redis, keys)
        assert sorted(r.target for r in outcomes) == [
            "access:one.example.com",
            "access:three.example.com",
            "access:two.example.com",
        ]
        assert all(r.ok and not r.errors for r in outcomes), outcomes
        domains = sorted(a["domain"] for a in emu.emulator.state.access_apps.values())
        assert domains == ["one.example.com", "three.example.com", "two.example.com"]
        assert emu.emulator.count(CREATE_TAG) >= 2, "the later processes were refused the tag, and carried on"
        assert list(emu.emulator.state.access_tags[ACCOUNT_ID]) == ["flareport"]
    finally:
        await restarted.close()
        await other.close()


# ---- error taxonomy ---------------------------------------------------------------------------------------------


async def test_a_409_to_a_put_is_a_conflict_reported_at_once_not_retried(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    emu.emulator.add_fault(
        {"endpoint": PUT_CONFIG, "sequence": [409], "error_code": 1000, "error_message": "configuration was changed"}
    )
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        rules = (IngressEntry(hostname="put.example.com", service="http://web:8080"),)
        await send(redis, keys, [SyncTunnelIngress(tunnel_id=TUNNEL_ID, version="v1", rules=rules)])
        await asyncio.wait_for(drain(svc), timeout=30)
        [result] = await job_results(redis, keys)
        assert not result.ok and result.errors[0].kind == "conflict", result
        assert emu.emulator.count(PUT_CONFIG) == 1, "a 409 is an answer, never repeated blindly"
    finally:
        await svc.close()


async def test_an_access_create_conflict_the_lookup_cannot_find_is_a_conflict_not_a_loop(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    message = "access.api.error.application_already_exists"
    emu.emulator.add_fault(
        {"endpoint": CREATE_APP, "sequence": [409, 409], "error_code": 11010, "error_message": message}
    )
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        await send(redis, keys, [app_job("hidden.example.com")])
        await asyncio.wait_for(drain(svc), timeout=30)
        [result] = await job_results(redis, keys)
        assert result.ok
        [error] = result.errors
        assert (error.kind, error.hostname, error.code) == ("conflict", "hidden.example.com", 11010)
        assert emu.emulator.count(CREATE_APP) == 2, "the create, then once more after the lookup found nothing"
    finally:
        await svc.close()


async def test_a_record_conflict_nested_in_error_chain_is_unpacked_and_treated_as_a_conflict(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    # Refused in every round of the job (the batch, then its single call, three rounds).
    nested = {
        "sequence": [400, 400, 400],
        "error_code": 1004,
        "error_message": "DNS Validation Error",
        "error_chain": [{"code": 81057, "message": "The record already exists."}],
    }
    emu.emulator.set_faults(
        [
            {**nested, "endpoint": BATCH, "sequence": [400] * 3},
            {**nested, "endpoint": SINGLE_POST, "sequence": [400] * 3},
        ]
    )
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        job = SyncDnsZone(
            zone_name="example.com", version="v1", records=(DesiredRecord(name="dup.example.com", tunnel_id=TUNNEL_ID),)
        )
        await send(redis, keys, [job])
        await asyncio.wait_for(drain(svc), timeout=30)
        [result] = await job_results(redis, keys)
        assert [(e.kind, e.code, e.hostname) for e in result.errors] == [("conflict", 81057, "dup.example.com")]
        # A conflict is a contradiction of the observed copy: the zone was read again, and nothing was remembered
        # as a refused write (the next job tries again, and now goes through).
        assert emu.emulator.count("GET /zones/{zone_id}/dns_records") >= 2
        await send(redis, keys, [SyncDnsZone(zone_name="example.com", version="v2", records=job.records)])
        await drain(svc)
        assert (await job_results(redis, keys))[-1].errors == ()
    finally:
        await svc.close()


async def test_a_missing_dns_permission_fails_the_job_naming_it_without_single_calls(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    emu.emulator.add_fault(
        {"endpoint": BATCH, "sequence": [403], "error_code": 10000, "error_message": "Authentication error"}
    )
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        records = tuple(DesiredRecord(name=f"p{i}.example.com", tunnel_id=TUNNEL_ID) for i in range(3))
        await send(redis, keys, [SyncDnsZone(zone_name="example.com", version="v1", records=records)])
        await asyncio.wait_for(drain(svc), timeout=30)
        [result] = await job_results(redis, keys)
        assert not result.ok
        [error] = result.errors
        assert error.kind == "permission" and error.code == 10000
        assert "Zone > DNS > Edit" in error.message
        assert emu.emulator.count(SINGLE_POST) == 0, "a token problem is not isolated record by record"
        assert emu.emulator.count(BATCH) == 1, "nor retried"
    finally:
        await svc.close()


async def test_a_missing_tunnel_permission_is_named_for_the_agent(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    emu.emulator.add_fault(
        {
            "endpoint": "POST /accounts/{account_id}/cfd_tunnel",
            "sequence": [403],
            "error_code": 9109,
            "error_message": "Unauthorized to access requested resource",
        }
    )
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        await send(redis, keys, [EnsureTunnel(agent_id="a1", tunnel_name="flareport-a1")])
        await asyncio.wait_for(drain(svc), timeout=30)
        [ensured] = [r for r in await results(redis, keys) if isinstance(r, TunnelEnsured)]
        assert not ensured.ok and ensured.error is not None
        assert ensured.error.kind == "permission" and "Cloudflare Tunnel > Edit" in ensured.error.message
    finally:
        await svc.close()


async def test_zero_trust_not_enabled_is_a_clear_per_rule_error(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    emu.emulator.add_fault(
        {
            "endpoint": "/accounts/{account_id}/access/tags",
            "error_rate": 1.0,
            "error_status": 403,
            "error_code": 12130,
            "error_message": "access.api.error.not_enabled: Zero Trust is not enabled for this account",
        }
    )
    emu.emulator.add_fault(
        {
            "endpoint": CREATE_APP,
            "error_rate": 1.0,
            "error_status": 403,
            "error_code": 12130,
            "error_message": "access.api.error.not_enabled: Zero Trust is not enabled for this account",
        }
    )
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        await send(redis, keys, [app_job("zt.example.com")])
        await asyncio.wait_for(drain(svc), timeout=30)
        [result] = await job_results(redis, keys)
        assert not result.ok
        [error] = result.errors
        assert (error.kind, error.hostname) == ("not_enabled", "zt.example.com")
        assert "Zero Trust (Access) is not enabled" in error.message
    finally:
        await svc.close()


# ---- record quota -----------------------------------------------------------------------------------------------


async def test_a_new_free_zone_at_its_record_quota_gives_a_per_rule_quota_error_once(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    zone_id = "9" * 32
    filler = [{"zone_id": zone_id, "name": f"f{i}", "type": "A", "content": "192.0.2.1"} for i in range(199)]
    emu.emulator.seed(
        {
            "zones": [
                {"id": zone_id, "name": "new.test", "account_id": ACCOUNT_ID, "created_on": "2025-03-01T00:00:00Z"}
            ],
            "dns_records": filler,
        }
    )
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        names = ("a.new.test", "b.new.test")
        records = tuple(DesiredRecord(name=n, tunnel_id=TUNNEL_ID) for n in names)
        await send(redis, keys, [SyncDnsZone(zone_name="new.test", version="v1", records=records)])
        await asyncio.wait_for(drain(svc), timeout=30)
        [result] = await job_results(redis, keys)
        assert result.ok, "the rest of the zone converges"
        [error] = result.errors
        assert (error.kind, error.hostname, error.code) == ("quota", "b.new.test", 81045)
        assert "record quota is reached" in error.message
        writes = emu.emulator.count(BATCH) + emu.emulator.count(SINGLE_POST)

        # The same job again (a redelivery, the next change of another rule): reported, not retried.
        await send(redis, keys, [SyncDnsZone(zone_name="new.test", version="v2", records=records)])
        await asyncio.wait_for(drain(svc), timeout=30)
        again = (await job_results(redis, keys))[-1]
        assert [(e.kind, e.hostname) for e in again.errors] == [("quota", "b.new.test")]
        assert emu.emulator.count(BATCH) + emu.emulator.count(SINGLE_POST) == writes
    finally:
        await svc.close()


# ---- pagination -------------------------------------------------------------------------------------------------


async def test_a_list_without_total_pages_is_read_to_its_last_page(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    emu.emulator.seed({"tunnels": [{"name": f"listed-{i}", "config_src": "cloudflare"} for i in range(4)]})
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        listed = await svc.api.list_all("/accounts/{account_id}/cfd_tunnel", per_page=2)
        assert len(listed) == 5, "the four seeded tunnels and the conftest's own"
        assert emu.emulator.count("GET /accounts/{account_id}/cfd_tunnel") == 3, "two full pages, then a short one"
    finally:
        await svc.close()


async def test_a_record_deleted_behind_our_back_is_written_anew_not_reported_as_refused(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    other_tunnel = "0b7e6f39-2b8a-4f43-9d36-6f0a6c8f1c11"
    try:
        first = (DesiredRecord(name="gone.example.com", tunnel_id=TUNNEL_ID),)
        await send(redis, keys, [SyncDnsZone(zone_name="example.com", version="v1", records=first)])
        await drain(svc)
        [record] = records_named(emu, "gone.example.com")
        # Someone deletes it in the dashboard; our observed copy still has it, so the next change is a PATCH that
        # Cloudflare answers 81044 "Record does not exist." (inside the batch, then on its own).
        status, _ = await api_call(emu, "DELETE", f"/zones/{emu.zone_id}/dns_records/{record['id']}")
        assert status == 200
        moved = (DesiredRecord(name="gone.example.com", tunnel_id=other_tunnel),)
        await send(redis, keys, [SyncDnsZone(zone_name="example.com", version="v2", records=moved)])
        await asyncio.wait_for(drain(svc), timeout=30)
        result = (await job_results(redis, keys))[-1]
        assert result.ok and result.errors == (), result
        [again] = records_named(emu, "gone.example.com")
        assert again["content"] == f"{other_tunnel}.cfargotunnel.com"
    finally:
        await svc.close()


async def api_call(emu: RunningEmulator, method: str, path: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session,
        session.request(method, emu.base_url + path) as response,
    ):
        return response.status, await response.json()
