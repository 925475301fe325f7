"""The API's Lua scripts (``lua/*.lua``), one typed wrapper each: the only code that knows their KEYS/ARGV order.

The scripts the API ran as registered script objects (EVALSHA, loaded again by redis-py when a restarted Redis
lost its cache) still are: both run on a client, never inside a pipeline or MULTI, and the event batch's script is
the longest one the API sends on its busiest path. The UI's scripts run once per login or start, with EVAL.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum, StrEnum
from typing import Any

import redis.asyncio as aioredis

from flareport_common import lua
from flareport_common.streams.codec import FIELD

_ACCEPT_EVENTS = lua.load("flareport_api", "accept_events")
_ACQUIRE_POLL_SLOT = lua.load("flareport_api", "acquire_poll_slot")
_RESERVE_LOGIN = lua.load("flareport_api", "reserve_login")
_RELEASE_LOGIN = lua.load("flareport_api", "release_login")
_DELETE_IF_SAME = lua.load("flareport_api", "delete_if_same")


class Admission(StrEnum):
    """What ``accept_events.lua`` answers first (a word: the reply's other fields depend on it)."""

    OK = "ok"
    RATE = "rate"  # over the agent's events rate
    BACKLOG = "backlog"  # the group's unhandled entries are at the limit


class AcceptEvents:
    """``accept_events.lua``: admit a batch of an agent's events or refuse it whole (read by ``ingest.interpret``)."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._script = redis.register_script(_ACCEPT_EVENTS.source)

    async def __call__(
        self,
        *,
        last_seq_key: str,
        stream: str,
        bucket_key: str,
        rate: float,
        burst: int,
        backlog_limit: int,
        group: str,
        events: Sequence[tuple[int | None, bytes]],
    ) -> list[Any]:
        """Events are (sequence number or ``None``, encoded message) pairs, added under the codec's field."""
        args: list[Any] = [repr(rate), burst, backlog_limit, group, FIELD]
        for seq, payload in events:
            args += ["" if seq is None else str(seq), payload]
        return list(await self._script(keys=[last_seq_key, stream, bucket_key], args=args))


class Slot(IntEnum):
    """What ``acquire_poll_slot.lua`` answers first."""

    FULL = 0  # the agent holds its limit already
    TAKEN = 1


class AcquirePollSlot:
    """``acquire_poll_slot.lua``: take one of an agent's long-poll slots, which lapses by itself after ``life_ms``."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._script = redis.register_script(_ACQUIRE_POLL_SLOT.source)

    async def __call__(self, polls_key: str, *, limit: int, life_ms: int, poll_id: str) -> tuple[Slot, int]:
        """(``TAKEN``, 0), or (``FULL``, milliseconds until the agent's oldest slot lapses)."""
        answer, lapse_ms = await self._script(keys=[polls_key], args=[limit, life_ms, poll_id])
        return Slot(int(answer)), int(lapse_ms)


async def reserve_login(redis: aioredis.Redis, failures_key: str, *, limit: int, window_s: int) -> int:
    """``reserve_login.lua``: 0 when the attempt is counted, else the seconds left in the full window."""
    return int(await _RESERVE_LOGIN.eval(redis, [failures_key], [limit, window_s]))


async def release_login(redis: aioredis.Redis, failures_key: str) -> None:
    """``release_login.lua``: give a reserved attempt back (never below zero, never creating the key)."""
    await _RELEASE_LOGIN.eval(redis, [failures_key], [])


async def delete_if_same(redis: aioredis.Redis, key: str, expected: str) -> bool:
    """``delete_if_same.lua``: delete ``key`` only while it holds ``expected``; whether it was deleted."""
    return bool(await _DELETE_IF_SAME.eval(redis, [key], [expected]))
