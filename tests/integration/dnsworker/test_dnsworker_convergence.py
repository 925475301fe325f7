"""The dns-worker against the emulator: call counts, ownership, skips, fallback and drift repair."""

from __future__ import annotations

import math

import redis.asyncio as aioredis

from flareport_cfemu.testing import RunningEmulator
from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys
from flareport_common.messages.cfjobs import (
    DesiredRecord,
    IngressEntry,
    SyncDnsZone,
    SyncTunnelIngress,
    VerifyTarget,
)
from flareport_dns_worker.dns_plan import marker
from fptest.dnsworker_harness import (
    BATCH,
    GET_CONFIG,
    PUT_CONFIG,
    drain,
    ingress_of,
    job_results,
    records_named,
    send,
    service,
    settings_for,
)

from .conftest import DASHBOARD_RULE, TUNNEL_ID


def dns_job(names: list[str], version: str, *, adopt: bool = False) -> SyncDnsZone:
    records = tuple(DesiredRecord(name=n, tunnel_id=TUNNEL_ID, adopt=adopt) for n in names)
    return SyncDnsZone(zone_name="example.com", version=version, records=records)


def ingress_job(names: list[str], version: str) -> SyncTunnelIngress:
    rules = tuple(IngressEntry(hostname=n, service="http://web:8080") for n in names)
    return SyncTunnelIngress(tunnel_id=TUNNEL_ID, version=version, rules=rules)


async def test_one_rule_costs_one_dns_write_and_one_tunnel_put_then_nothing(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        await send(redis, keys, [dns_job(["app.example.com"], "v1"), ingress_job(["app.example.com"], "v1")])
        assert await drain(svc) == 2
        log = emu.emulator
        assert log.count(BATCH) == 1, "one container's rule must cost exactly one DNS write"
        assert log.count(PUT_CONFIG) == 1, "one container's rule must cost exactly one tunnel PUT"
        [record] = records_named(emu, "app.example.com")
        assert record["content"] == f"{TUNNEL_ID}.cfargotunnel.com" and record["proxied"] is True
        assert record["comment"] == marker("fp-test")
        assert ingress_of(emu, TUNNEL_ID) == [
            {"hostname": "app.example.com", "service": "http://web:8080"},
            DASHBOARD_RULE,
            {"service": "http_status:404"},
        ]
        assert all(r.ok and r.writes == 1 for r in await job_results(redis, keys))

        # The same jobs again (a redelivery): skipped without a call, still answered ok.
        emu.emulator.clear_requests()
        await send(redis, keys, [dns_job(["app.example.com"], "v1"), ingress_job(["app.example.com"], "v1")])
        await drain(svc)
        # A new version with the same content: the observed state answers, Cloudflare is not asked.
        await send(redis, keys, [dns_job(["app.example.com"], "v2"), ingress_job(["app.example.com"], "v2")])
        await drain(svc)
        assert emu.emulator.log.total == 0, f"no call expected, saw {emu.emulator.requests()['counters']}"
        results = await job_results(redis, keys)
        assert [r.ok for r in results[2:]] == [True] * 4 and [r.version for r in results[4:]] == ["v2", "v2"]
    finally:
        await svc.close()


async def test_500_rules_converge_in_ceil_n_over_batch_calls_and_foreign_objects_survive(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    batch = 200
    svc = service(settings_for(redis_server.url, prefix, emu, CLOUDFLARE_DNS_BATCH_SIZE=batch), redis)
    names = [f"app{i:03d}.example.com" for i in range(500)]
    try:
        await send(redis, keys, [dns_job(names, "v1"), ingress_job(names, "v1")])
        await drain(svc)
        assert emu.emulator.count(BATCH) == math.ceil(500 / batch)
        assert emu.emulator.count(PUT_CONFIG) == 1
        assert emu.emulator.count(GET_CONFIG) == 1
        assert all(len(records_named(emu, n)) == 1 for n in names), "every rule must have exactly one record"
        ingress = ingress_of(emu, TUNNEL_ID)
        assert len(ingress) == 502 and ingress[-2:] == [DASHBOARD_RULE, {"service": "http_status:404"}]

        # Shrink to 10 rules: ours go, the foreign A record and the dashboard rule stay.
        await send(redis, keys, [dns_job(names[:10], "v2"), ingress_job(names[:10], "v2")])
        await drain(svc)
        assert records_named(emu, "mail.example.com"), "a record Flareport did not create must survive every sync"
        assert not records_named(emu, names[10])
        assert len(emu.emulator.state.records_of(emu.zone_id)) == 11
        assert ingress_of(emu, TUNNEL_ID)[-2:] == [DASHBOARD_RULE, {"service": "http_status:404"}]
        assert len(ingress_of(emu, TUNNEL_ID)) == 12
    finally:
        await svc.close()


async def test_foreign_record_on_a_wanted_name_is_a_conflict_unless_adopted(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        await send(redis, keys, [dns_job(["mail.example.com", "ok.example.com"], "v1")])
        await drain(svc)
        [result] = await job_results(redis, keys)
        assert result.ok and [(e.kind, e.hostname) for e in result.errors] == [("conflict", "mail.example.com")]
        [foreign] = records_named(emu, "mail.example.com")
        assert foreign["type"] == "A" and foreign["content"] == "192.0.2.10", "a foreign record must not change"
        assert records_named(emu, "ok.example.com"), "the rest of the zone converges despite the conflict"
        await send(redis, keys, [dns_job(["mail.example.com", "ok.example.com"], "v1")])
        await drain(svc)
        redelivered = (await job_results(redis, keys))[-1]
        assert redelivered.errors == result.errors, "a skipped duplicate must still report the conflict"

        await send(redis, keys, [dns_job(["mail.example.com", "ok.example.com"], "v2", adopt=True)])
        await drain(svc)
        [adopted] = records_named(emu, "mail.example.com")
        assert adopted["type"] == "CNAME" and adopted["comment"] == marker("fp-test")
    finally:
        await svc.close()


async def test_refused_batch_falls_back_to_single_calls_and_names_the_bad_record(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    # The zone holds one foreign record; a quota of 3 makes Cloudflare refuse the third of our creates (posts go in
    # name order, so over.example.com), a valid name the worker's own name check cannot catch.
    emu.emulator.configure(record_quota=3)
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        await send(redis, keys, [dns_job(["good1.example.com", "over.example.com", "good2.example.com"], "v1")])
        await drain(svc)
        assert emu.emulator.count(BATCH) == 1
        assert emu.emulator.count("POST /zones/{zone_id}/dns_records") == 3
        [result] = await job_results(redis, keys)
        assert result.ok
        assert [(e.kind, e.hostname, e.code) for e in result.errors] == [("quota", "over.example.com", 81045)]
        assert records_named(emu, "good1.example.com") and records_named(emu, "good2.example.com")
    finally:
        await svc.close()


async def test_verify_target_repairs_drift_from_a_fresh_read(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        job = dns_job(["app.example.com"], "v1")
        await send(redis, keys, [job, ingress_job(["app.example.com"], "v1")])
        await drain(svc)
        # Someone deletes our record and our ingress rule in the dashboard.
        [record] = records_named(emu, "app.example.com")
        del emu.emulator.state.records_of(emu.zone_id)[record["id"]]
        emu.emulator.state.tunnel_configs[TUNNEL_ID]["config"]["ingress"] = [
            DASHBOARD_RULE,
            {"service": "http_status:404"},
        ]
        await send(redis, keys, [VerifyTarget(target=job.target), VerifyTarget(target=f"tunnel:{TUNNEL_ID}")])
        await drain(svc)
        verify = [r for r in await job_results(redis, keys) if r.job_type == "verify_target"]
        assert [r.drift_repaired for r in verify] == [True, True]
        assert records_named(emu, "app.example.com")
        assert ingress_of(emu, TUNNEL_ID)[0] == {"hostname": "app.example.com", "service": "http://web:8080"}
    finally:
        await svc.close()


async def test_hostname_in_no_zone_is_a_per_rule_zone_error(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        await send(redis, keys, [dns_job(["app.example.com", "app.elsewhere.net"], "v1")])
        await drain(svc)
        [result] = await job_results(redis, keys)
        assert [(e.kind, e.hostname) for e in result.errors] == [("zone", "app.elsewhere.net")]
        assert records_named(emu, "app.example.com")
    finally:
        await svc.close()


async def test_refused_credentials_end_in_a_failed_result_with_cloudflares_code(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    emu.emulator.configure(token="the-only-valid-token")
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        await send(redis, keys, [dns_job(["app.example.com"], "v1")])
        await drain(svc)
        [result] = await job_results(redis, keys)
        assert not result.ok and result.errors[0].code == 10000
        assert "Authentication error" in result.errors[0].message
    finally:
        await svc.close()


async def test_wildcard_hostname_gets_its_record_and_rule(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        await send(redis, keys, [dns_job(["*.apps.example.com"], "v1"), ingress_job(["*.apps.example.com"], "v1")])
        await drain(svc)
        [record] = records_named(emu, "*.apps.example.com")
        assert record["type"] == "CNAME" and record["proxied"] is True
        assert ingress_of(emu, TUNNEL_ID)[0]["hostname"] == "*.apps.example.com"
        assert all(r.ok and not r.errors for r in await job_results(redis, keys))
    finally:
        await svc.close()


async def test_an_admins_grant_takes_over_a_conflicting_name_once(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        await send(redis, keys, [dns_job(["mail.example.com"], "v1")])
        await drain(svc)
        assert [e.kind for e in (await job_results(redis, keys))[-1].errors] == ["conflict"]

        # The same version again (the reconciler re-plans on the grant; nothing it wants changed): synced anew.
        await redis.hset(keys.adopt_grants, "mail.example.com", "{}")
        await send(redis, keys, [dns_job(["mail.example.com"], "v1")])
        await drain(svc)
        result = (await job_results(redis, keys))[-1]
        assert result.ok and not result.errors
        assert [n.hostname for n in result.notes] == ["mail.example.com"], "the take-over is shown on the rule"
        [adopted] = records_named(emu, "mail.example.com")
        assert adopted["type"] == "CNAME" and adopted["comment"] == marker("fp-test")
        assert not await redis.hexists(keys.adopt_grants, "mail.example.com"), "a grant is used once"
    finally:
        await svc.close()
