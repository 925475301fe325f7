"""Jobs sent while the control plane rebuilds after a loss of its data: no pruning, and tunnel claims by token hash."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

import redis.asyncio as aioredis

from flareport_cfemu.testing import RunningEmulator
from flareport_cfemu.tunnels_store import token_for
from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys
from flareport_common.messages.cfjobs import (
    CfJobMessage,
    DesiredRecord,
    EnsureTunnel,
    IngressEntry,
    SyncDnsZone,
    SyncTunnelIngress,
)
from flareport_common.messages.cfresults import TunnelEnsured
from flareport_dns_worker.service import DnsWorkerService
from fptest.dnsworker_harness import (
    BATCH,
    PUT_CONFIG,
    drain,
    ingress_of,
    job_results,
    records_named,
    results,
    send,
    service,
    settings_for,
    token_of,
)
from fptest.waiting import already, wait_for

from .conftest import DASHBOARD_RULE, TUNNEL_ID

CREATE_TUNNEL = "POST /accounts/{account_id}/cfd_tunnel"


def zone_job(names: list[str], version: str, *, prune: bool = True) -> SyncDnsZone:
    records = tuple(DesiredRecord(name=n, tunnel_id=TUNNEL_ID) for n in names)
    return SyncDnsZone(zone_name="example.com", version=version, records=records, prune=prune)


def ingress_job(names: list[str], version: str, *, prune: bool = True) -> SyncTunnelIngress:
    rules = tuple(IngressEntry(hostname=n, service="http://web:8080") for n in names)
    return SyncTunnelIngress(tunnel_id=TUNNEL_ID, version=version, rules=rules, prune=prune)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def ensured(redis: aioredis.Redis, keys: Keys) -> list[TunnelEnsured]:
    return [r for r in await results(redis, keys) if isinstance(r, TunnelEnsured)]


async def test_zone_sync_without_prune_keeps_our_unlisted_record_until_a_pruning_job(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        await send(redis, keys, [zone_job(["app.example.com", "old.example.com"], "v1")])
        await drain(svc)
        assert records_named(emu, "old.example.com")

        emu.emulator.clear_requests()
        await send(redis, keys, [zone_job(["app.example.com", "new.example.com"], "v2", prune=False)])
        await drain(svc)
        assert records_named(emu, "old.example.com"), "a record of ours not listed must be kept without prune"
        assert records_named(emu, "new.example.com"), "listed records are still created without prune"
        assert emu.emulator.count(BATCH) == 1

        await send(redis, keys, [zone_job(["app.example.com", "new.example.com"], "v3")])
        await drain(svc)
        assert not records_named(emu, "old.example.com"), "the next pruning job must remove the record kept before"
        assert records_named(emu, "app.example.com") and records_named(emu, "new.example.com")
        assert records_named(emu, "mail.example.com"), "a record Flareport did not create survives either way"
        assert [(r.version, r.ok, r.errors) for r in await job_results(redis, keys)] == [
            ("v1", True, ()),
            ("v2", True, ()),
            ("v3", True, ()),
        ]
    finally:
        await svc.close()


async def test_a_pruning_job_is_not_skipped_for_the_same_version_applied_without_prune(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        await send(redis, keys, [zone_job(["app.example.com", "old.example.com"], "v1")])
        await drain(svc)
        await send(redis, keys, [zone_job(["app.example.com"], "v2", prune=False)])
        await drain(svc)
        assert records_named(emu, "old.example.com")
        # Same version, now pruning (a version hash that left ``prune`` out): the kept record still has to go.
        await send(redis, keys, [zone_job(["app.example.com"], "v2")])
        await drain(svc)
        assert not records_named(emu, "old.example.com")
        assert (await job_results(redis, keys))[-1].writes == 1
    finally:
        await svc.close()


async def test_ingress_sync_without_prune_keeps_our_unlisted_rule_until_a_pruning_job(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    app = {"hostname": "app.example.com", "service": "http://web:8080"}
    old = {"hostname": "old.example.com", "service": "http://web:8080"}
    new = {"hostname": "new.example.com", "service": "http://web:8080"}
    try:
        await send(redis, keys, [ingress_job(["app.example.com", "old.example.com"], "v1")])
        await drain(svc)
        await send(redis, keys, [ingress_job(["new.example.com", "app.example.com"], "v2", prune=False)])
        await drain(svc)
        assert ingress_of(emu, TUNNEL_ID) == [new, app, old, DASHBOARD_RULE, {"service": "http_status:404"}], (
            "without prune our unlisted rule stays, after the listed ones and before the catch-all"
        )
        await send(redis, keys, [ingress_job(["new.example.com", "app.example.com"], "v3")])
        await drain(svc)
        assert ingress_of(emu, TUNNEL_ID) == [new, app, DASHBOARD_RULE, {"service": "http_status:404"}]
        assert all(r.ok and not r.errors for r in await job_results(redis, keys))
    finally:
        await svc.close()


async def test_claim_with_the_tunnels_token_hash_gets_the_token(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    token = token_for(emu.emulator.state.tunnels[TUNNEL_ID])
    try:
        claim = EnsureTunnel(agent_id="a1", tunnel_id=TUNNEL_ID, create=False, token_sha256=sha256(token))
        await send(redis, keys, [claim])
        await drain(svc)
        [result] = await ensured(redis, keys)
        assert result.ok and result.error is None
        assert (result.tunnel_id, await token_of(redis, keys, result), result.created) == (TUNNEL_ID, token, False)
    finally:
        await svc.close()


async def test_claim_with_a_wrong_token_hash_gets_no_token_and_creates_nothing(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        wrong = sha256("a token of some other tunnel")
        await send(
            redis,
            keys,
            [
                EnsureTunnel(agent_id="a1", tunnel_id=TUNNEL_ID, create=False, token_sha256=wrong),
                # Not hex at all (the hash comes from an agent): refused the same way, not a crash.
                EnsureTunnel(agent_id="a2", tunnel_id=TUNNEL_ID, create=False, token_sha256="né"),
            ],
        )
        await drain(svc)
        for result in await ensured(redis, keys):
            assert not result.ok and result.token is None, "a claim whose hash does not match must not get the token"
            assert result.error is not None and result.error.kind == "token_mismatch"
            assert f"does not match tunnel {TUNNEL_ID}" in result.error.message
        assert emu.emulator.count(CREATE_TUNNEL) == 0 and list(emu.emulator.state.tunnels) == [TUNNEL_ID]
    finally:
        await svc.close()


async def test_claim_of_a_missing_tunnel_fails_without_creating_or_falling_back_by_name(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    token = token_for(emu.emulator.state.tunnels[TUNNEL_ID])
    missing = str(uuid.uuid4())
    try:
        # Even asked to create, and naming an existing tunnel whose token it does hold, a claim of an unknown id
        # must not create a tunnel nor hand out another tunnel's token.
        claim = EnsureTunnel(
            agent_id="a1", tunnel_id=missing, tunnel_name="dashboard-tunnel", create=True, token_sha256=sha256(token)
        )
        await send(redis, keys, [claim])
        await drain(svc)
        [result] = await ensured(redis, keys)
        assert not result.ok and result.token is None and result.tunnel_id is None
        assert result.error is not None and result.error.kind == "missing" and missing in result.error.message
        assert emu.emulator.count(CREATE_TUNNEL) == 0 and list(emu.emulator.state.tunnels) == [TUNNEL_ID]
    finally:
        await svc.close()


async def test_a_record_created_just_before_a_failover_that_lost_the_workers_bookkeeping_is_still_removed(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    """Redis replicates asynchronously: the replica Sentinel promotes holds what the worker wrote before its call to
    Cloudflare, not necessarily what it wrote after the answer. Here the target's name list and the zone's copy are
    put back to what they were while the batch creating ``late`` was in flight; the next job, which no longer wants
    ``late`` (its container stopped), must still remove the record Cloudflare holds."""
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    observed = [keys.target_observed("zone:example.com"), keys.cf_zone_records(emu.zone_id)]
    try:
        first, second = zone_job(["app.example.com"], "v1"), zone_job(["app.example.com", "late.example.com"], "v2")
        await _failover_during_the_call(svc, emu, redis, keys, BATCH, first, second, observed)
        assert records_named(emu, "late.example.com"), "the batch created the record"

        await send(redis, keys, [zone_job(["app.example.com"], "v3")])
        await drain(svc)
        assert records_named(emu, "late.example.com") == [], "the record of a name nobody wants any more stays"
        assert len(records_named(emu, "app.example.com")) == 1
    finally:
        await svc.close()


async def test_an_ingress_rule_written_just_before_a_failover_that_lost_the_workers_bookkeeping_is_still_removed(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    """As above for a tunnel: the rule keys the worker wrote are what let it remove a rule of ours later (cloudflared's
    rules carry no owner mark). Put back to what Redis held while the PUT adding ``late`` was in flight, they must
    still let the next job remove that rule, and leave the rule someone added in the dashboard alone."""
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    observed = [keys.target_observed(f"tunnel:{TUNNEL_ID}")]
    try:
        first = ingress_job(["app.example.com"], "v1")
        second = ingress_job(["app.example.com", "late.example.com"], "v2")
        await _failover_during_the_call(svc, emu, redis, keys, PUT_CONFIG, first, second, observed)
        assert "late.example.com" in _hostnames(emu), "the PUT wrote the rule"

        await send(redis, keys, [ingress_job(["app.example.com"], "v3")])
        await drain(svc)
        hostnames = _hostnames(emu)
        assert "late.example.com" not in hostnames, "the rule of a name nobody wants any more stays"
        assert "app.example.com" in hostnames and DASHBOARD_RULE["hostname"] in hostnames
    finally:
        await svc.close()


async def _failover_during_the_call(
    svc: DnsWorkerService,
    emu: RunningEmulator,
    redis: aioredis.Redis,
    keys: Keys,
    endpoint: str,
    first: CfJobMessage,
    second: CfJobMessage,
    observed: list[str],
) -> None:
    """Apply ``first``, then ``second`` with ``endpoint`` answering slowly, and put the worker's ``observed`` keys back
    to what Redis held while ``second``'s call was in flight: the promoted replica's copy after a failover."""
    await send(redis, keys, [first])
    await drain(svc)
    emu.emulator.set_faults([{"endpoint": endpoint, "latency_ms": 300}])
    await send(redis, keys, [second])
    running = asyncio.create_task(drain(svc))
    await wait_for(lambda: already(svc.api.calls[endpoint] == 2), what=f"the second job's {endpoint} sent")
    at_the_call = {key: await redis.dump(key) for key in observed}
    await running
    emu.emulator.set_faults([])
    for key, dumped in at_the_call.items():
        await redis.delete(key)
        if dumped is not None:
            await redis.restore(key, 0, dumped)


def _hostnames(emu: RunningEmulator) -> list[str]:
    return [str(rule.get("hostname")) for rule in ingress_of(emu, TUNNEL_ID)]


async def test_a_rule_key_owned_ahead_of_a_put_cloudflare_refused_never_makes_a_later_dashboard_rule_ours(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    """Keys are owned ahead of a PUT only for as long as the PUT may have been applied. Cloudflare refused this one
    (a 400 changes nothing), so ``late.example.com`` was never ours: the rule someone then adds for it in the
    dashboard stays when the container that wanted it is gone."""
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        await send(redis, keys, [ingress_job(["app.example.com"], "v1")])
        await drain(svc)
        emu.emulator.set_faults([{"endpoint": PUT_CONFIG, "sequence": [400], "error_code": 1056}])
        await send(redis, keys, [ingress_job(["app.example.com", "late.example.com"], "v2")])
        await drain(svc)
        assert "late.example.com" not in _hostnames(emu), "Cloudflare refused the PUT"
        emu.emulator.set_faults([])
        manual = {"hostname": "late.example.com", "service": "http://10.0.0.7:80"}
        emu.emulator.state.tunnel_configs[TUNNEL_ID]["config"]["ingress"].insert(0, manual)

        await send(redis, keys, [ingress_job(["app.example.com"], "v3")])
        await drain(svc)
        assert manual in ingress_of(emu, TUNNEL_ID), "a rule added in the dashboard was removed as if it were ours"
    finally:
        await svc.close()
