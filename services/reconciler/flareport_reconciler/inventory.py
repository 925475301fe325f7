"""An agent's container inventory as a pure, order-independent state machine.

Agents number their inventory events (``seq``). Replicas consume the events stream in parallel, so one agent's
events can be applied in any order (a replica dies, its messages are reclaimed later by another). The state is
therefore built so that *the set of messages seen* decides it, not their order:

* each container keeps two marks: the newest message saying it runs (``running``: seq, time, its rules) and
  the newest message saying it does not (``stopped``: seq, time). A message only ever raises a mark, so
  applying messages in any order, or twice, gives the same marks (a max is commutative and idempotent);
* a full snapshot (``inventory``) is a "running" mark for every container it lists and a "stopped" mark for
  every container it does not list; the newest snapshot is kept so that a container first heard of later,
  through an older event, still learns that the snapshot had it gone;
* the container runs when its running mark is newer than its stopped mark. A container that ran and then
  stopped keeps its rules published until ``stopped.at + grace`` (the grace period; a label may override it).

Stale messages are thereby "ignored" exactly where they must be: an old start never resurrects a container a
newer stop or snapshot removed, and an old stop never removes a container a newer start brought back.

Pruning: a container stopped longer than the retention period (longer than any grace period) loses its entry, and
the agent's ``pruned_seq`` rises to the newest sequence number of the pruned entries. A message about a container
without an entry whose ``seq`` is at most ``pruned_seq`` is stale and ignored: it may be a late start of a pruned
container (older than its stop, which was dropped with the entry). Since an agent numbers its messages in order,
such a message is older than a stop heard at least the retention period ago; a container it would have been news
about is corrected by the agent's next snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from flareport_common.messages.events import ContainerDie, ContainerStart, ContainerStop, Inventory
from flareport_common.messages.rules import ContainerInfo
from flareport_common.readmodel import ContainerLabelErrors

InventoryEvent = ContainerStart | ContainerStop | ContainerDie | Inventory


class RunningMark(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    at: float  # server time (epoch seconds) of the message
    info: ContainerInfo


class StoppedMark(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    at: float


class ContainerEntry(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    running: RunningMark | None = None
    stopped: StoppedMark | None = None

    @property
    def is_running(self) -> bool:
        return self.running is not None and (self.stopped is None or self.running.seq > self.stopped.seq)

    def delete_at(self, default_grace: float) -> float | None:
        """When a stopped container's rules are removed; None while it runs (or if it never ran)."""
        if self.running is None or self.is_running or self.stopped is None:
            return None
        grace = self.running.info.grace_period_seconds
        return self.stopped.at + (default_grace if grace is None else grace)

    def published(self, now: float, default_grace: float) -> bool:
        """Whether its rules are (still) wanted at ``now``: running, or stopped but inside the grace period."""
        if self.is_running:
            return True
        delete_at = self.delete_at(default_grace)
        return delete_at is not None and now < delete_at


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    at: float
    container_ids: frozenset[str]


class AgentInventory(msgspec.Struct, frozen=True, kw_only=True):
    containers: dict[str, ContainerEntry] = msgspec.field(default_factory=dict)
    snapshot: Snapshot | None = None
    pruned_seq: int = 0  # messages about unknown containers up to this seq are stale (see the module docstring)


def _raise_running(entry: ContainerEntry | None, mark: RunningMark) -> ContainerEntry:
    if entry is None:
        return ContainerEntry(running=mark)
    if entry.running is None or mark.seq > entry.running.seq:
        return ContainerEntry(running=mark, stopped=entry.stopped)
    return entry


def _raise_stopped(entry: ContainerEntry | None, mark: StoppedMark) -> ContainerEntry:
    if entry is None:
        return ContainerEntry(stopped=mark)
    if entry.stopped is None or mark.seq > entry.stopped.seq:
        return ContainerEntry(running=entry.running, stopped=mark)
    return entry


def _first_heard(
    known: dict[str, ContainerEntry], cid: str, entry: ContainerEntry, snapshot: Snapshot | None
) -> ContainerEntry:
    """A container heard of for the first time learns that the newest snapshot did not list it."""
    if cid not in known and snapshot is not None and cid not in snapshot.container_ids:
        return _raise_stopped(entry, StoppedMark(seq=snapshot.seq, at=snapshot.at))
    return entry


def event_container_ids(event: InventoryEvent, known: Iterable[str]) -> set[str]:
    """The containers an event can change (a snapshot touches every known one and every listed one)."""
    if isinstance(event, Inventory):
        return set(known) | {c.container_id for c in event.containers}
    if isinstance(event, ContainerStart):
        return {event.container.container_id}
    return {event.container_id}


def apply_event(inventory: AgentInventory, event: InventoryEvent) -> tuple[AgentInventory, set[str]]:
    """The inventory after ``event`` and the ids of the containers whose entry changed."""
    at = event.occurred_at.timestamp()
    containers = dict(inventory.containers)
    snapshot = inventory.snapshot
    touched: dict[str, ContainerEntry] = {}
    stale = event.seq <= inventory.pruned_seq
    if isinstance(event, ContainerStart | ContainerStop | ContainerDie) and stale:
        cid = event.container.container_id if isinstance(event, ContainerStart) else event.container_id
        if cid not in containers:
            return inventory, set()
    if isinstance(event, ContainerStart):
        cid = event.container.container_id
        entry = _raise_running(containers.get(cid), RunningMark(seq=event.seq, at=at, info=event.container))
        touched[cid] = _first_heard(containers, cid, entry, snapshot)
    elif isinstance(event, ContainerStop | ContainerDie):
        cid = event.container_id
        entry = _raise_stopped(containers.get(cid), StoppedMark(seq=event.seq, at=at))
        touched[cid] = _first_heard(containers, cid, entry, snapshot)
    else:
        listed = {c.container_id: c for c in event.containers}
        stopped = StoppedMark(seq=event.seq, at=at)
        for cid, info in listed.items():
            if stale and cid not in containers:
                continue
            entry = _raise_running(containers.get(cid), RunningMark(seq=event.seq, at=at, info=info))
            touched[cid] = _first_heard(containers, cid, entry, snapshot)
        for cid, entry in containers.items():
            if cid not in listed:
                touched[cid] = _raise_stopped(entry, stopped)
        if snapshot is None or event.seq > snapshot.seq:
            snapshot = Snapshot(seq=event.seq, at=at, container_ids=frozenset(listed))
    changed = {cid for cid, entry in touched.items() if containers.get(cid) != entry}
    containers.update(touched)
    return AgentInventory(containers=containers, snapshot=snapshot, pruned_seq=inventory.pruned_seq), changed


def apply_all(inventory: AgentInventory, events: Iterable[InventoryEvent]) -> AgentInventory:
    for event in events:
        inventory, _ = apply_event(inventory, event)
    return inventory


def prunable(entry: ContainerEntry, now: float, retention: float, default_grace: float) -> bool:
    """A container stopped more than ``retention`` ago whose rules are no longer published can be forgotten."""
    if entry.is_running or entry.stopped is None or entry.published(now, default_grace):
        return False
    return entry.stopped.at < now - retention


def newest_seq(entry: ContainerEntry) -> int:
    return max(entry.running.seq if entry.running else 0, entry.stopped.seq if entry.stopped else 0)


def label_errors(
    current: Iterable[ContainerLabelErrors], inventory: AgentInventory, changed: Iterable[str]
) -> tuple[ContainerLabelErrors, ...]:
    """The agent's label errors after ``changed`` containers changed: those of its running containers only."""
    ids = set(changed)
    kept = {e.container_id: e for e in current if e.container_id not in ids}
    for cid in ids:
        entry = inventory.containers.get(cid)
        if entry is not None and entry.is_running and entry.running is not None and entry.running.info.errors:
            info = entry.running.info
            kept[cid] = ContainerLabelErrors(container_id=cid, container_name=info.name, errors=info.errors)
    return tuple(sorted(kept.values(), key=lambda e: (e.container_name, e.container_id)))
