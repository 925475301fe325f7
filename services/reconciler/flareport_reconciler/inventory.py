"""An agent's container inventory as a pure, order-independent state machine.

Agents number their inventory events (``seq``). Replicas consume the events stream in parallel, so one agent's
events can be applied in any order (a replica dies, its messages are reclaimed later by another). The state is
therefore built so that *the set of messages seen* decides it, not their order:

* each container keeps two marks: the newest message saying it runs (``running``: seq, time, its rules) and
  the newest message saying it does not (``stopped``: seq, time). A message only ever raises a mark, so
  applying messages in any order, or twice, gives the same marks (a max is commutative and idempotent);
* a full snapshot (``inventory``) is a "running" mark for every container it lists and a "stopped" mark for
  every container it does not list; the agent's newest snapshots are kept so that a container first heard of
  later, through an older event, still learns that they had it gone. Only their seq and time are kept (they
  are read with every event): a container without an entry was listed by none of them with a seq above the
  pruning floor (listing it made its entry; pruning that entry raised the floor to at least that seq), and
  events at or below the floor about containers without an entry are ignored (see Pruning);
* the container runs when its running mark is newer than its stopped mark. A container that ran and then
  stopped keeps its rules published until ``first stop + grace`` (the grace period; a label may override it),
  where the first stop is the oldest stop message above the running mark — when it actually stopped. Every
  snapshot sent later (an agent restart) is one more stop of a gone container; counting from the newest stop
  would publish a container whose grace period ended long ago again for one more grace period. So an entry
  also keeps ``stops``, the stops above its running mark by seq: a late start whose seq lies between them (a
  reclaimed message) drops those below it, and the first stop after *that* start is still known.

Bounds: an entry keeps at most ``MAX_STOPS`` stops (the oldest) and an agent at most ``MAX_SNAPSHOTS`` snapshots
(the newest). A gone container collects one stop per snapshot, and agents send snapshots only when they
(re)start or reconnect, so a bound matters only for a message delivered after that many restarts of its agent
(a long-gone container that collects more stops keeps the oldest ones, its first stop among them). Inside the
bounds the state is exactly that of the set of messages seen. Beyond them the newest stop is always kept, so
whether a container runs is still exact, and the first stop known is a real stop at or after the true one: its
grace period may count from a later stop (as if counted from the newest), never from an earlier one, so rules
are never removed early.

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

# Bounds of the history kept (see the module docstring for why they suffice and what happens beyond them).
MAX_STOPS = 16
MAX_SNAPSHOTS = 16


class RunningMark(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    at: float  # server time (epoch seconds) of the message
    info: ContainerInfo


class StoppedMark(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    at: float


def _seq(mark: StoppedMark) -> int:
    return mark.seq


class ContainerEntry(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    running: RunningMark | None = None
    stopped: StoppedMark | None = None  # the newest stop: decides whether it runs
    # The earliest stops above the running mark, by seq (at most MAX_STOPS): the first one is when it stopped.
    # Empty in entries written before it existed; ``stopped`` stands in for it then.
    stops: tuple[StoppedMark, ...] = ()

    @property
    def is_running(self) -> bool:
        return self.running is not None and (self.stopped is None or self.running.seq > self.stopped.seq)

    @property
    def first_stop(self) -> StoppedMark | None:
        """The first stop after the running mark (the moment it stopped); None while it runs."""
        above = _stops_above(self)
        return above[0] if above and not self.is_running else None

    def delete_at(self, default_grace: float) -> float | None:
        """When a stopped container's rules are removed; None while it runs (or if it never ran)."""
        first = self.first_stop
        if self.running is None or first is None:
            return None
        grace = self.running.info.grace_period_seconds
        return first.at + (default_grace if grace is None else grace)

    def published(self, now: float, default_grace: float) -> bool:
        """Whether its rules are (still) wanted at ``now``: running, or stopped but inside the grace period."""
        if self.is_running:
            return True
        delete_at = self.delete_at(default_grace)
        return delete_at is not None and now < delete_at


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    """The agent's newest snapshot and up to ``MAX_SNAPSHOTS - 1`` before it (``earlier``, newest first).

    Only sequence numbers and times: a container without an entry was listed by none of them (see the module
    docstring), and this is read with every event.
    """

    seq: int
    at: float
    earlier: tuple[StoppedMark, ...] = ()
    # Not read. The version before this history required it (the newest snapshot's ids); it is written empty so
    # that replicas of that version still decode the value during a rolling upgrade, and to them empty means the
    # same (a container they hear of first was not listed).
    container_ids: frozenset[str] = frozenset()

    @property
    def marks(self) -> tuple[StoppedMark, ...]:
        return (StoppedMark(seq=self.seq, at=self.at), *self.earlier)


class AgentInventory(msgspec.Struct, frozen=True, kw_only=True):
    containers: dict[str, ContainerEntry] = msgspec.field(default_factory=dict)
    snapshot: Snapshot | None = None
    pruned_seq: int = 0  # messages about unknown containers up to this seq are stale (see the module docstring)


def _stops_above(entry: ContainerEntry) -> tuple[StoppedMark, ...]:
    """The stops known above the running mark; an entry from before ``stops`` existed has only its newest."""
    if entry.stops:
        return entry.stops
    above = entry.stopped is not None and (entry.running is None or entry.stopped.seq > entry.running.seq)
    return (entry.stopped,) if entry.stopped is not None and above else ()


def _raise_running(entry: ContainerEntry | None, mark: RunningMark) -> ContainerEntry:
    if entry is None:
        return ContainerEntry(running=mark)
    if entry.running is None or mark.seq > entry.running.seq:
        stops = tuple(s for s in _stops_above(entry) if s.seq > mark.seq)
        return ContainerEntry(running=mark, stopped=entry.stopped, stops=stops)
    return entry


def _raise_stopped(entry: ContainerEntry | None, mark: StoppedMark) -> ContainerEntry:
    if entry is None:
        return ContainerEntry(stopped=mark, stops=(mark,))
    newest = mark if entry.stopped is None or mark.seq > entry.stopped.seq else entry.stopped
    stops = entry.stops
    if entry.running is None or mark.seq > entry.running.seq:
        above = _stops_above(entry)
        if all(s.seq != mark.seq for s in above):
            stops = tuple(sorted((*above, mark), key=_seq)[:MAX_STOPS])
    if newest == entry.stopped and stops == entry.stops:
        return entry
    return ContainerEntry(running=entry.running, stopped=newest, stops=stops)


def _first_heard(
    known: dict[str, ContainerEntry], cid: str, entry: ContainerEntry, snapshot: Snapshot | None
) -> ContainerEntry:
    """A container heard of for the first time learns that the kept snapshots did not list it."""
    if cid not in known and snapshot is not None:
        for mark in snapshot.marks:
            entry = _raise_stopped(entry, mark)
    return entry


def _add_snapshot(snapshot: Snapshot | None, mark: StoppedMark) -> Snapshot:
    marks = sorted({m.seq: m for m in (*(snapshot.marks if snapshot else ()), mark)}.values(), key=_seq)
    newest, *earlier = reversed(marks[-MAX_SNAPSHOTS:])
    return Snapshot(seq=newest.seq, at=newest.at, earlier=tuple(earlier))


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
        snapshot = _add_snapshot(snapshot, stopped)
    changed = {cid for cid, entry in touched.items() if containers.get(cid) != entry}
    containers.update(touched)
    return AgentInventory(containers=containers, snapshot=snapshot, pruned_seq=inventory.pruned_seq), changed


def apply_all(inventory: AgentInventory, events: Iterable[InventoryEvent]) -> AgentInventory:
    for event in events:
        inventory, _ = apply_event(inventory, event)
    return inventory


# A stop of a container never heard running (its start may still be on its way through another replica) is kept
# only this long: long enough for any reordering of one agent's messages (a reclaim happens after the claim-idle
# time, 30 s by default), short enough that an agent sending stops of containers that never existed cannot make
# the control plane store them for long (its events rate quota bounds how many it can send meanwhile).
ORPHAN_RETENTION_SECONDS = 180.0


def prunable(
    entry: ContainerEntry,
    now: float,
    retention: float,
    default_grace: float,
    orphan_retention: float = ORPHAN_RETENTION_SECONDS,
) -> bool:
    """A container stopped more than ``retention`` ago whose rules are no longer published can be forgotten; one
    only ever heard stopping, after ``orphan_retention``."""
    if entry.is_running or entry.stopped is None or entry.published(now, default_grace):
        return False
    keep = orphan_retention if entry.running is None else retention
    return entry.stopped.at < now - keep


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
