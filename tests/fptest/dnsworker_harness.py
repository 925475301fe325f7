"""Helpers for dns-worker tests: settings pointing at an in-process emulator, jobs in, results out."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
import redis.asyncio as aioredis

from flareport_cfemu.testing import RunningEmulator
from flareport_common.keys import Keys
from flareport_common.messages.cfjobs import CfJobMessage
from flareport_common.messages.cfresults import CfResultMessage, JobResult, TunnelEnsured
from flareport_common.settings import DnsWorkerSettings, load_dns_worker
from flareport_common.streams.codec import FIELD
from flareport_common.streams.producer import Producer
from flareport_dns_worker.service import DnsWorkerService

TOKEN = "test-token"
BATCH = "POST /zones/{zone_id}/dns_records/batch"
PUT_CONFIG = "PUT /accounts/{account_id}/cfd_tunnel/{tunnel_id}/configurations"
GET_CONFIG = "GET /accounts/{account_id}/cfd_tunnel/{tunnel_id}/configurations"
LIST_RECORDS = "GET /zones/{zone_id}/dns_records"
_results = msgspec.json.Decoder(CfResultMessage)


def process_env(redis_url: str, prefix: str, emu: RunningEmulator, token: str = TOKEN) -> dict[str, str]:
    """The environment of a real ``flareport dns-worker`` process against ``emu``."""
    return {
        **os.environ,
        "REDIS_URL": redis_url,
        "FLAREPORT_KEY_PREFIX": prefix,
        "CLOUDFLARE_API_TOKEN": token,
        "CLOUDFLARE_ACCOUNT_ID": emu.account_id,
        "CLOUDFLARE_API_BASE_URL": emu.base_url,
        "FLAREPORT_HEALTH_PORT": "0",
        "LOG_FORMAT": "json",
    }


def settings_for(redis_url: str, prefix: str, emu: RunningEmulator, **env: str | int | float) -> DnsWorkerSettings:
    environ = {
        "REDIS_URL": redis_url,
        "FLAREPORT_KEY_PREFIX": prefix,
        "CLOUDFLARE_API_TOKEN": TOKEN,
        "CLOUDFLARE_ACCOUNT_ID": emu.account_id,
        "CLOUDFLARE_API_BASE_URL": emu.base_url,
        "FLAREPORT_OWNER_ID": "fp-test",
        "LOG_FORMAT": "console",
    }
    environ.update({k: str(v) for k, v in env.items()})
    return load_dns_worker(environ)


def limited_alike(
    redis_url: str, prefix: str, emu: RunningEmulator, *, requests: int, window_seconds: float
) -> DnsWorkerSettings:
    """The emulator's per-token limit set to ``requests`` per ``window_seconds``, and a worker's settings configured
    to the same limit (as an operator sets the worker to Cloudflare's)."""
    emu.emulator.configure(rate_limit=requests, rate_window_seconds=window_seconds)
    return settings_for(
        redis_url,
        prefix,
        emu,
        CLOUDFLARE_RATE_LIMIT_REQUESTS=requests,
        CLOUDFLARE_RATE_LIMIT_WINDOW_SECONDS=window_seconds,
    )


def service(
    settings: DnsWorkerSettings, redis: aioredis.Redis, name: str = "w1", *, clock: Callable[[], float] = time.time
) -> DnsWorkerService:
    # Short backoffs keep fault tests quick; the policy (capped exponential with jitter) is the same.
    return DnsWorkerService(settings, redis, consumer=name, backoff_initial=0.02, clock=clock)


async def drain(svc: DnsWorkerService) -> int:
    """Handle every job now in the two jobs streams. ``run_burst`` stops reading when all its handler slots stay busy
    for a moment (it takes that for an empty stream), so repeat it until a pass finds nothing.
    """
    total = 0
    while handled := await svc.run_burst():
        total += handled
    return total


async def send(redis: aioredis.Redis, keys: Keys, jobs: Iterable[CfJobMessage]) -> None:
    """Each job on its target's stream, as the reconciler sends it (a zone's on the zones' lane)."""
    producer = Producer(redis)
    for job in jobs:
        await producer.send(keys.cf_jobs_for(job.target), job)


async def results(redis: aioredis.Redis, keys: Keys) -> list[CfResultMessage]:
    entries: Any = await redis.xrange(keys.cf_results)
    return [_results.decode(fields[FIELD]) for _, fields in entries]


async def job_results(redis: aioredis.Redis, keys: Keys) -> list[JobResult]:
    return [r for r in await results(redis, keys) if isinstance(r, JobResult)]


async def token_of(redis: aioredis.Redis, keys: Keys, result: TunnelEnsured) -> str | None:
    """The token an ensured tunnel's result refers to: it waits under the agent's own key, never in the stream."""
    assert result.token is None, "a result never carries the token itself"
    if result.token_ref is None:
        return None
    raw = await redis.get(keys.agent_secret(result.agent_id, result.token_ref))
    return raw.decode() if isinstance(raw, bytes) else raw


def records_named(emu: RunningEmulator, name: str) -> list[dict[str, Any]]:
    return [r for r in emu.emulator.state.records_of(emu.zone_id).values() if r["name"] == name]


def ingress_of(emu: RunningEmulator, tunnel_id: str) -> list[dict[str, Any]]:
    stored = emu.emulator.state.tunnel_configs.get(tunnel_id)
    return list(stored["config"].get("ingress") or []) if stored else []
