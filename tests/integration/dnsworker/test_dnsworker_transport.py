"""The dns-worker's Cloudflare client over its aiohttp transport: a Cloudflare that does not answer still times out
after the request timeout, an unreachable one is a connection error (the transport reports it as a timeout), and
stopping the service closes the aiohttp session under the client."""

from __future__ import annotations

import asyncio
import gc
import socket
import time
import warnings
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from flareport_cfemu.testing import RunningEmulator
from flareport_cli.localredis import LocalRedis
from flareport_common.settings import DnsWorkerSettings, load_dns_worker
from flareport_dns_worker.cfclient import CfTransientError, CloudflareApi
from flareport_dns_worker.doctor import LocalLimiter
from flareport_dns_worker.service import make_sdk
from fptest.dnsworker_harness import service, settings_for

ZONES = "GET /zones"


def settings_at(base_url: str) -> DnsWorkerSettings:
    return load_dns_worker(
        {
            "REDIS_URL": "redis://127.0.0.1:1",
            "CLOUDFLARE_API_TOKEN": "t",
            "CLOUDFLARE_ACCOUNT_ID": "a" * 32,
            "CLOUDFLARE_API_BASE_URL": base_url,
            "CLOUDFLARE_REQUEST_TIMEOUT_SECONDS": "1",
        }
    )


def calls(outcome: str) -> float:
    return REGISTRY.get_sample_value("flareport_cloudflare_calls_total", {"endpoint": ZONES, "outcome": outcome}) or 0.0


async def one_attempt(settings: DnsWorkerSettings) -> CfTransientError:
    sdk = make_sdk(settings)
    try:
        api = CloudflareApi(sdk, LocalLimiter(), account_id=settings.cloudflare.account_id, max_attempts=1)
        with pytest.raises(CfTransientError) as caught:
            await api.request("GET", "/zones")
        return caught.value
    finally:
        await sdk.close()


@pytest.fixture
async def silent_server() -> AsyncIterator[str]:
    """A server that accepts connections and reads requests but never answers them."""
    done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await done.wait()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/client/v4"
    finally:
        done.set()
        server.close()
        await server.wait_closed()


async def test_a_cloudflare_that_never_answers_times_out_after_the_request_timeout(silent_server: str) -> None:
    before = calls("timeout")
    started = time.monotonic()
    error = await one_attempt(settings_at(silent_server))
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 5.0, elapsed
    assert "timed out" in str(error) and not error.ambiguous
    assert calls("timeout") == before + 1


async def test_a_refused_connection_is_a_connection_error_not_a_timeout() -> None:
    # A bound socket that does not listen: connecting to it is refused, and no other test can take its port.
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        before = calls("connection_error"), calls("timeout")
        error = await one_attempt(settings_at(f"http://127.0.0.1:{bound.getsockname()[1]}/client/v4"))
    assert "connection error" in str(error) and "Cannot connect" in str(error), str(error)
    assert (calls("connection_error"), calls("timeout")) == (before[0] + 1, before[1])


async def test_closing_the_service_closes_the_clients_aiohttp_session(
    emu: RunningEmulator, redis: aioredis.Redis, redis_server: LocalRedis, prefix: str
) -> None:
    def unclosed(caught: list[warnings.WarningMessage]) -> list[str]:
        return [str(w.message) for w in caught if "Unclosed" in str(w.message)]

    for close in (False, True):
        svc = service(settings_for(redis_server.url, prefix, emu), redis)
        await svc.api.request("GET", "/zones")  # the session is made at the first request
        if close:
            await svc.close()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            del svc
            gc.collect()
        # Without close() aiohttp warns when the session is collected: that proves the check sees the session.
        assert bool(unclosed(caught)) is not close, unclosed(caught)
