"""The reconciler's hops of an event's trace (``flareport_common.tracing``): from the events stream to cf-jobs.

``read`` stamps an inventory event when its handler starts (``api_to_reconciler``). A batch of one agent's
events (``batching``) is applied under ``planning``, which makes the batch's oldest trace the one every job
committed while the batch is planned carries (``attach``, stamped with the commit time; ``committed`` observes
``reconciler_to_commit``). The oldest, because a job serves all of the batch's events and the one accepted first
has waited longest: the hops then measure the worst of them, never hide one behind a faster neighbour.

A job planned later — after a result, when a change waited for the job in flight (``coalesce``), or by the
background loop — carries no trace: the context variable is unset there. Those paths are the coalescing's, whose
waiting is a result's round trip; the hops describe an event's own way through an idle pipeline.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

import msgspec

from flareport_common.messages.cfjobs import CfJobMessage, SyncAccessApp, SyncDnsZone, SyncTunnelIngress
from flareport_common.messages.trace import Trace
from flareport_common.tracing import now_us, observe, oldest
from flareport_reconciler.inventory import InventoryEvent

E = TypeVar("E", bound=InventoryEvent)
_current: ContextVar[Trace | None] = ContextVar("flareport_batch_trace", default=None)


def read(event: E) -> E:
    """The event as read now: its trace (if any) stamped with the reconciler's read time."""
    trace = event.trace
    if trace is None:
        return event
    now = now_us()
    observe("api_to_reconciler", trace.api_us, now)
    return msgspec.structs.replace(event, trace=msgspec.structs.replace(trace, reconciler_us=now))


@contextmanager
def planning(events: Sequence[InventoryEvent]) -> Iterator[None]:
    token = _current.set(oldest([e.trace for e in events if e.trace is not None]))
    try:
        yield
    finally:
        _current.reset(token)


def attach(job: CfJobMessage) -> CfJobMessage:
    """``job`` with the current batch's trace, stamped with the commit time (unchanged outside a batch)."""
    trace = _current.get()
    if trace is None or not isinstance(job, SyncDnsZone | SyncTunnelIngress | SyncAccessApp):
        return job
    return msgspec.structs.replace(job, trace=msgspec.structs.replace(trace, committed_us=now_us()))


def committed(job: CfJobMessage) -> None:
    trace = getattr(job, "trace", None)
    if trace is not None:
        observe("reconciler_to_commit", trace.reconciler_us, trace.committed_us)
