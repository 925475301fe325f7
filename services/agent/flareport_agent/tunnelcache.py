"""The cloudflared state a heartbeat reports, read from the engine only when it may have changed.

Every heartbeat (15 s) used to read it from the engine: a Docker client, ``/info``, a list and an inspect, in a
worker thread, the larger part of an idle agent's CPU. The state changes only with the container, and the engine
reports every change of a container as an event the watcher reads anyway. So the last state read is reported again
until
* an engine event names the cloudflared container (its managed label, or its name),
* the agent ran a cloudflared operation itself (start, stop, restart, redeploy, the restore at start),
* the watcher lost the engine's event stream (the agent then reads again, since nothing says what it missed),
* or it is ``MAX_AGE_S`` old: a bound on what a missed event can hide.
Only the container form is kept: a Swarm service's tasks and an external cloudflared change without such events.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from flareport_agent.cloudflared import CONTAINER_NAME, MANAGED_LABEL, MANAGED_VALUE
from flareport_common.messages.events import TunnelState

MAX_AGE_S = 120.0


class TunnelStateCache:
    def __init__(self, max_age_s: float = MAX_AGE_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_age_s = max_age_s
        self._clock = clock
        self._kept: tuple[float, str | None, TunnelState] | None = None  # read at, for which tunnel id, the state
        # Bumped by every change: a read that began before one is not kept (it may predate the change).
        self._generation = 0

    def current(self, tunnel_id: str | None) -> TunnelState | None:
        """The state kept for ``tunnel_id`` while it is younger than the bound; None: read it from the engine."""
        kept = self._kept
        if kept is None or kept[1] != tunnel_id or self._clock() - kept[0] >= self._max_age_s:
            return None
        return kept[2]

    def begin(self) -> int:
        """Before a read: its ticket for ``keep``."""
        return self._generation

    def keep(self, ticket: int, tunnel_id: str | None, state: TunnelState) -> None:
        if ticket == self._generation:
            self._kept = (self._clock(), tunnel_id, state)

    def forget(self) -> None:
        self._generation += 1
        self._kept = None

    def seen(self, event: Mapping[str, Any]) -> None:
        """An engine event: forget the state when it is about the cloudflared container."""
        actor = event.get("Actor")
        attributes = actor.get("Attributes") if isinstance(actor, Mapping) else None
        if not isinstance(attributes, Mapping):
            self.forget()  # cannot tell whose event it is
            return
        if attributes.get(MANAGED_LABEL) == MANAGED_VALUE or attributes.get("name") == CONTAINER_NAME:
            self.forget()
