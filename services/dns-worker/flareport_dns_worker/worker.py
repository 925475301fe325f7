"""The job handler: one Cloudflare job in, one result out, at most one writer per target.

For every job the worker

1. skips it (no call, still an ``ok`` result) when its version is already applied to the target, or when it
   is older than the job that was applied last — jobs are level-based, so a stale redelivery must not undo
   a newer state. A job that prunes is not skipped for a same-version job applied without pruning: the
   leftovers that one kept are still there to remove;
2. takes the target's lease (single flight across replicas; busy -> ``TemporaryError``, retried later);
3. runs the target's sync, which reads Cloudflare only where its observed state cannot answer;
4. records the applied version and the desired state (``verify_target`` re-applies it from a fresh read),
   then publishes the result. A crash before step 4 leaves the job pending; its redelivery re-plans from
   the observed state, which already reflects what was written, so nothing is written twice.

Cloudflare being unavailable (after the client's own retries) is a ``TemporaryError``; on the last delivery
the worker publishes a failed result instead, so the reconciler learns about it rather than waiting forever.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import msgspec
import redis.asyncio as aioredis
import structlog

from flareport_common.errors import TemporaryError
from flareport_common.keys import Keys
from flareport_common.messages.cfjobs import (
    CfJobMessage,
    DeleteTunnel,
    EnsureTunnel,
    RefreshTunnels,
    SyncAccessApp,
    SyncDnsZone,
    SyncTunnelIngress,
    VerifyTarget,
)
from flareport_common.messages.cfresults import CfError, JobResult, TunnelEnsured
from flareport_common.streams.consumer import Delivery
from flareport_common.streams.producer import Producer
from flareport_dns_worker import calltime, jobtrace
from flareport_dns_worker.access import AccessSync
from flareport_dns_worker.cfclient import CfApiError, CfTransientError
from flareport_dns_worker.dns_sync import DnsSync
from flareport_dns_worker.lease import Leases, busy
from flareport_dns_worker.metrics import DRIFT_REPAIRS, JOB_SECONDS, JOBS
from flareport_dns_worker.outcome import Outcome
from flareport_dns_worker.tunnel_list import MIN_REFRESH_SECONDS, TunnelList
from flareport_dns_worker.tunnels import JobFailed, Tunnels, api_error

log = structlog.get_logger("flareport.dns_worker")
VersionedJob = SyncTunnelIngress | SyncDnsZone | SyncAccessApp


class Applied(msgspec.Struct, frozen=True, kw_only=True):
    """What was last applied to a target: the job (re-applied by ``verify_target``) and its per-rule errors
    (repeated in the result of a skipped duplicate, so a redelivery does not hide a conflict).
    """

    job: VersionedJob
    errors: tuple[CfError, ...] = ()


_applied_codec = msgspec.json.Decoder(Applied)


class Worker:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        producer: Producer,
        leases: Leases,
        *,
        dns: DnsSync,
        tunnels: Tunnels,
        access: AccessSync,
        max_deliveries: int,
        tunnel_list: TunnelList | None = None,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._producer = producer
        self._leases = leases
        self._dns = dns
        self._tunnels = tunnels
        self._access = access
        self._max_deliveries = max_deliveries
        self._tunnel_list = tunnel_list

    async def handle(self, job: CfJobMessage, delivery: Delivery) -> None:
        started = time.monotonic()
        job_type = _tag(job)
        with (
            structlog.contextvars.bound_contextvars(target=job.target, job_type=job_type),
            jobtrace.handling(getattr(job, "trace", None)),
            calltime.measuring(),
        ):
            try:
                outcome = await self._handle(job)
            except CfApiError as error:
                # Cloudflare refused a read or write the sync could not work around (a missing permission, a zone
                # gone): never retried, reported with what it means.
                await self._publish_failure(job, api_error(error))
                outcome = "failed"
            except (CfTransientError, TemporaryError) as error:
                busy = isinstance(error, TemporaryError)
                JOBS.labels(job_type, "lease_busy" if busy else "failed").inc()
                if busy or delivery.deliveries < self._max_deliveries:
                    raise TemporaryError(str(error), delay=getattr(error, "delay", 2.0)) from error
                log.error("job.gave_up", error=str(error), deliveries=delivery.deliveries)
                await self._publish_failure(job, CfError(message=str(error), kind="unavailable"))
                outcome = "failed"
            JOBS.labels(job_type, outcome).inc()
            JOB_SECONDS.labels(job_type).observe(time.monotonic() - started)

    async def _handle(self, job: CfJobMessage) -> str:
        if isinstance(job, RefreshTunnels):
            # Read-only and answered through the read model; a worker built without the list has nothing to do.
            if self._tunnel_list is not None:
                await self._tunnel_list.refresh(younger_than=MIN_REFRESH_SECONDS)
            return "applied"
        if isinstance(job, EnsureTunnel):
            async with self._leases.hold(self._keys.target_lease(job.target), job.target):
                ensured = await self._tunnels.ensure(job)
            await self._producer.send(self._keys.cf_results, ensured)
            return "applied" if ensured.ok else "failed"
        if isinstance(job, DeleteTunnel):
            async with self._leases.hold(self._keys.target_lease(job.target), job.target):
                return await self._run(job, lambda: self._tunnels.delete(job, self._progress(job)), version="")
        if isinstance(job, VerifyTarget):
            return await self._verify(job)
        # The lease and what was applied last, in one round trip (this is the path of every change to its first
        # Cloudflare call): a job already applied, by us before a redelivery or by another replica, is answered
        # from that without writing, whether or not the lease was free.
        lease = self._keys.target_lease(job.target)
        # A tunnel's cached configuration, or the names a zone target wrote, too: its job needs it before its
        # first call, and it is written only under this lease (nobody else's write can slip in between once the
        # lease is ours).
        reads_observed = isinstance(job, SyncTunnelIngress | SyncDnsZone)
        observed = (self._keys.target_observed(job.target),) if reads_observed else ()
        token, (applied_raw, desired_raw), cached = await self._leases.take(
            lease, (self._keys.target_applied(job.target), self._keys.target_desired(job.target)), observed
        )
        applied = _applied(job, applied_raw, desired_raw)
        if applied is not None and not await self._granted_since(job, applied[1]):
            if token is not None:
                await self._leases.give_back(lease, token)
            await self._publish(job, Outcome(errors=list(applied[1])), version=applied[0])
            return "skipped"
        if token is None:
            raise busy(job.target, self._leases.lease_ms)
        async with self._leases.held(lease, token, job.target):
            prefetched = cached[0] if cached else None
            return await self._run(
                job, lambda: self._sync(job, fresh=False, observed=prefetched), version=job.version, record=job
            )

    async def _sync(self, job: VersionedJob, *, fresh: bool, observed: dict[bytes, bytes] | None = None) -> Outcome:
        if isinstance(job, SyncDnsZone):
            return await self._dns.sync(job, fresh=fresh, observed=observed)
        if isinstance(job, SyncTunnelIngress):
            return await self._tunnels.sync_ingress(job, fresh=fresh, prefetched=observed)
        return await self._access.sync(job, fresh=fresh)

    async def _run(
        self,
        job: CfJobMessage,
        sync: Callable[[], Awaitable[Outcome]],
        *,
        version: str,
        record: VersionedJob | None = None,
    ) -> str:
        try:
            outcome = await sync()
        except JobFailed as failed:
            await self._publish_failure(job, failed.error, version=version)
            return "failed"
        if record is not None:
            pipe = self._redis.pipeline(transaction=True)
            pipe.set(self._keys.target_applied(record.target), record.version)
            state = Applied(job=record, errors=tuple(outcome.errors))
            pipe.set(self._keys.target_desired(record.target), msgspec.json.encode(state))
            await pipe.execute()
        await self._publish(job, outcome, version=version)
        return "applied" if outcome.writes else "unchanged"

    async def _verify(self, job: VerifyTarget) -> str:
        raw = await self._redis.get(self._keys.target_desired(job.target))
        if raw is None:
            await self._publish_failure(
                job, CfError(message=f"nothing was applied to {job.target} yet", kind="unknown")
            )
            return "failed"
        desired = _applied_codec.decode(raw).job
        async with self._leases.hold(self._keys.target_lease(job.target), job.target):
            outcome = await self._sync(desired, fresh=True)
            state = Applied(job=desired, errors=tuple(outcome.errors))
            pipe = self._redis.pipeline(transaction=True)
            pipe.set(self._keys.target_applied(desired.target), desired.version)
            pipe.set(self._keys.target_desired(desired.target), msgspec.json.encode(state))
            await pipe.execute()
        if outcome.writes:
            DRIFT_REPAIRS.labels(job.target.split(":", 1)[0]).inc()
            log.warning("verify.drift_repaired", writes=outcome.writes)
        await self._publish(job, outcome, version=desired.version, drift=outcome.writes > 0)
        return "applied" if outcome.writes else "unchanged"

    async def _granted_since(self, job: VersionedJob, errors: tuple[CfError, ...]) -> bool:
        """Did an admin allow taking over a name this zone's last sync left as a conflict? Then the same version is
        worth syncing again (``flareport rules adopt``); only looked at when the last sync had conflicts."""
        names = {e.hostname for e in errors if e.kind == "conflict" and e.hostname}
        return isinstance(job, SyncDnsZone) and bool(names) and bool(await self._dns.granted(names))

    async def _publish(self, job: CfJobMessage, outcome: Outcome, *, version: str, drift: bool = False) -> None:
        result = JobResult(
            job_id=job.id,
            job_type=_tag(job),
            target=job.target,
            version=version,
            ok=True,
            errors=tuple(outcome.errors),
            writes=outcome.writes,
            cloudflare_ms=calltime.total_ms(),
            drift_repaired=drift,
            notes=tuple(outcome.notes),
            correlation_id=job.correlation_id,
        )
        await self._producer.send(self._keys.cf_results, result)

    def _progress(self, job: DeleteTunnel) -> Callable[[CfError], Awaitable[None]]:
        """Publish where a long job stands (a failed result of kind ``pending``); its final result follows."""

        async def publish(error: CfError) -> None:
            await self._publish_failure(job, error)

        return publish

    async def _publish_failure(self, job: CfJobMessage, error: CfError, *, version: str = "") -> None:
        if isinstance(job, EnsureTunnel):
            failed: JobResult | TunnelEnsured = TunnelEnsured(
                job_id=job.id, agent_id=job.agent_id, ok=False, error=error, correlation_id=job.correlation_id
            )
        else:
            failed = JobResult(
                job_id=job.id,
                job_type=_tag(job),
                target=job.target,
                version=version or getattr(job, "version", ""),
                ok=False,
                errors=(error,),
                cloudflare_ms=calltime.total_ms(),
                correlation_id=job.correlation_id,
            )
        await self._producer.send(self._keys.cf_results, failed)


def _applied(job: VersionedJob, applied: bytes | None, desired: bytes | None) -> tuple[str, tuple[CfError, ...]] | None:
    """Version and errors to report when ``job`` needs no work: its own when applied, the newer when stale."""
    if applied is None:
        return None
    version = applied.decode()
    state = _applied_codec.decode(desired) if desired is not None else None
    errors = state.errors if state is not None else ()
    if version == job.version and not _prunes_what_was_kept(job, state):
        return version, errors
    if state is not None and state.job.occurred_at > job.occurred_at:
        return version, errors
    return None


def _prunes_what_was_kept(job: VersionedJob, state: Applied | None) -> bool:
    """True when ``job`` prunes and the job applied last did not, so the same version still has work to do."""
    if state is None or isinstance(job, SyncAccessApp) or isinstance(state.job, SyncAccessApp):
        return False
    return job.prune and not state.job.prune


def _tag(job: CfJobMessage) -> str:
    return str(type(job).__struct_config__.tag)
