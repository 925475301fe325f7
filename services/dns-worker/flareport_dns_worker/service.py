"""Wiring: settings -> SDK client, rate limiter, leases, syncs, worker and the consumers of the two jobs streams.

``DnsWorkerService`` owns every client it makes (``close()`` releases them). Tests build it around their own
Redis and emulator and drive the consumers with ``run_burst()`` or ``reading.run()``; ``serve`` is the process:
health server, signal handling, graceful stop.

Two lanes, one read loop (docs/dns-worker.md, "Lanes"): ``cf-jobs`` (tunnels, Access apps, verifications) and
``cf-jobs-zones`` (the zones' DNS jobs, which the reconciler sends there). Each has its own handler slots, so a zone
job is read at once however many tunnel jobs wait for the rate limit. Its calls, and a tunnel creation's, take their
turn at the limiter before the others' (``urgent``, ``turns``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable

import cloudflare
import httpx
import redis.asyncio as aioredis
import structlog

from flareport_common.health import start_health_server
from flareport_common.keys import GROUP_DNS_WORKER, Keys
from flareport_common.messages.cfjobs import CfJobMessage, EnsureTunnel, SyncDnsZone
from flareport_common.redisconn import connect, ready
from flareport_common.runtime import consumer_name, install_stop_handlers, settle_gc
from flareport_common.settings import DnsWorkerSettings
from flareport_common.streams.consumer import ConsumerConfig, Delivery, StreamConsumer
from flareport_common.streams.consumerset import ConsumerSet
from flareport_common.streams.producer import Producer
from flareport_dns_worker.access import AccessSync
from flareport_dns_worker.access_facts import AccessFactsFinder
from flareport_dns_worker.cfclient import CloudflareApi
from flareport_dns_worker.dns_sync import DnsSync
from flareport_dns_worker.lease import Leases
from flareport_dns_worker.preflight import Preflight, log_preflight
from flareport_dns_worker.ratelimit import RateLimiter
from flareport_dns_worker.tunnel_list import TunnelList
from flareport_dns_worker.tunnels import Tunnels
from flareport_dns_worker.turns import URGENT
from flareport_dns_worker.worker import Worker
from flareport_dns_worker.zones import ZoneDirectory

log = structlog.get_logger("flareport.dns_worker")
STARTUP_DNS_ZONES = 5  # zones whose DNS list the start-up preflight reads (doctor reads up to 25)
# Zone jobs handled at once by one process: a zone has one job in flight, so this is how many zones move together;
# each job is a chain of calls, and every slot here is a caller ahead of the tunnel lane at the rate limiter.
ZONE_LANE_CONCURRENCY = 8


def urgent(job: CfJobMessage) -> bool:
    """Whether the job's calls go before others' at the rate limiter (``turns``): those that other work waits on.
    A zone job is a chain of DNS batches that every hostname of the zone waits on; a tunnel's creation is what its
    configuration and its hostnames' DNS records (which point at the tunnel's id) wait on. A configuration PUT, an
    Access app, a verification or a deletion is the end of its chain."""
    return isinstance(job, EnsureTunnel | SyncDnsZone)


def make_sdk(settings: DnsWorkerSettings) -> cloudflare.AsyncCloudflare:
    # max_retries=0: retries, backoff and Retry-After are ours (see cfclient) — the SDK's would spend the
    # shared budget behind the token bucket's back and wait on 429s for this caller only.
    timeout = httpx.Timeout(settings.request_timeout_seconds, connect=min(10.0, settings.request_timeout_seconds))
    # The SDK's aiohttp transport costs less CPU and latency per call than httpx's own. It gives each request's
    # timeouts to aiohttp (connect as sock_connect, read as sock_read), so a Cloudflare that stops answering still
    # fails the call after request_timeout_seconds; httpx still reads HTTPS_PROXY/NO_PROXY and builds the verifying
    # TLS context. It reports connection errors as timeouts: cfclient tells them apart.
    return cloudflare.AsyncCloudflare(
        api_token=settings.cloudflare.api_token,
        base_url=settings.cloudflare.api_base_url,
        max_retries=0,
        timeout=timeout,
        http_client=cloudflare.DefaultAioHttpClient(timeout=timeout),
    )


class DnsWorkerService:
    def __init__(
        self,
        settings: DnsWorkerSettings,
        redis: aioredis.Redis,
        *,
        consumer: str | None = None,
        consumer_config: ConsumerConfig | None = None,
        backoff_initial: float = 0.2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        keys = Keys(settings.common.key_prefix)
        self.settings = settings
        self.keys = keys
        self.redis = redis
        self.sdk = make_sdk(settings)
        cf = settings.cloudflare
        self.limiter = RateLimiter(
            redis,
            keys,
            requests=cf.rate_limit_requests,
            window_seconds=cf.rate_limit_window_seconds,
            per_second=cf.rate_limit_per_second,
            # A call cannot reach Cloudflare after its client gave up on it.
            hold_seconds=settings.request_timeout_seconds,
        )
        self.api = CloudflareApi(
            self.sdk,
            self.limiter,
            account_id=cf.account_id,
            max_attempts=settings.max_call_attempts,
            backoff_initial=backoff_initial,
        )
        zones = ZoneDirectory(
            self.api, redis, keys, refresh_seconds=settings.zone_refresh_seconds, default_zone_id=cf.default_zone_id
        )
        # The account owner's email and the One-time PIN login method (authenticated-default), refreshed with the
        # zone list.
        self.access_facts = AccessFactsFinder(
            self.api,
            redis,
            keys,
            interval_seconds=settings.zone_refresh_seconds,
            owner_email=settings.access_owner_email,
        )
        config = consumer_config or ConsumerConfig(
            stream=keys.cf_jobs,
            group=GROUP_DNS_WORKER,
            consumer=consumer or consumer_name("dns-worker"),
            dead_letter_stream=keys.dead_letters,
            metrics_label="cf-jobs",
            # A job waiting for the rate limit is kept fresh by the runtime's keepalive, so this only bounds how long
            # the job of a dead replica waits before another takes it over.
            claim_idle_ms=int(settings.claim_idle_seconds * 1000),
            claim_interval_s=min(5.0, settings.claim_idle_seconds / 3),
        )
        leases = Leases(redis, lease_ms=settings.target_lease_ms)
        # The account's tunnels and connectors for the tunnels page, listed periodically and on an admin's request.
        self.tunnel_list = TunnelList(self.api, redis, keys, interval_seconds=settings.tunnel_list_seconds)
        self.worker = Worker(
            redis,
            keys,
            Producer(redis, metrics_label="cf-results"),
            leases,
            dns=DnsSync(
                self.api,
                redis,
                keys,
                zones,
                leases,
                owner=settings.owner_id,
                batch_size=settings.dns_batch_size,
                nodes=settings.common.redis_nodes,
            ),
            tunnels=Tunnels(
                self.api,
                redis,
                keys,
                delete_deadline_seconds=settings.tunnel_delete_deadline_seconds,
                trust_seconds=settings.tunnel_config_trust_seconds,
                clock=clock,
                nodes=settings.common.redis_nodes,
            ),
            access=AccessSync(
                self.api, redis, keys, tag=settings.access_tag, adopt_dockflare=settings.adopt_dockflare_access
            ),
            max_deliveries=config.max_deliveries,
            tunnel_list=self.tunnel_list,
        )
        # One target at a time per process (the lease covers other processes), so a burst of jobs for one zone
        # queues here instead of bouncing off the lease.
        self.consumer: StreamConsumer[CfJobMessage] = StreamConsumer(
            redis, config, CfJobMessage, self._handle, key=lambda job: job.target
        )
        zones_config = dataclasses.replace(
            config, stream=keys.cf_jobs_zones, metrics_label="cf-jobs-zones", concurrency=ZONE_LANE_CONCURRENCY
        )
        self.zone_consumer: StreamConsumer[CfJobMessage] = StreamConsumer(
            redis, zones_config, CfJobMessage, self._handle, key=lambda job: job.target
        )
        self.reading = ConsumerSet((self.consumer, self.zone_consumer))

    async def _handle(self, job: CfJobMessage, delivery: Delivery) -> None:
        # The message's own task: its calls take their turn at the limiter first when others wait on them.
        URGENT.set(urgent(job))
        await self.worker.handle(job, delivery)

    async def run_burst(self) -> int:
        """Handle everything both lanes hold now; how many messages were finished."""
        return await self.zone_consumer.run_burst() + await self.consumer.run_burst()

    async def close(self) -> None:
        # Closes the aiohttp session under the SDK client too (else aiohttp warns of an unclosed session).
        await self.sdk.close()


async def serve(settings: DnsWorkerSettings) -> int:
    redis = connect(settings.common)
    service = DnsWorkerService(settings, redis)

    async def redis_ready() -> bool:
        return await ready(redis)

    health = await start_health_server("0.0.0.0", settings.health_port, redis_ready)
    stopping = install_stop_handlers(service.reading.stop)
    facts = asyncio.create_task(service.access_facts.run(stopping), name="access-facts")
    tunnel_list = asyncio.create_task(service.tunnel_list.run(stopping), name="tunnel-list")
    # The token checked once at start (what `flareport doctor` checks), logged as warnings; jobs do not wait for it.
    cf = settings.cloudflare
    check = Preflight(
        service.api,
        account_id=cf.account_id,
        api_base_url=cf.api_base_url,
        default_zone_id=cf.default_zone_id,
        owner_email_set=settings.access_owner_email is not None,
        max_dns_zones=STARTUP_DNS_ZONES,
    )
    preflight = asyncio.create_task(log_preflight(check), name="preflight")
    log.info("dns_worker.started", consumer=service.consumer.config.consumer, base_url=settings.cloudflare.api_base_url)
    settle_gc()
    try:
        await service.reading.run()
    finally:
        stopping.set()
        facts.cancel()
        tunnel_list.cancel()
        preflight.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await facts
        with contextlib.suppress(asyncio.CancelledError):
            await tunnel_list
        with contextlib.suppress(asyncio.CancelledError):
            await preflight
        await service.close()
        await health.cleanup()
        with contextlib.suppress(Exception):
            await redis.aclose()
    log.info("dns_worker.stopped")
    return 0
