"""The read model's fingerprint: what live updates compare, and what every page is stamped with when rendered.

Every writer of what the pages show (the reconciler's agent and rule documents, the API's key records, manual rules
and access groups) raises one counter, ``Keys.readmodel_version``, in the same transaction or script as its write,
so a change is never visible without the counter having moved. The fingerprint is a SHA-256 over that counter and
what is cheap to read whole: the dead-letter stream's last entry and length (several services dead-letter without
a transaction of ours) and the number of keys. Four small reads in one round trip, whatever the size of the model.

A page reads the fingerprint *before* it reads what it shows, so a change made while it renders makes the live
stream's next version differ from the page's, and the page refreshes; it never shows older data than its stamp.
"""

from __future__ import annotations

import hashlib

from flareport_api.state import ApiContext


async def fingerprint(ctx: ApiContext) -> str:
    keys = ctx.keys
    pipe = ctx.redis.pipeline(transaction=False)
    pipe.get(keys.readmodel_version)
    pipe.xrevrange(keys.dead_letters, "+", "-", count=1)
    pipe.xlen(keys.dead_letters)  # a replayed letter leaves the stream without a new last entry
    pipe.hlen(keys.api_keys_index)
    digest = hashlib.sha256()
    for value in await pipe.execute():
        digest.update(repr(value).encode())
    return digest.hexdigest()[:16]
