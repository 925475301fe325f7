"""The store side of the time-driven work (``background``): due grace deletions, dirty marks left behind, silent
agents, prunable inventory entries, the drift check's lease and the recovery hold's release. Store: Redis.

Each item is taken by whichever replica gets there first: a due deletion by the ZREM inside ``delete_due.lua``,
a pruning by its transaction (watching the entries and the floor), the drift check by its lease, the end of the
recovery hold by a GETSET.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import WatchError

from flareport_common.keys import Keys
from flareport_common.replies import text
from flareport_reconciler.claims import pending_member
from flareport_reconciler.inventory import ContainerEntry, newest_seq
from flareport_reconciler.records import TX_RETRIES, raw_bytes
from flareport_reconciler.scripts import DeleteDue, DueDeletion

_entry_decoder = msgspec.json.Decoder(ContainerEntry)


@dataclass(frozen=True, slots=True)
class Due:
    """The oldest score of each sorted set the background works from (None: the set is empty)."""

    deletion_at: float | None  # the earliest end of a grace period (epoch seconds)
    oldest_mark_ms: float | None  # the oldest dirty mark (epoch milliseconds)
    oldest_seen: float | None  # the agent heard from longest ago (epoch seconds)
    recovery: bool  # the API restored an agent key after a loss of data
    oldest_held_ms: float | None = None  # the earliest end of a target's coalescing window (epoch milliseconds)


def _first_score(rows: list[tuple[object, float]]) -> float | None:
    return float(rows[0][1]) if rows else None


class Upkeep:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._delete_due = DeleteDue(redis)

    # ---- what is due ------------------------------------------------------------------------------------------

    async def due(self) -> Due:
        """The oldest item of each kind of time-driven work, in one round trip: an idle pass reads this only."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.zrange(self._keys.pending_deletions, 0, 0, withscores=True)
        pipe.zrange(self._keys.dirty_hostnames, 0, 0, withscores=True)
        pipe.zrange(self._keys.agents_last_seen, 0, 0, withscores=True)
        pipe.exists(self._keys.keys_recovered_at)
        pipe.zrange(self._keys.targets_waiting, 0, 0, withscores=True)
        deletions, marks, seen, recovered, held = await pipe.execute()
        return Due(
            deletion_at=_first_score(deletions),
            oldest_mark_ms=_first_score(marks),
            oldest_seen=_first_score(seen),
            recovery=bool(recovered),
            oldest_held_ms=_first_score(held),
        )

    # ---- grace deletions and marks left behind ---------------------------------------------------------------

    async def due_deletions(self, now: float, limit: int) -> list[tuple[str, str]]:
        """Claims whose grace period ended by ``now``: (hostname, claim id), at most ``limit``."""
        due = await self._redis.zrangebyscore(self._keys.pending_deletions, "-inf", now, start=0, num=limit)
        return [(hostname, claim_id) for hostname, _, claim_id in (text(raw).partition("\x1f") for raw in due)]

    async def delete_due(self, hostname: str, claim_id: str, now: float, mark_ms: int) -> bool:
        """Remove the claim and mark its hostname dirty, if it is still due and no other replica took it."""
        answer = await self._delete_due(
            self._keys,
            hostname=hostname,
            claim_id=claim_id,
            pending_member=pending_member(hostname, claim_id),
            now=now,
            mark_ms=mark_ms,
        )
        return answer == DueDeletion.DELETED

    async def stale_marks(self, older_than_ms: int, limit: int) -> dict[str, int]:
        """Dirty marks older than ``older_than_ms``: a replica died before it finished their refresh."""
        rows = await self._redis.zrangebyscore(
            self._keys.dirty_hostnames, "-inf", older_than_ms, start=0, num=limit, withscores=True
        )
        return {text(row[0]): int(row[1]) for row in rows}

    # ---- agents -------------------------------------------------------------------------------------------------

    async def silent_agents(self, cutoff: float) -> list[str]:
        return [text(a) for a in await self._redis.zrangebyscore(self._keys.agents_last_seen, "-inf", cutoff)]

    async def forget_silent(self, cutoff: float) -> None:
        """Handled agents leave the set (by score, so one whose heartbeat just raised its score stays); the next
        heartbeat puts an offline agent back."""
        await self._redis.zremrangebyscore(self._keys.agents_last_seen, "-inf", cutoff)

    async def agents(self) -> list[str]:
        return sorted(text(a) for a in await self._redis.smembers(self._keys.agents_index))

    # ---- pruning --------------------------------------------------------------------------------------------------

    async def prune_agent(self, agent_id: str, prunable: Callable[[ContainerEntry], bool]) -> int:
        """Delete the agent's ``prunable`` entries and raise its pruning floor to their newest sequence number, in
        one transaction watching the entries and the floor; returns how many were pruned."""
        keys, redis = self._keys, self._redis
        ids = sorted(text(c) for c in await redis.smembers(keys.agent_containers(agent_id)))
        if not ids:
            return 0
        raws = await redis.mget([keys.agent_container(agent_id, cid) for cid in ids])
        candidates = [
            cid for cid, raw in zip(ids, raws, strict=True) if raw is not None and prunable(_entry_decoder.decode(raw))
        ]
        if not candidates:
            return 0
        entry_keys = [keys.agent_container(agent_id, cid) for cid in candidates]
        floor_key = keys.agent_inventory(agent_id)
        async with redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    # An event applied meanwhile changes an entry or the floor: the check is made again.
                    await pipe.watch(*entry_keys, floor_key)
                    values = await pipe.mget([*entry_keys, floor_key])
                    gone = {
                        cid: entry
                        for cid, raw in zip(candidates, values, strict=False)
                        if raw is not None and prunable(entry := _entry_decoder.decode(raw))
                    }
                    if not gone:
                        await pipe.reset()  # type: ignore[no-untyped-call]
                        return 0
                    floor = max(int(values[-1] or 0), *(newest_seq(e) for e in gone.values()))
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.delete(*(keys.agent_container(agent_id, cid) for cid in gone))
                    pipe.srem(keys.agent_containers(agent_id), *gone)
                    pipe.set(floor_key, floor)
                    await pipe.execute()
                    return len(gone)
                except WatchError:
                    TX_RETRIES.labels("prune").inc()
                    continue

    # ---- leases ---------------------------------------------------------------------------------------------------

    async def take_drift_lease(self, lease_ms: int) -> bool:
        """True for the one replica that runs this drift check."""
        return bool(await self._redis.set(self._keys.drift_lease, "1", nx=True, px=lease_ms))

    async def recovered_at(self) -> bytes | None:
        """When the API restored an agent key after a loss of data (``Keys.keys_recovered_at``), if it did."""
        return raw_bytes(await self._redis.get(self._keys.keys_recovered_at))

    async def release_recovery(self, recovered_at: bytes) -> bool:
        """True for the first replica that sees the hold after ``recovered_at`` over: GETSET, so the others find
        the same value there already."""
        return bool(await self._redis.getset(self._keys.recovery_released, recovered_at) != recovered_at)
