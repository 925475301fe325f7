"""Docker events and snapshots -> agent events, keeping the set of labelled running containers the master knows.

The tracker is pure (no I/O) so its rules are unit-tested without an engine:

- ``start`` / ``unpause``: the container is running; if its labels enable it, report ``container_start`` with the
  parsed rules. ``rename`` and ``health_status`` of a tracked container report ``container_start`` again with the
  new name or health (the rules are level-based: the newest report wins).
- ``kill`` is remembered, not reported: a signal need not end the container. The ``die`` that follows reports
  ``container_stop`` with action ``kill`` when a kill signal preceded it, else ``container_die`` with the exit code
  (Podman reports a plain stop as ``die`` without a ``stop`` event; Docker's later ``stop`` then finds nothing
  tracked and adds nothing). ``pause`` and ``destroy`` (Podman: ``remove``) of a tracked container report
  ``container_stop``.
- ``create`` of a container whose labels enable it is remembered until it starts, is removed or is
  ``STARTING_SECONDS`` old: ``starting()`` counts them, and the agent tells the master with each batch
  (``EventBatch.starting``) that more starts are on their way (``docker compose up`` creates every container before
  it starts them), so the master folds the run into fewer Cloudflare jobs and plans its last start at once.
- A snapshot replaces everything: it yields one ``inventory`` event and becomes the tracked set (a kill remembered
  for a container the snapshot still lists stays remembered).

Labels come from the event's ``Actor.Attributes`` (Docker and Podman put every label there, next to ``name``,
``image`` and ``exitCode``); only prefixed keys are read by the parser, so the extra attributes do no harm.
Containers of Swarm tasks are ignored: their services are reported instead (``swarm.py``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from flareport_agent.labels import parse_container
from flareport_agent.swarm import SWARM_SERVICE_LABEL
from flareport_common.messages.events import ContainerDie, ContainerStart, ContainerStop, Inventory, StopAction
from flareport_common.messages.rules import ContainerInfo
from flareport_common.protocol import AgentEvent

_HEALTH = re.compile(r"\((healthy|unhealthy|health: starting)\)")
_TERM_SIGNALS = {"15", "SIGTERM", "TERM"}
_STOPS: dict[str, StopAction] = {"pause": "pause", "destroy": "destroy", "remove": "destroy", "stop": "stop"}
_NOT_WAITING = {"start", "destroy", "remove", "die"}  # a created container that no longer waits to start
# A container created this long ago and still not started is not on its way (``docker create`` for later, a
# dependency that never became healthy): it no longer makes the master wait.
STARTING_SECONDS = 30.0
MAX_CREATED = 10_000  # bounds the memory of creates never followed by anything


class Tracker:
    def __init__(
        self,
        *,
        label_prefix: str | None = None,
        ignore_label: tuple[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label_prefix = label_prefix
        # The agent's own cloudflared is never reported as a user container.
        self.ignore_label = ignore_label
        self.known: dict[str, ContainerInfo] = {}
        # The Swarm services this manager publishes (``swarm.py``), set by ``swarmwatch.py``: every snapshot covers
        # them too, or the master would take them for stopped.
        self.services: dict[str, ContainerInfo] = {}
        self._killed: set[str] = set()
        self._clock = clock
        self._created: dict[str, float] = {}  # container id -> when its create was seen, oldest first

    def starting(self) -> int:
        """Labelled containers created lately and not yet started (nor removed)."""
        oldest = self._clock() - STARTING_SECONDS
        while self._created:
            cid, seen = next(iter(self._created.items()))
            if seen >= oldest:
                break
            del self._created[cid]
        return len(self._created)

    def inventory(self) -> Inventory:
        return Inventory(agent_id="", seq=0, containers=(*self.known.values(), *self.services.values()))

    def _info(self, labels: dict[str, str], **fields: Any) -> ContainerInfo | None:
        if self.ignore_label and labels.get(self.ignore_label[0]) == self.ignore_label[1]:
            return None
        if SWARM_SERVICE_LABEL in labels:
            return None  # a Swarm task: its service is reported instead, by the manager's agent (swarm.py)
        return parse_container(labels, label_prefix=self.label_prefix, **fields)

    def snapshot(self, containers: list[dict[str, Any]]) -> Inventory:
        known: dict[str, ContainerInfo] = {}
        for item in containers:
            labels = {str(k): str(v) for k, v in (item.get("Labels") or {}).items()}
            names = item.get("Names") or []
            name = str(names[0]).lstrip("/") if names else str(item.get("Id", ""))[:12]
            status = str(item.get("Status") or "")
            match = _HEALTH.search(status)
            info = self._info(
                labels,
                container_id=str(item.get("Id", "")),
                name=name,
                image=str(item.get("Image") or ""),
                state=str(item.get("State") or "running"),
                health=match.group(1).removeprefix("health: ") if match else None,
            )
            if info is not None and info.container_id:
                known[info.container_id] = info
        self.known = known
        # Creates missed while disconnected are not known either: none is said to be on its way rather than a guess.
        self._created.clear()
        # A kill signalled just before the list keeps its meaning for the ``die`` that follows it.
        self._killed &= known.keys()
        return self.inventory()

    def event(self, raw: dict[str, Any]) -> AgentEvent | None:
        action_text = str(raw.get("Action") or raw.get("status") or "")
        action, _, detail = action_text.partition(":")
        actor = raw.get("Actor") or {}
        attrs = {str(k): str(v) for k, v in (actor.get("Attributes") or {}).items()}
        cid = str(actor.get("ID") or raw.get("id") or "")
        if not cid:
            return None
        name = attrs.get("name", "")
        if action == "create":
            self._create(cid, attrs, name)
            return None
        if action in _NOT_WAITING:
            self._created.pop(cid, None)
        if action in ("start", "unpause"):
            self._killed.discard(cid)
            return self._started(cid, attrs, name, health=self.known[cid].health if cid in self.known else None)
        if action in ("rename", "health_status") and cid in self.known:
            previous = self.known[cid]
            health = (detail.strip() or attrs.get("health_status") or previous.health) if action != "rename" else None
            return self._started(cid, attrs, name or previous.name, health=health or previous.health)
        if action == "kill":
            if cid in self.known and attrs.get("signal", "9") not in _TERM_SIGNALS:
                self._killed.add(cid)
            return None
        if action == "die":
            info = self.known.pop(cid, None)
            if info is None:
                return None
            if cid in self._killed:
                self._killed.discard(cid)
                return ContainerStop(agent_id="", seq=0, container_id=cid, name=name or info.name, action="kill")
            return ContainerDie(agent_id="", seq=0, container_id=cid, name=name or info.name, exit_code=_exit(attrs))
        if action in _STOPS:
            self._killed.discard(cid)
            info = self.known.pop(cid, None)
            if info is None:
                return None
            return ContainerStop(agent_id="", seq=0, container_id=cid, name=name or info.name, action=_STOPS[action])
        return None

    def _create(self, cid: str, attrs: dict[str, str], name: str) -> None:
        info = self._info(attrs, container_id=cid, name=name, image=attrs.get("image", ""), state="created")
        if info is None:
            return
        self._created.pop(cid, None)  # created again: it moves to the end, the newest
        if len(self._created) >= MAX_CREATED:
            del self._created[next(iter(self._created))]
        self._created[cid] = self._clock()

    def _started(self, cid: str, attrs: dict[str, str], name: str, *, health: str | None) -> AgentEvent | None:
        info = self._info(
            attrs, container_id=cid, name=name, image=attrs.get("image", ""), state="running", health=health
        )
        if info is None:
            # Relabelled (recreated) without enable, or never enabled: if the master knew it, it is gone now.
            if self.known.pop(cid, None) is not None:
                return ContainerStop(agent_id="", seq=0, container_id=cid, name=name, action="stop")
            return None
        self.known[cid] = info
        return ContainerStart(agent_id="", seq=0, container=info)


def _exit(attrs: dict[str, str]) -> int | None:
    raw = attrs.get("exitCode") or attrs.get("containerExitCode")
    if raw is None or not raw.lstrip("-").isdigit():
        return None
    return int(raw)
