"""How an admin's change reaches the reconciler: an intent on the intents stream, alone or with what it declares.

Everything that touches Cloudflare or an agent is the reconciler's to do; the API only says what the admin wants.
Manual rules and access groups are also kept by the API (so they can be listed and edited before the reconciler
acted): the declaration, the read-model counter the web UI watches, and the intent go in one MULTI, so the stored
declaration and the intent cannot disagree.
"""

from __future__ import annotations

from flareport_api.schemas import Accepted
from flareport_api.state import ApiContext
from flareport_common import readversion
from flareport_common.messages.base import Message
from flareport_common.redisconn import replicated
from flareport_common.replies import text
from flareport_common.streams.codec import encode


async def send(ctx: ApiContext, intent: Message) -> Accepted:
    stream_id = await ctx.producer.send(ctx.keys.intents, intent)
    await _replicated(ctx, intent)
    return Accepted(intent_id=intent.id, stream_id=stream_id)


async def _replicated(ctx: ApiContext, intent: Message) -> None:
    """With Sentinel, an admin's change is answered only once a replica holds it (REDIS_WAIT_REPLICAS): a 202
    followed by a failover must not lose an enrolment nobody would repeat. Admin changes are rare, so the wait
    (a replica round trip) costs nothing noticeable; agents' events do not wait (the reconciler heals those after
    a failover)."""
    await replicated(
        ctx.redis, ctx.settings.common.redis_nodes, ctx.keys.replicated_channel, what=type(intent).__name__
    )


# For use cases that write their intent in a transaction of their own (``usecases.audit``).
wait_replicated = _replicated


async def store_with(ctx: ApiContext, hash_key: str, field: str, value: bytes | None, intent: Message) -> Accepted:
    """Set (or, with ``value`` None, delete) ``field`` of the declarations hash ``hash_key`` and send ``intent``,
    in one transaction."""
    pipe = ctx.redis.pipeline(transaction=True)
    if value is None:
        pipe.hdel(hash_key, field)
    else:
        pipe.hset(hash_key, field, value)
    readversion.bump(pipe, ctx.keys)  # the manual rules and access groups pages show these hashes
    pipe.xadd(ctx.keys.intents, encode(intent))  # type: ignore[arg-type]  # no MAXLEN: the reconciler trims
    results = await pipe.execute()
    await _replicated(ctx, intent)
    return Accepted(intent_id=intent.id, stream_id=text(results[-1]))
