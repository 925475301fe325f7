"""The tunnel configuration's trust window and tripwire (``ingress_trust``), against the emulator over HTTP.

The window is off by default; the tests that need it set it to 2 s (``TRUST``).

Calls are counted by the emulator per endpoint. The worker's clock is injected, so "within the window" and "after
it" are set by the test, not waited for: a slow machine cannot turn one into the other.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from flareport_cfemu.testing import RunningEmulator
from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys
from flareport_common.messages.cfjobs import IngressEntry, SyncTunnelIngress
from flareport_dns_worker.ingress_trust import READ_AT
from flareport_dns_worker.service import DnsWorkerService
from fptest.dnsworker_harness import (
    GET_CONFIG,
    PUT_CONFIG,
    drain,
    ingress_of,
    job_results,
    send,
    service,
    settings_for,
)
from fptest.waiting import wait_for

from .conftest import DASHBOARD_RULE, TUNNEL_ID

CHANGED_ELSEWHERE = "flareport_dnsworker_tunnel_config_changed_elsewhere_total"
HAND_RULE = {"hostname": "hand.example.com", "service": "http://10.0.0.7:8080"}
TRUST = {"CLOUDFLARE_TUNNEL_CONFIG_TRUST_SECONDS": 2}


class Clock:
    """The worker's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def config_calls(emu: RunningEmulator) -> tuple[int, int]:
    """(GETs, PUTs) of the tunnel configuration the emulator answered since its log was last cleared."""
    counted = Counter(emu.emulator.log.counters)
    return counted[GET_CONFIG], counted[PUT_CONFIG]


def changed_elsewhere() -> float:
    return REGISTRY.get_sample_value(CHANGED_ELSEWHERE) or 0.0


def job(version: str, *hostnames: str) -> SyncTunnelIngress:
    rules = tuple(IngressEntry(hostname=h, service="http://web:8080") for h in hostnames)
    return SyncTunnelIngress(tunnel_id=TUNNEL_ID, version=version, rules=rules)


def hosts(emu: RunningEmulator) -> list[Any]:
    return [rule.get("hostname") for rule in ingress_of(emu, TUNNEL_ID)]


async def sync(svc: DnsWorkerService, redis: aioredis.Redis, keys: Keys, change: SyncTunnelIngress) -> None:
    await send(redis, keys, [change])
    await drain(svc)
    result = (await job_results(redis, keys))[-1]
    assert result.ok and result.version == change.version, f"the ingress job {change.version} must apply"


async def edit_in_dashboard(emu: RunningEmulator, rule: dict[str, str]) -> None:
    """What a dashboard edit is: a PUT of the whole configuration through Cloudflare's API, with the rule added."""
    client = emu.async_client()
    try:
        current = await client.zero_trust.tunnels.cloudflared.configurations.get(TUNNEL_ID, account_id=emu.account_id)
        assert current is not None and current.config is not None
        config: Any = current.config.model_dump(by_alias=True, exclude_none=True)
        config["ingress"].insert(0, rule)
        await client.zero_trust.tunnels.cloudflared.configurations.update(
            TUNNEL_ID, account_id=emu.account_id, config=config
        )
    finally:
        await client.close()


async def test_changes_within_the_window_share_one_get(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    clock = Clock()
    svc = service(settings_for(redis_server.url, prefix, emu, **TRUST), redis, clock=clock)
    try:
        names = [f"app{i}.example.com" for i in range(5)]
        for i in range(len(names)):
            await sync(svc, redis, keys, job(f"v{i}", *names[: i + 1]))
            clock.now += 0.3  # five changes within a window of 2 s
        assert config_calls(emu) == (1, 5), "five back-to-back changes: one GET, then a PUT each"
        assert hosts(emu) == [*names, DASHBOARD_RULE["hostname"], None], "the dashboard's rule is kept"
    finally:
        await svc.close()


async def test_by_default_every_put_is_preceded_by_a_get(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    clock = Clock()
    settings = settings_for(redis_server.url, prefix, emu)
    assert settings.tunnel_config_trust_seconds == 0, "the window is off unless an operator turns it on"
    svc = service(settings, redis, clock=clock)
    try:
        names = [f"app{i}.example.com" for i in range(5)]
        for i in range(len(names)):
            await sync(svc, redis, keys, job(f"v{i}", *names[: i + 1]))
        assert config_calls(emu) == (5, 5), "with the window off every PUT is preceded by a GET"
        assert hosts(emu) == [*names, DASHBOARD_RULE["hostname"], None]
    finally:
        await svc.close()


async def test_a_dashboard_edit_within_the_window_trips_the_wire_and_the_next_sync_reads(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    clock = Clock()
    svc = service(settings_for(redis_server.url, prefix, emu, **TRUST), redis, clock=clock)
    try:
        await sync(svc, redis, keys, job("v1", "a.example.com"))  # GET (version 1), PUT: version 2
        await edit_in_dashboard(emu, HAND_RULE)  # version 3, after our read and within the window
        emu.emulator.clear_requests()
        before = changed_elsewhere()
        clock.now += 0.5
        with capture_logs() as logs:
            await sync(svc, redis, keys, job("v2", "a.example.com", "b.example.com"))
        assert config_calls(emu) == (0, 1), "within the window the PUT goes out from the trusted copy"
        assert changed_elsewhere() - before == 1, "the PUT answered version 4, not 3: the tripwire counts it"
        [warning] = [entry for entry in logs if entry["event"] == "tunnels.config_changed_elsewhere"]
        assert warning["log_level"] == "warning"
        assert (warning["tunnel_id"], warning["planned_from_version"], warning["answered_version"]) == (
            TUNNEL_ID,
            2,
            4,
        ), "the warning names the tunnel and both versions"
        # The bounded cost of the assumption, stated here so that it cannot grow unnoticed: a PUT has no
        # precondition, so the hand-made rule our PUT replaced is gone and nothing can read it back.
        assert HAND_RULE["hostname"] not in hosts(emu)

        emu.emulator.clear_requests()
        clock.now += 0.5  # still within the window of the first read: the tripwire alone makes the next sync read
        await edit_in_dashboard(emu, HAND_RULE)  # the operator, warned, adds the rule again
        await sync(svc, redis, keys, job("v3", "a.example.com", "b.example.com", "c.example.com"))
        assert config_calls(emu) == (2, 2), "after the tripwire the next sync reads first (one GET, one PUT of ours)"
        assert HAND_RULE["hostname"] in hosts(emu), "a rule added by hand before a read is kept"
        assert changed_elsewhere() - before == 1, "a PUT planned from a fresh read raises nothing"
    finally:
        await svc.close()


async def test_after_the_window_the_configuration_is_read_again(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    clock = Clock()
    svc = service(settings_for(redis_server.url, prefix, emu, **TRUST), redis, clock=clock)
    try:
        await sync(svc, redis, keys, job("v1", "a.example.com"))
        clock.now += 1.9
        await sync(svc, redis, keys, job("v2", "a.example.com", "b.example.com"))
        assert config_calls(emu) == (1, 2), "1.9 s after the read: within the window"
        # Our PUT did not renew the window: 2 s after the read (0.1 s after our last PUT) the copy is not trusted.
        await edit_in_dashboard(emu, HAND_RULE)
        emu.emulator.clear_requests()
        clock.now += 0.1
        before = changed_elsewhere()
        await sync(svc, redis, keys, job("v3", "a.example.com", "b.example.com", "c.example.com"))
        assert config_calls(emu) == (1, 1), "the window ends 2 s after the read, whatever was written since"
        assert HAND_RULE["hostname"] in hosts(emu), "the dashboard edit made before that read is kept"
        assert changed_elsewhere() == before
    finally:
        await svc.close()


async def test_a_read_time_in_the_future_is_not_trusted(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    clock = Clock()
    svc = service(settings_for(redis_server.url, prefix, emu, **TRUST), redis, clock=clock)
    try:
        await sync(svc, redis, keys, job("v1", "a.example.com"))
        clock.now -= 0.5  # the clock was set back (or another replica, whose clock runs ahead, read)
        await sync(svc, redis, keys, job("v2", "a.example.com", "b.example.com"))
        assert config_calls(emu) == (2, 2), "a copy read 'in the future' has an unknown age: read again"
    finally:
        await svc.close()


async def test_the_window_ends_by_the_real_clock_too(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, keys: Keys, prefix: str
) -> None:
    # The worker's own clock and a short window: once the clock is past the window's end (a condition with a
    # deadline, read from the worker's record of its read), the next change reads first.
    window = 0.3
    settings = settings_for(redis_server.url, prefix, emu, CLOUDFLARE_TUNNEL_CONFIG_TRUST_SECONDS=window)
    svc = service(settings, redis)
    try:
        await sync(svc, redis, keys, job("v1", "a.example.com"))
        read_at = await redis.hget(keys.target_observed(f"tunnel:{TUNNEL_ID}"), READ_AT)
        assert read_at is not None, "a real read is recorded with its time"
        ends = int(read_at) / 1000 + window

        async def window_passed() -> bool:
            return time.time() >= ends

        await wait_for(window_passed, timeout=10, what="the worker's clock to pass the trust window")
        await sync(svc, redis, keys, job("v2", "a.example.com", "b.example.com"))
        assert config_calls(emu) == (2, 2), "after the window the configuration is read again"
    finally:
        await svc.close()
