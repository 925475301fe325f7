"""The latest contact this replica recorded per agent, to skip recording contact again inside a burst.

A contact that changes nothing but the time moves only the last-seen set (``agents.seen``), so an agent's record no
longer says when it was last heard: inside a burst of one agent's events, each batch would read the record and move
the set again. What this replica last recorded is remembered here instead. Another replica's contacts are not: at
worst that is one more round trip, never a contact missed (a contact older than a second is always recorded).
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime


class RecentContacts:
    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._at: OrderedDict[str, datetime] = OrderedDict()

    def get(self, agent_id: str) -> datetime | None:
        return self._at.get(agent_id)

    def put(self, agent_id: str, at: datetime) -> None:
        previous = self._at.pop(agent_id, None)
        self._at[agent_id] = at if previous is None or at > previous else previous
        if len(self._at) > self._size:
            self._at.popitem(last=False)  # the agent heard from least recently
