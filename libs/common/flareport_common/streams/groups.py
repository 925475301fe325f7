"""Consumer-group plumbing shared by every reader of a stream through a group.

Two readers use it: the stream runtime (``streams.consumer``), and the API's command long-poll, which reads each
agent's command stream through the group ``agent`` itself because its waiting is driven by notifications rather
than by a blocking read. Both need the same few rules, kept here once:

* creating a group ignores only BUSYGROUP (it exists); any other refusal is a real error;
* NOGROUP (or UNBLOCKED: a blocked read whose key was deleted under it) means Redis lost the stream or the group
  (restarted without its data): make them again, never treat it as a failure of the message;
* an XREADGROUP reply comes as a list (RESP2) or a map (RESP3);
* a claimed entry's delivery count comes from XPENDING, the one count that survives restarts and replicas;
* a dead letter is written in the same transaction as the ack of its entry, so the message is in exactly one of
  the two places.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from flareport_common.messages.deadletters import DeadLetter
from flareport_common.replies import text
from flareport_common.streams.codec import encode

# Replies meaning the stream or its group is gone (Redis lost its data): recreate them and go on.
STREAM_LOST = ("NOGROUP", "UNBLOCKED")
# The dead-letter stream is an archive read by admins; past this many letters the oldest go (docs/stream-runtime.md).
DEAD_LETTERS_MAXLEN = 100_000


def stream_lost(exc: ResponseError) -> bool:
    """Whether a Redis error means the stream or its group no longer exists."""
    return any(code in str(exc) for code in STREAM_LOST)


async def ensure_group(redis: aioredis.Redis, stream: str, group: str) -> None:
    """Create the group (and the stream) if missing, reading from the stream's start; only "already exists" is
    ignored."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def entries(response: Any) -> list[Any]:
    """The ``(entry id, fields)`` pairs of a single-stream XREADGROUP reply (RESP2 list or RESP3 map form)."""
    if not response:
        return []
    if isinstance(response, dict):
        return list(next(iter(response.values()))[0])
    return list(response[0][1])


def stream_entries(response: Any) -> list[tuple[str, list[Any]]]:
    """Each stream's name and ``(entry id, fields)`` pairs in an XREADGROUP reply over several streams."""
    if not response:
        return []
    if isinstance(response, dict):
        return [(text(stream), list(value[0])) for stream, value in response.items()]
    return [(text(stream), list(items)) for stream, items in response]


async def delivery_counts(
    redis: aioredis.Redis, stream: str, group: str, consumer: str, ids: list[str], *, others: int
) -> dict[str, int]:
    """How often each of ``ids`` (pending for ``consumer``) was delivered; an id missing from the answer is no
    longer pending (acknowledged meanwhile). ``others`` bounds the consumer's other pending entries that may lie
    between the ids, so that none of ``ids`` falls off the end of the one XPENDING page read."""
    if not ids:
        return {}
    ordered = sorted(ids, key=lambda i: tuple(int(part) for part in i.split("-")))
    rows = await redis.xpending_range(
        stream, group, min=ordered[0], max=ordered[-1], count=len(ids) + others, consumername=consumer
    )
    counts = {text(row["message_id"]): int(row["times_delivered"]) for row in rows}
    return {entry_id: counts[entry_id] for entry_id in ids if entry_id in counts}


def queue_dead_letter(pipe: aioredis.client.Pipeline, dead_letter_stream: str, letter: DeadLetter) -> None:
    """Queue, in ``pipe``'s transaction, the dead letter and the ack of the entry it replaces."""
    pipe.xadd(dead_letter_stream, encode(letter), maxlen=DEAD_LETTERS_MAXLEN, approximate=True)  # type: ignore[arg-type]
    pipe.xack(letter.source_stream, letter.group, letter.source_id)
