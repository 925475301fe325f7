"""The admin audit list: admin actions recorded with who asked and when (``GET /api/v1/audit``, ``flareport
audit``, the web UI's dashboard): a rule's forced deletion, a rule's override and its revert to labels.

An entry is written in the same transaction as the intent it stands for, so the list never claims an action
that was not sent, nor misses one that was. The list is capped (newest first): it answers "who did this
recently", not a compliance archive (the API's log has every request).
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from flareport_api.schemas import Accepted, AuditEntry
from flareport_api.state import ApiContext
from flareport_api.usecases import intents
from flareport_common import readversion
from flareport_common.messages.base import Message
from flareport_common.replies import text
from flareport_common.streams.codec import encode

AUDIT_LIMIT = 1000
API_ACTOR = "api"  # the master key: one credential, so "the API" is all that can be said about who held it

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AuditEntry)


def ui_actor(user: str) -> str:
    return f"ui:{user}"


@dataclass(frozen=True, slots=True)
class Declaration:
    """A field of one of the API's declaration hashes to set (``value``) or delete (``None``) with the intent."""

    hash_key: str
    field: str
    value: bytes | None


async def with_intent(
    ctx: ApiContext, entry: AuditEntry, intent: Message, declaration: Declaration | None = None
) -> Accepted:
    """Record ``entry``, write ``declaration`` if any and send ``intent``, in one transaction."""
    pipe = ctx.redis.pipeline(transaction=True)
    if declaration is not None:
        if declaration.value is None:
            pipe.hdel(declaration.hash_key, declaration.field)
        else:
            pipe.hset(declaration.hash_key, declaration.field, declaration.value)
    pipe.lpush(ctx.keys.admin_audit, _encoder.encode(entry))
    pipe.ltrim(ctx.keys.admin_audit, 0, AUDIT_LIMIT - 1)
    readversion.bump(pipe, ctx.keys)  # the dashboard shows the newest entries
    pipe.xadd(ctx.keys.intents, encode(intent))  # type: ignore[arg-type]  # no MAXLEN: the reconciler trims
    results = await pipe.execute()
    await intents.wait_replicated(ctx, intent)
    return Accepted(intent_id=intent.id, stream_id=text(results[-1]))


async def recent(ctx: ApiContext, count: int) -> list[AuditEntry]:
    """The newest ``count`` entries, newest first; an entry that does not decode (a newer writer) is skipped."""
    found: list[AuditEntry] = []
    for raw in await ctx.redis.lrange(ctx.keys.admin_audit, 0, count - 1):
        try:
            found.append(_decoder.decode(raw))
        except msgspec.DecodeError:
            continue
    return found
