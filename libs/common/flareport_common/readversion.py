"""The read-model counter (``Keys.readmodel_version``): raised by every write of something the web UI shows.

The web UI's live updates fingerprint the read model by this counter instead of reading every document
(docs/web-ui.md, "Live updates"), so each writer raises it *in the same transaction* as its write: a reader that
saw the new counter then also sees the write. It starts at a random value, so a counter recreated after Redis lost
its data does not repeat a value a browser already holds (which would hide the change).
"""

from __future__ import annotations

import secrets
from typing import Any, Protocol

from flareport_common.keys import Keys


class Queue(Protocol):
    """What the counter is raised on: a transaction pipeline (redis-py's ``Pipeline`` has both methods)."""

    def set(self, name: str, value: int, *, nx: bool) -> Any: ...

    def incr(self, name: str) -> Any: ...


def seed() -> int:
    """A random start for the counter, used only by the write that creates it."""
    return secrets.randbits(52)


def bump(pipe: Queue, keys: Keys) -> None:
    """Queue the rise of the counter in ``pipe``'s transaction, next to the write the UI must notice."""
    pipe.set(keys.readmodel_version, seed(), nx=True)
    pipe.incr(keys.readmodel_version)
