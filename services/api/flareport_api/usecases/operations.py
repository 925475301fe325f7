"""Operations: a reconcile on demand, and the dead letters (list, replay).

Replay puts a dead letter's original fields back on the stream it came from and deletes the dead letter, in one
MULTI: the message is in exactly one of the two places. Only streams under this deployment's key prefix are
accepted as replay targets, so a forged dead letter cannot make the API write elsewhere.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from flareport_api.apierror import ApiError, not_found
from flareport_api.schemas import Accepted, DeadLetterEntry, DeadLetterList, Replayed
from flareport_api.state import ApiContext
from flareport_api.usecases import intents
from flareport_common import validate
from flareport_common.messages.deadletters import DeadLetter
from flareport_common.messages.intents import ReconcileRequested
from flareport_common.replies import text
from flareport_common.streams.codec import message_json

_SCOPE = re.compile(r"^(?:all|(?:agent|zone|tunnel|access|rule):[A-Za-z0-9*._:/-]{1,253})\Z")
# The greatest stream id: none can follow it (Redis answers an exclusive range after it with an error).
_AFTER_THE_LAST = f"({validate.MAX_STREAM_PART}-{validate.MAX_STREAM_PART}"


async def reconcile(ctx: ApiContext, scope: str, *, verify: bool) -> Accepted:
    """Have the reconciler recompute (and, with ``verify``, re-read from Cloudflare) everything in ``scope``:
    ``all`` or kind:name (e.g. zone:example.com)."""
    if not _SCOPE.match(scope):
        raise ApiError(422, "invalid_body", "scope must be 'all' or kind:name (e.g. zone:example.com)", field="scope")
    return await intents.send(ctx, ReconcileRequested(scope=scope, verify=verify))


def dead_letter(entry_id: Any, fields: Any) -> DeadLetterEntry | None:
    """A dead-letter stream entry as the API shows it, or None when it cannot be read."""
    try:
        letter = msgspec.json.decode(message_json(fields), type=DeadLetter)
    except (msgspec.DecodeError, TypeError):
        return None
    return DeadLetterEntry(
        entry_id=text(entry_id),
        source_stream=letter.source_stream,
        source_id=letter.source_id,
        group=letter.group,
        consumer=letter.consumer,
        reason=letter.reason,
        error=letter.error,
        deliveries=letter.deliveries,
        occurred_at=letter.occurred_at,
        payload=letter.payload,
    )


async def dead_letters(ctx: ApiContext, count: int, after: str | None) -> DeadLetterList:
    """Up to ``count`` dead letters, oldest first, after the entry id ``after`` (a checked stream id) if given;
    ``next_after`` is set when there may be more."""
    start = "-" if after is None else "(" + after
    if start == _AFTER_THE_LAST:
        return DeadLetterList(dead_letters=())
    entries = await ctx.redis.xrange(ctx.keys.dead_letters, start, "+", count=count) or []
    letters = [letter for entry_id, fields in entries if (letter := dead_letter(entry_id, fields)) is not None]
    next_after = text(entries[-1][0]) if len(entries) == count else None
    return DeadLetterList(dead_letters=tuple(letters), next_after=next_after)


async def newest_dead_letters(ctx: ApiContext, count: int) -> list[DeadLetterEntry]:
    entries = await ctx.redis.xrevrange(ctx.keys.dead_letters, "+", "-", count=count) or []
    return [letter for entry_id, fields in entries if (letter := dead_letter(entry_id, fields)) is not None]


async def replay(ctx: ApiContext, entry_id: str) -> Replayed:
    """Put the dead letter ``entry_id`` (a checked stream id) back on its source stream: 404 when there is no such
    letter, 409 when it cannot be read or names a stream that is not this deployment's."""
    entries = await ctx.redis.xrange(ctx.keys.dead_letters, entry_id, entry_id, count=1)
    if not entries:
        raise not_found("dead letter", entry_id)
    letter = dead_letter(*entries[0])
    if letter is None:
        raise ApiError(409, "undecodable_dead_letter", "this dead letter cannot be read; inspect it with redis-cli")
    if not letter.source_stream.startswith(ctx.keys.prefix) or letter.source_stream == ctx.keys.dead_letters:
        raise ApiError(409, "foreign_stream", f"source stream {letter.source_stream!r} is not one of ours")
    pipe = ctx.redis.pipeline(transaction=True)
    pipe.xadd(letter.source_stream, letter.payload)  # type: ignore[arg-type]
    pipe.xdel(ctx.keys.dead_letters, entry_id)
    new_id, _ = await pipe.execute()
    return Replayed(source_stream=letter.source_stream, new_id=text(new_id))
