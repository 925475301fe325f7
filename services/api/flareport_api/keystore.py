"""Agent keys: created by an admin, shown once, stored only as a SHA-256 hash, bound to one agent on register.

Why a plain SHA-256 and not bcrypt/argon2: those exist to slow down guessing of *low-entropy* secrets such as
human passwords. Our keys are 256 bits from ``secrets``; a stolen hash is as hard to invert as the key is to
guess (2^256 work), so a slow hash would only add CPU to every agent request without adding security. The
hash is also the lookup key (``Keys.api_key(sha256)``), so checking a key is one HGETALL, with a constant-time
comparison of the stored hash on top.

Layout (all written by the API only):
  ``Keys.api_key(hash)``        HASH key_id, label, hash, status, created_at, last_used_at, revoked_at,
                                 agent_id (set once, HSETNX, at the first register), display_name, registered_at
  ``Keys.api_keys_index``       HASH key_id -> hash (list, revoke and roll by id)
  ``Keys.agent_api_keys(id)``   SET of key ids bound to the agent (roll, remove, revoke-after-rotation)

A presented key without a record is checked against its proof (``keyproof``): a key this API issued whose record
Redis lost is restored, bound to its agent, with ``recovered_at`` set, and ``Keys.keys_recovered_at`` tells the
reconciler that Redis lost its data (it then keeps records while the agents report again). A proof is necessary,
not sufficient: the restore also needs positive evidence that Redis lost its data (``recovery``), since anyone
holding the agent-key secret can mint keys with valid proofs.

Every write of a field the web UI shows also raises the read-model counter (``Keys.readmodel_version``) in the same
transaction, so the UI's live updates notice it (``readversion.bump``); only ``redeliver`` (never shown) does not.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
import structlog
from prometheus_client import Counter

from flareport_api.errors import ApiError
from flareport_api.keyproof import KeyMinter, KeyProof
from flareport_api.recovery import RESTORES_REFUSED, SEALED, Epoch, marker_for_missing, may_restore
from flareport_api.schemas import KeyInfo, KeyStatus
from flareport_common import readversion
from flareport_common.keys import Keys
from flareport_common.messages.base import utcnow
from flareport_common.redisconn import replicated
from flareport_common.redissettings import RedisNodes
from flareport_common.replies import optional_text

log = structlog.get_logger("flareport.api.keys")

KEYS_RECOVERED = Counter(
    "flareport_api_agent_keys_recovered_total", "Agent keys restored from their proof after Redis lost their records."
)
# Writing last_used_at on every request would turn each read into a write; once a minute is enough for an admin.
_LAST_USED_EVERY_S = 60.0


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True, slots=True)
class StoredKey:
    key_id: str
    key_hash: str
    label: str
    status: KeyStatus
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    agent_id: str | None
    display_name: str | None
    registered_at: datetime | None
    # Set by a (re-)register: the agent's next poll re-reads everything delivered to it and not acknowledged.
    redeliver: bool = False
    # When the record was restored from the key's proof after Redis lost it (None for a key issued normally).
    recovered_at: datetime | None = None
    # Restored and not registered since: the agent's next heartbeat tells it to register (and resend everything).
    must_register: bool = False

    @classmethod
    def from_hash(cls, raw: Mapping[Any, Any]) -> StoredKey:
        fields = {optional_text(k): optional_text(v) for k, v in raw.items()}
        status: KeyStatus = "revoked" if fields.get("status") == "revoked" else "active"
        return cls(
            key_id=fields.get("key_id") or "",
            key_hash=fields.get("hash") or "",
            label=fields.get("label") or "",
            status=status,
            created_at=_time(fields.get("created_at")) or datetime.fromtimestamp(0, UTC),
            last_used_at=_time(fields.get("last_used_at")),
            revoked_at=_time(fields.get("revoked_at")),
            agent_id=fields.get("agent_id") or None,
            display_name=fields.get("display_name"),
            registered_at=_time(fields.get("registered_at")),
            redeliver=fields.get("redeliver") == "1",
            recovered_at=_time(fields.get("recovered_at")),
            must_register=fields.get("must_register") == "1",
        )

    def info(self) -> KeyInfo:
        return KeyInfo(
            key_id=self.key_id,
            label=self.label,
            status=self.status,
            created_at=self.created_at,
            last_used_at=self.last_used_at,
            revoked_at=self.revoked_at,
            agent_id=self.agent_id,
        )


class KeyStore:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        minter: KeyMinter,
        *,
        recovery: bool = True,
        revoked: frozenset[str] = frozenset(),
        recovery_window_s: float = 3600.0,
        restores_per_minute: int = 600,
        nodes: RedisNodes | None = None,
    ) -> None:
        self._redis = redis
        # With Sentinel, a new key waits for a replica: shown once to the admin, it must survive a failover.
        self._nodes = nodes or RedisNodes()
        self._keys = keys
        self.minter = minter
        self._recovery = recovery
        self._window_s = recovery_window_s
        self._restores_per_minute = restores_per_minute
        # FLAREPORT_REVOKED_AGENT_KEYS: refused whatever Redis holds, and never restored from their proof.
        self._revoked = revoked
        self._last_used: dict[str, float] = {}

    async def create(self, label: str, *, agent_id: str | None = None) -> tuple[str, StoredKey]:
        """A new key (returned in clear once) and its stored record; ``agent_id`` pre-binds it (key roll)."""
        key, key_id = self.minter.mint(agent_id)
        now = utcnow().isoformat()
        digest = hash_key(key)
        fields = {"key_id": key_id, "label": label, "hash": digest, "status": "active", "created_at": now}
        pipe = self._redis.pipeline(transaction=True)
        if agent_id is not None:
            fields["agent_id"] = agent_id
            fields["registered_at"] = now
            pipe.sadd(self._keys.agent_api_keys(agent_id), key_id)
        pipe.hset(self._keys.api_key(digest), mapping=fields)  # type: ignore[arg-type]
        pipe.hset(self._keys.api_keys_index, key_id, digest)
        # This data set issues keys: from now on a key missing from it is unknown, not lost (``recovery``).
        pipe.set(self._keys.data_epoch, Epoch(SEALED, time.time()).encode(), nx=True)
        readversion.bump(pipe, self._keys)
        await pipe.execute()
        await replicated(self._redis, self._nodes, f"{self._keys.prefix}replicated", what="agent_key")
        stored = await self.get(key_id)
        assert stored is not None
        return key, stored

    async def lookup(self, presented: str) -> StoredKey | None:
        """The record of a presented key, or None. The hash comparison is constant-time."""
        digest = hash_key(presented)
        raw = await self._redis.hgetall(self._keys.api_key(digest))
        if not raw:
            return await self._recover(presented, digest) if self._recovery else None
        stored = StoredKey.from_hash(raw)
        if not hmac.compare_digest(stored.key_hash.encode(), digest.encode()):
            return None
        return self._configured_revocation(stored)

    async def current(self, stored: StoredKey) -> StoredKey | None:
        """The record of an already authenticated key as Redis holds it now (None once it is gone)."""
        raw = await self._redis.hgetall(self._keys.api_key(stored.key_hash))
        return self._configured_revocation(StoredKey.from_hash(raw)) if raw else None

    def _configured_revocation(self, stored: StoredKey) -> StoredKey:
        if stored.key_id in self._revoked and stored.status != "revoked":
            return replace(stored, status="revoked")
        return stored

    async def _recover(self, presented: str, digest: str) -> StoredKey | None:
        """Restore the record of a key this API issued and Redis lost (see the module docstring)."""
        proof = self.minter.verify(presented)
        if proof is None:
            return None
        now = utcnow()
        if proof.key_id in self._revoked:
            log.warning("refused to restore an agent key listed in FLAREPORT_REVOKED_AGENT_KEYS", key_id=proof.key_id)
            return StoredKey.from_hash(
                {"key_id": proof.key_id, "hash": digest, "status": "revoked", "created_at": now.isoformat()}
            )
        if not await self._restore_allowed(proof, digest):
            return None
        fields = {
            "key_id": proof.key_id,
            "label": "restored after a loss of data",
            "hash": digest,
            "status": "active",
            "created_at": now.isoformat(),
            "agent_id": proof.agent_id,
            "registered_at": now.isoformat(),
            "recovered_at": now.isoformat(),
            "redeliver": "1",
            "must_register": "1",
        }
        record = self._keys.api_key(digest)
        pipe = self._redis.pipeline(transaction=True)
        # One transaction writes the whole record, so a concurrent request never sees half of it; of two replicas
        # restoring the same key at once, only the first one's HSETNX succeeds (it logs and counts), and the
        # second rewrites the same fields.
        pipe.hsetnx(record, "key_id", proof.key_id)
        pipe.hset(record, mapping=fields)  # type: ignore[arg-type]
        pipe.hset(self._keys.api_keys_index, proof.key_id, digest)
        pipe.sadd(self._keys.agent_api_keys(proof.agent_id), proof.key_id)
        pipe.set(self._keys.keys_recovered_at, f"{now.timestamp():.3f}")
        readversion.bump(pipe, self._keys)
        first = (await pipe.execute())[0]
        if first:
            KEYS_RECOVERED.inc()
            log.warning(
                "restored an agent key whose record was lost (Redis lost its data?); the agent registers again and "
                "resends its containers",
                key_id=proof.key_id,
                agent_id=proof.agent_id,
            )
        return StoredKey.from_hash(fields)

    async def _restore_allowed(self, proof: KeyProof, digest: str) -> bool:
        """Whether Redis lost its data (and this agent its keys) recently enough to restore from a proof."""
        now = time.time()
        raw = await self._redis.get(self._keys.data_epoch)
        if raw is None:  # the marker is gone: Redis lost its data (or never held keys); see ``recovery``
            found = marker_for_missing(await self._redis.hlen(self._keys.api_keys_index), now)
            await self._redis.set(self._keys.data_epoch, found.encode(), nx=True)
            raw = await self._redis.get(self._keys.data_epoch)
        epoch = Epoch.decode(optional_text(raw))
        if epoch is None or not may_restore(epoch, now, self._window_s):
            RESTORES_REFUSED.labels("data_present").inc()
            log.warning(
                "refused to restore an agent key: Redis did not lose its data, so a valid proof without a record "
                "means a key minted with the agent-key secret (or deleted); check who holds that secret",
                key_id=proof.key_id,
                agent_id=proof.agent_id,
            )
            return False
        taken = await self.get(proof.key_id)
        if taken is not None and taken.key_hash != digest:
            # A key id is issued once: another key with an id Redis knows was minted with the secret.
            RESTORES_REFUSED.labels("key_id_taken").inc()
            log.warning("refused to restore an agent key: its key id belongs to another key", key_id=proof.key_id)
            return False
        for other in await self.of_agent(proof.agent_id):
            if other.key_hash != digest and other.status == "active":
                RESTORES_REFUSED.labels("agent_has_key").inc()
                log.warning(
                    "refused to restore an agent key: its agent has an active key, so it lost nothing",
                    key_id=proof.key_id,
                    agent_id=proof.agent_id,
                    active_key_id=other.key_id,
                )
                return False
        minute = int(now // 60)
        counter = self._keys.keys_restored(minute)
        pipe = self._redis.pipeline(transaction=True)
        pipe.incr(counter)
        pipe.expire(counter, 120)
        count, _ = await pipe.execute()
        if int(count) > self._restores_per_minute:
            RESTORES_REFUSED.labels("rate").inc()
            retry = max(1, math.ceil((minute + 1) * 60 - now))
            raise ApiError(
                429,
                "restore_rate_limited",
                f"too many agent keys restored this minute; retry in {retry}s",
                headers={"Retry-After": str(retry)},
            )
        return True

    async def touch(self, stored: StoredKey) -> None:
        now = time.monotonic()
        if now - self._last_used.get(stored.key_id, -_LAST_USED_EVERY_S) < _LAST_USED_EVERY_S:
            return
        self._last_used[stored.key_id] = now
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(self._keys.api_key(stored.key_hash), "last_used_at", utcnow().isoformat())
        # "last used" is on the keys page (written at most once a minute per key and process).
        readversion.bump(pipe, self._keys)
        await pipe.execute()

    async def get(self, key_id: str) -> StoredKey | None:
        digest = await self._redis.hget(self._keys.api_keys_index, key_id)
        if digest is None:
            return None
        raw = await self._redis.hgetall(self._keys.api_key(optional_text(digest) or ""))
        return self._configured_revocation(StoredKey.from_hash(raw)) if raw else None

    async def all(self) -> list[StoredKey]:
        index = await self._redis.hgetall(self._keys.api_keys_index)
        pipe = self._redis.pipeline(transaction=False)
        for digest in index.values():
            pipe.hgetall(self._keys.api_key(optional_text(digest) or ""))
        rows = await pipe.execute() if index else []
        found = [self._configured_revocation(StoredKey.from_hash(raw)) for raw in rows if raw]
        return sorted(found, key=lambda k: (k.created_at, k.key_id))

    async def of_agent(self, agent_id: str) -> list[StoredKey]:
        ids = await self._redis.smembers(self._keys.agent_api_keys(agent_id))
        found = [await self.get(optional_text(i) or "") for i in ids]
        return sorted((k for k in found if k is not None), key=lambda k: (k.created_at, k.key_id))

    async def bind(self, stored: StoredKey, agent_id: str, display_name: str) -> str:
        """Bind an unbound key to ``agent_id`` (first register wins); returns the agent the key is bound to."""
        record = self._keys.api_key(stored.key_hash)
        claim = self._redis.pipeline(transaction=True)
        claim.hsetnx(record, "agent_id", agent_id)
        claim.hget(record, "agent_id")
        readversion.bump(claim, self._keys)
        won, current, *_ = await claim.execute()
        bound = agent_id if won else optional_text(current) or agent_id
        pipe = self._redis.pipeline(transaction=True)
        pipe.sadd(self._keys.agent_api_keys(bound), stored.key_id)
        pipe.hset(
            record, mapping={"display_name": display_name, "registered_at": utcnow().isoformat(), "redeliver": "1"}
        )
        pipe.hdel(record, "must_register")
        readversion.bump(pipe, self._keys)
        await pipe.execute()
        return bound

    async def clear_redeliver(self, stored: StoredKey) -> None:
        await self._redis.hdel(self._keys.api_key(stored.key_hash), "redeliver")

    async def revoke(self, stored: StoredKey) -> None:
        if stored.status == "revoked":
            return
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(
            self._keys.api_key(stored.key_hash), mapping={"status": "revoked", "revoked_at": utcnow().isoformat()}
        )
        readversion.bump(pipe, self._keys)
        await pipe.execute()

    async def revoke_agent_keys(self, agent_id: str, *, keep: str | None = None) -> int:
        revoked = 0
        for stored in await self.of_agent(agent_id):
            if stored.key_id != keep and stored.status == "active":
                await self.revoke(stored)
                revoked += 1
        return revoked
