"""The admin's Access groups and the account facts, as resolving ``access.*`` labels needs them. Store: Redis.

Groups are written here from the intents stream (``access_group_upserted`` / ``_deleted``); the account facts by
the dns-worker. Both are read whole, in one round trip, by every refresh and every plan that resolves claims (an
inventory change reads them in its transaction, and the plans made right after its refresh use that read).
"""

from __future__ import annotations

from typing import Any

import msgspec
import redis.asyncio as aioredis
import structlog

from flareport_common.access import AccessFacts, group_definition
from flareport_common.keys import Keys
from flareport_common.messages import AccessGroupUpserted
from flareport_common.replies import text
from flareport_reconciler.resolution import AccessCatalog

log = structlog.get_logger("flareport.reconciler.accessgroups")

# Message fields that are the envelope, not the group's policy.
_ENVELOPE = ("type", "id", "occurred_at", "schema_version", "correlation_id")


class AccessGroups:
    def __init__(self, redis: aioredis.Redis, keys: Keys, *, owner_email: str | None = None) -> None:
        self._redis = redis
        self._keys = keys
        self._owner_email = owner_email

    async def catalog(self) -> AccessCatalog:
        """The access groups and account facts that resolving Access labels needs (one round trip)."""
        pipe = self._redis.pipeline(transaction=False)
        self.queue_catalog(pipe)
        raw_groups, raw_facts = await pipe.execute()
        return self.decode_catalog(raw_groups, raw_facts)

    def queue_catalog(self, pipe: aioredis.client.Pipeline) -> None:
        """Queue the catalog's two reads (in a transaction, or in a pipeline); ``decode_catalog`` their replies."""
        pipe.hgetall(self._keys.access_groups)
        pipe.hgetall(self._keys.access_facts)

    def decode_catalog(self, raw_groups: dict[Any, Any], raw_facts: dict[Any, Any]) -> AccessCatalog:
        groups = {}
        for key, value in raw_groups.items():
            group_id = text(key)
            try:
                groups[group_id] = group_definition(msgspec.json.decode(value), group_id)
            except (msgspec.DecodeError, TypeError, ValueError, AttributeError):
                log.error("planner.bad_access_group", group_id=group_id)  # unresolvable: its rules fail closed
        facts = {text(k): text(v) for k, v in raw_facts.items()}
        return AccessCatalog(
            groups=groups,
            facts=AccessFacts(
                owner_email=self._owner_email or facts.get("owner_email") or None,
                otp_idp_id=facts.get("otp_idp_id") or None,
            ),
        )

    async def put(self, message: AccessGroupUpserted) -> None:
        policy = msgspec.to_builtins(message)
        for name in _ENVELOPE:
            policy.pop(name, None)
        await self._redis.hset(self._keys.access_groups, message.group_id, msgspec.json.encode(policy))

    async def delete(self, group_id: str) -> None:
        await self._redis.hdel(self._keys.access_groups, group_id)
