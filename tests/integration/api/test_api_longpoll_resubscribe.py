"""A broken notification subscription costs a waiting poll nothing once it is back: the fallback check is 10 s
apart (issue 23: idle must be idle), so what was published while the subscription was down is looked for when it is
made again, not at the next check."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from flareport_api.longpoll import CommandHub
from flareport_common.keys import Keys
from fptest.waiting import already, wait_for


async def test_every_waiter_looks_when_the_subscription_breaks_and_again_once_it_is_back(
    redis: aioredis.Redis, keys: Keys
) -> None:
    hub = CommandHub(redis, keys, poll_s=60.0, redeliver_s=60.0)  # the fallback would take a minute
    looked: list[float] = []
    wake_all = hub.wake_all

    def counting() -> None:
        looked.append(time.monotonic())
        wake_all()

    hub.wake_all = counting  # type: ignore[method-assign]

    async def subscribers() -> int:
        answer = await redis.pubsub_numsub(keys.command_notifications)
        return int(answer[0][1])

    async def subscribed() -> bool:
        return await subscribers() == 1

    listener = asyncio.create_task(hub.listen())
    try:
        await wait_for(subscribed, what="the hub's subscription")
        await redis.client_kill_filter(_type="pubsub")  # what a Redis restart or failover does to it
        await wait_for(lambda: already(len(looked) >= 2), timeout=10, what="a look on the break and one once back")
        assert await subscribers() == 1, "subscribed again"
    finally:
        await hub.stop_listening(listener)
