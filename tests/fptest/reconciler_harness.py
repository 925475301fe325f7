"""Helpers for the reconciler's integration tests: in-process replicas, a stand-in dns-worker, stream checks."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import redis.asyncio as aioredis

from flareport_common.keys import GROUP_DNS_WORKER, GROUP_RECONCILER, Keys
from flareport_common.messages import (
    CfJobMessage,
    CommandMessage,
    ContainerInfo,
    EnsureTunnel,
    JobResult,
    Rule,
    TunnelEnsured,
)
from flareport_common.readmodel import AgentRecord, RuleRecord
from flareport_common.settings import CommonSettings, ReconcilerSettings
from flareport_common.streams import Producer
from flareport_reconciler.service import Replica

_jobs = msgspec.json.Decoder(CfJobMessage)
_commands = msgspec.json.Decoder(CommandMessage)


def reconciler_settings(url: str, prefix: str, **overrides: Any) -> ReconcilerSettings:
    common = CommonSettings(
        redis_url=url, redis_db_index=None, key_prefix=prefix, log_level="warning", log_format="json", tz=None
    )
    values: dict[str, Any] = {
        "common": common,
        "grace_period_seconds": 600,
        "agent_offline_seconds": 60,
        "drift_check_seconds": 600,
        "health_port": 0,
        "claim_idle_seconds": 1.0,
        "sweep_interval_seconds": 0.1,
        "job_timeout_seconds": 600,
    }
    values.update(overrides)
    return ReconcilerSettings(**values)


@dataclass
class Replicas:
    """N replicas in this process, each with its own Redis client (as separate processes would have)."""

    settings: ReconcilerSettings
    count: int = 3
    items: list[Replica] = field(default_factory=list)
    clients: list[aioredis.Redis] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> Replicas:
        for n in range(self.count):
            client = aioredis.Redis.from_url(self.settings.common.redis_url)
            replica = Replica(client, self.settings, f"replica-{n}")
            await replica.ensure_groups()
            self.clients.append(client)
            self.items.append(replica)
            self.tasks.append(asyncio.create_task(replica.run()))
        return self

    async def stop(self) -> None:
        for replica in self.items:
            replica.stop()
        await asyncio.gather(*self.tasks)
        for client in self.clients:
            await client.aclose()


class FakeDnsWorker:
    """Consumes the cf-jobs streams as the dns-worker group would and answers when the test says so."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self.jobs: list[CfJobMessage] = []
        self._producer = Producer(redis)

    async def pull(self) -> list[CfJobMessage]:
        new: list[CfJobMessage] = []
        for stream in (self.keys.cf_jobs, self.keys.cf_jobs_zones):  # both lanes, as the dns-worker reads them
            try:
                await self.redis.xgroup_create(stream, GROUP_DNS_WORKER, id="0", mkstream=True)
            except aioredis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            while True:
                reply: Any = await self.redis.xreadgroup(GROUP_DNS_WORKER, "fake", {stream: ">"}, count=1000)
                if not reply:
                    break
                entries: list[Any] = reply[0][1]
                for entry_id, fields in entries:
                    new.append(_jobs.decode(fields[b"m"]))
                    await self.redis.xack(stream, GROUP_DNS_WORKER, entry_id)
        self.jobs.extend(new)
        return new

    async def answer(self, jobs: Iterable[CfJobMessage], *, ok: bool = True, **extra: Any) -> None:
        results: list[msgspec.Struct] = []
        for job in jobs:
            if isinstance(job, EnsureTunnel):
                results.append(
                    TunnelEnsured(
                        job_id=job.id,
                        agent_id=job.agent_id,
                        ok=ok,
                        tunnel_id=job.tunnel_id or f"tun-{job.agent_id}",
                        tunnel_name=job.tunnel_name,
                        token=f"token-{job.agent_id}",
                        created=job.tunnel_id is None,
                    )
                )
            else:
                version = getattr(job, "version", "")
                target = job.target
                job_type = type(job).__struct_config__.tag
                results.append(
                    JobResult(job_id=job.id, job_type=str(job_type), target=target, version=version, ok=ok, **extra)
                )
        await self._producer.send_many(self.keys.cf_results, results)

    def per_target(self, *types: type) -> Counter[str]:
        return Counter(job.target for job in self.jobs if isinstance(job, types))

    def latest(self, target: str) -> CfJobMessage:
        return [job for job in self.jobs if getattr(job, "target", None) == target][-1]


async def drained(redis: aioredis.Redis, stream: str, group: str = GROUP_RECONCILER) -> bool:
    """Every entry of the stream was delivered to the group and acknowledged."""
    if not await redis.exists(stream):
        return True
    for info in await redis.xinfo_groups(stream):
        name = info["name"].decode() if isinstance(info["name"], bytes) else info["name"]
        if name == group:
            return int(info["pending"]) == 0 and int(info.get("lag") or 0) == 0
    return False


async def all_drained(redis: aioredis.Redis, keys: Keys) -> bool:
    """Every message handled, and no target held for its coalescing window (its plan is still to come)."""
    streams = all([await drained(redis, s) for s in (keys.events, keys.intents, keys.cf_results)])
    return streams and await redis.zcard(keys.targets_waiting) == 0


async def settle(redis: aioredis.Redis, keys: Keys, worker: FakeDnsWorker, *, ok: bool = True) -> list[CfJobMessage]:
    """Answer every job until the reconciler has nothing left to say; returns every job seen on the way."""
    from fptest.waiting import wait_for

    seen: list[CfJobMessage] = []
    while True:
        await wait_for(lambda: all_drained(redis, keys), timeout=60, what="the reconciler streams to be drained")
        new = await worker.pull()
        if not new:
            return seen
        seen.extend(new)
        await worker.answer(new, ok=ok)


async def commands(redis: aioredis.Redis, keys: Keys, agent_id: str) -> list[CommandMessage]:
    entries: Any = await redis.xrange(keys.agent_commands(agent_id))
    return [_commands.decode(fields[b"m"]) for _, fields in entries]


async def agent_record(redis: aioredis.Redis, keys: Keys, agent_id: str) -> AgentRecord | None:
    raw = await redis.get(keys.agent(agent_id))
    return None if raw is None else msgspec.json.decode(raw, type=AgentRecord)


async def rule_records(redis: aioredis.Redis, keys: Keys) -> dict[str, RuleRecord]:
    members: set[Any] = await redis.smembers(keys.rules_index)
    names = sorted(n.decode() for n in members)
    if not names:
        return {}
    raws = await redis.mget([keys.rule(n) for n in names])
    return {n: msgspec.json.decode(r, type=RuleRecord) for n, r in zip(names, raws, strict=True) if r is not None}


def container(cid: str, *hostnames: str, grace: int | None = None, **rule: Any) -> ContainerInfo:
    return ContainerInfo(
        container_id=cid,
        name=f"c-{cid}",
        rules=tuple(Rule(hostname=h, service="http://web:80", **rule) for h in hostnames),
        grace_period_seconds=grace,
    )
