"""After a Redis failover or restart (a new replication id), the reconciler has every agent resend its inventory,
once across replicas; a first start and an unchanged Redis change nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import redis.asyncio as aioredis

from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys
from flareport_common.messages import CommandMessage, ResyncInventory
from flareport_common.streams.codec import FIELD
from flareport_reconciler import failover
from flareport_reconciler.service import Replica
from fptest.reconciler_harness import reconciler_settings

_commands = msgspec.json.Decoder(CommandMessage)


async def _commands_of(redis: aioredis.Redis, keys: Keys, agent_id: str) -> list[CommandMessage]:
    entries: Any = await redis.xrange(keys.agent_commands(agent_id))
    return [_commands.decode(fields[FIELD]) for _, fields in entries]


async def test_a_new_redis_history_makes_every_agent_resend_its_inventory_once(
    redis_server: LocalRedis, redis: aioredis.Redis, prefix: str
) -> None:
    settings = reconciler_settings(redis_server.url, prefix)
    keys = Keys(prefix)
    first, second = Replica(redis, settings, "r1"), Replica(redis, settings, "r2")
    await redis.sadd(keys.agents_index, "agt_a", "agt_b")

    assert not await failover.check(first.reconciler), "a first start should only remember the history"
    assert not await failover.check(second.reconciler), "an unchanged Redis should need no healing"
    assert await _commands_of(redis, keys, "agt_a") == []

    # What a promoted replica holds: the id its old primary stored, not its own.
    await redis.set(keys.redis_history, "0123456789abcdef0123456789abcdef01234567")
    healed = await asyncio.gather(failover.check(first.reconciler), failover.check(second.reconciler))
    assert sorted(healed) == [False, True], "exactly one reconciler replica should heal"
    for agent_id in ("agt_a", "agt_b"):
        commands = await _commands_of(redis, keys, agent_id)
        assert [type(c) for c in commands] == [ResyncInventory], f"{agent_id} should be asked for its inventory once"
    assert not await failover.check(first.reconciler), "healing should happen once per new history"
