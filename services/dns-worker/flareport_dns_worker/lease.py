"""Single flight per Cloudflare target: a short lease in Redis (``SET NX PX``), renewed while the job runs.

Two replicas can be handed jobs for the same target (a reclaimed message, two jobs for one zone). Whoever
holds ``{target:<t>}:lease`` writes; the other raises ``TemporaryError`` and its job comes back shortly. The
lease is short (15 s by default) so a crashed worker blocks a target only briefly, and renewed every third
of its length so a slow job keeps it. Renewal and release check the holder's token, so a worker whose lease
expired can never extend or delete the lease someone else took meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Sequence

import redis.asyncio as aioredis
import structlog

from flareport_common.errors import TemporaryError
from flareport_dns_worker.scripts import ReleaseLease, RenewLease

log = structlog.get_logger("flareport.dns_worker.lease")


class Leases:
    def __init__(self, redis: aioredis.Redis, *, lease_ms: int) -> None:
        self._redis = redis
        self.lease_ms = lease_ms
        self._renew = RenewLease(redis)
        self._release = ReleaseLease(redis)

    @contextlib.asynccontextmanager
    async def hold(self, key: str, target: str, *, wait: float = 0.0) -> AsyncIterator[None]:
        """Hold the lease for the block. ``wait`` > 0 polls for it that long (for short, shared sections such
        as one zone's writes) before giving up with ``TemporaryError``.
        """
        token = await self._wait_for(key, target, wait)
        async with self.held(key, token, target):
            yield

    async def take_reading(
        self, key: str, target: str, *, wait: float, hashes: Sequence[str]
    ) -> tuple[str, list[dict[bytes, bytes]]]:
        """The lease (waiting up to ``wait`` seconds, as ``hold`` does) and ``hashes`` (HGETALL) read once it is
        ours: in the round trip that takes it when it is free, the common case. The caller enters ``held``."""
        token, _, values = await self.take(key, (), hashes)
        if token is not None:
            return token, values
        # Busy: wait with the plain SET NX (the hashes may be large; they are read once, after the lease is ours).
        token = await self._wait_for(key, target, wait)
        pipe = self._redis.pipeline(transaction=False)
        for name in hashes:
            pipe.hgetall(name)
        return token, list(await pipe.execute())

    async def _wait_for(self, key: str, target: str, wait: float) -> str:
        token = uuid.uuid4().hex
        deadline = time.monotonic() + wait
        while not await self._redis.set(key, token, nx=True, px=self.lease_ms):
            if time.monotonic() >= deadline:
                raise busy(target, self.lease_ms)
            await asyncio.sleep(0.05)
        return token

    async def take(
        self, key: str, reads: Sequence[str], hashes: Sequence[str] = ()
    ) -> tuple[str | None, list[bytes | None], list[dict[bytes, bytes]]]:
        """Try the lease once and read ``reads`` (GET) and ``hashes`` (HGETALL) in the same round trip: the token
        when taken (the caller then enters ``held`` or calls ``give_back``), None when another holder has it.
        Taken, the values are current: whoever writes them holds this lease. Not taken, they say what the holder
        last finished."""
        token = uuid.uuid4().hex
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(key, token, nx=True, px=self.lease_ms)
        for read in reads:
            pipe.get(read)
        for name in hashes:
            pipe.hgetall(name)
        taken, *values = await pipe.execute()
        return (token if taken else None), values[: len(reads)], values[len(reads) :]

    @contextlib.asynccontextmanager
    async def held(self, key: str, token: str, target: str) -> AsyncIterator[None]:
        """Keep a lease taken with ``token`` renewed for the block, and release it after."""
        renewer = asyncio.create_task(self._keep(key, token, target), name=f"lease-{target}")
        try:
            yield
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            await self.give_back(key, token)

    async def give_back(self, key: str, token: str) -> None:
        await self._release(key, token=token)

    async def _keep(self, key: str, token: str, target: str) -> None:
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            try:
                renewed = await self._renew(key, token=token, lease_ms=self.lease_ms)
            except Exception as exc:  # Redis blips: the next renewal may still make it in time
                log.warning("lease.renew_failed", target=target, error=str(exc))
                continue
            if not renewed:
                log.error("lease.lost", target=target)
                return


def busy(target: str, lease_ms: int) -> TemporaryError:
    """The job comes back after a third of a lease: by then the holder has finished or renewed."""
    return TemporaryError(f"target {target} is being written by another worker", delay=lease_ms / 3000)
