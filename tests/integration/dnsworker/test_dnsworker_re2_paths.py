"""A rule whose path Go's regexp (RE2) refuses is left out of the tunnel configuration with a per-rule error; the
tunnel's other rules still go in (Cloudflare, like the emulator, would refuse the whole configuration)."""

from __future__ import annotations

import redis.asyncio as aioredis

from flareport_cfemu.testing import RunningEmulator
from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys
from flareport_common.messages.cfjobs import IngressEntry, SyncTunnelIngress
from fptest.dnsworker_harness import PUT_CONFIG, drain, ingress_of, job_results, send, service, settings_for

from .conftest import DASHBOARD_RULE, TUNNEL_ID


async def test_a_path_re2_refuses_is_a_rule_error_and_the_other_rules_converge(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    rules = (
        IngressEntry(hostname="a.example.com", service="http://web:8080", path="^/api/(?!internal)"),
        IngressEntry(hostname="b.example.com", service="http://web:8080", path="^/\\pL+$"),
    )
    svc = service(settings_for(redis_server.url, prefix, emu), redis)
    try:
        await send(redis, keys, [SyncTunnelIngress(tunnel_id=TUNNEL_ID, version="v1", rules=rules)])
        assert await drain(svc) == 1
        assert emu.emulator.count(PUT_CONFIG) == 1
        assert ingress_of(emu, TUNNEL_ID) == [
            {"hostname": "b.example.com", "service": "http://web:8080", "path": "^/\\pL+$"},
            DASHBOARD_RULE,
            {"service": "http_status:404"},
        ]
        [result] = await job_results(redis, keys)
        assert result.ok
        [error] = result.errors
        assert (error.kind, error.hostname, error.path) == ("invalid", "a.example.com", "^/api/(?!internal)")
        assert "RE2" in error.message
    finally:
        await svc.close()
