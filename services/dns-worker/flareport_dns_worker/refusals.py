"""Writes Cloudflare refused, remembered per zone so that one bad record costs single calls once, not forever.

A refused ``dns_records/batch`` call changed nothing (one transaction), so the worker re-does its operations
one call each to find the offending one. Without a memory, that offending write would be planned again by every
later job of the zone — each change of a shared zone would then cost one refused batch plus one call per
operation, and burn the account's rate budget for every target in it. So a write Cloudflare refused with a 400
(a validation or quota refusal of that record; a conflict is detected by the plan itself after a fresh read, and a
401/403 says nothing about the record) is remembered by its *fingerprint* — the operation, its name or record id,
and its exact body — and left out of the zone's next plans, reported again as the same per-record error, so the
zone's next change costs one batch call again.

A refusal is forgotten when

* the desired record changes (another body is another fingerprint: a fixed rule is tried at once);
* ``verify_target`` re-reads the zone (``fresh``): the periodic drift check retries every remembered write;
* ``REMEMBER_SECONDS`` have passed (a refusal such as a full record quota may not last).

The core (fingerprints, leaving remembered writes out of a plan) is pure; ``Refusals`` is the Redis edge.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any

import msgspec
import redis.asyncio as aioredis

from flareport_common.keys import Keys
from flareport_common.messages.cfresults import CfError
from flareport_common.replies import text
from flareport_dns_worker.dns_plan import Delete, DnsPlan, Patch, Post

REMEMBER_SECONDS = 3600.0
Op = Delete | Patch | Post


class Remembered(msgspec.Struct, frozen=True, kw_only=True):
    error: CfError
    until: float


_remembered = msgspec.json.Decoder(Remembered)


def fingerprint(op: Op) -> str:
    """A short stable id of exactly this write: the same operation on the same record with the same body."""
    if isinstance(op, Delete):
        identity: list[Any] = ["delete", op.record_id]
    elif isinstance(op, Patch):
        identity = ["patch", op.record_id, op.body]
    else:
        identity = ["post", op.name, op.body]
    encoded = json.dumps(identity, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:32]


def without_refused(plan: DnsPlan, refused: Mapping[str, CfError]) -> tuple[DnsPlan, list[CfError]]:
    """``plan`` without the writes refused before, and the errors to report for them again."""
    if not refused:
        return plan, []
    errors: list[CfError] = []

    def keep(op: Op) -> bool:
        error = refused.get(fingerprint(op))
        if error is not None:
            errors.append(error)
        return error is None

    kept = DnsPlan(
        deletes=[op for op in plan.deletes if keep(op)],
        patches=[op for op in plan.patches if keep(op)],
        posts=[op for op in plan.posts if keep(op)],
        conflicts=list(plan.conflicts),
        managed=set(plan.managed),
    )
    # An adoption stands only if its write is still sent.
    kept.adopted = {n: what for n, what in plan.adopted.items() if any(p.name == n for p in kept.patches)}
    return kept, errors


class Refusals:
    """The refused writes of each zone, in ``Keys.cf_zone_refused(zone_id)``."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, *, seconds: float = REMEMBER_SECONDS) -> None:
        self._redis = redis
        self._keys = keys
        self._seconds = seconds

    async def load(self, zone_id: str, raw: Mapping[Any, Any] | None = None) -> dict[str, CfError]:
        """Fingerprint -> error of the zone's writes refused less than ``seconds`` ago. ``raw``: the zone's hash
        when the caller read it already (with the zone's lease)."""
        if raw is None:
            raw = await self._redis.hgetall(self._keys.cf_zone_refused(zone_id))
        now = time.time()
        live: dict[str, CfError] = {}
        expired: list[Any] = []
        for field, value in raw.items():
            entry = _remembered.decode(value)
            if entry.until > now:
                live[text(field)] = entry.error
            else:
                expired.append(field)
        if expired:
            await self._redis.hdel(self._keys.cf_zone_refused(zone_id), *expired)
        return live

    async def remember(self, zone_id: str, refused: Mapping[str, CfError]) -> None:
        if not refused:
            return
        key = self._keys.cf_zone_refused(zone_id)
        until = time.time() + self._seconds
        mapping: dict[Any, Any] = {
            fp: msgspec.json.encode(Remembered(error=error, until=until)) for fp, error in refused.items()
        }
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(key, mapping=mapping)
        # The whole hash goes when its newest entry has expired, so a zone nobody writes to keeps nothing.
        pipe.expire(key, int(self._seconds) + 1)
        await pipe.execute()

    async def forget(self, zone_id: str) -> None:
        await self._redis.delete(self._keys.cf_zone_refused(zone_id))
