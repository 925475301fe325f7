"""The dns-worker's hops of an event's trace (``flareport_common.tracing``): from cf-jobs to Cloudflare.

``handling(trace)`` wraps one job: it observes ``commit_to_worker`` at once and, when the job ends, the hops from
its first Cloudflare call (``worker_to_first_call``, ``first_call_to_converged``) and ``end_to_end``. The first call
is marked by ``cloudflare_call()``, which the Cloudflare client calls before every request it sends; the mark lives
in a context variable, so only calls made on behalf of this job (its own task and the tasks it starts) count, and a
client used outside a job marks nothing.

``control_plane`` (the agent's receipt -> the first Cloudflare call) is observed once per trace, at the first call
any of its jobs makes in this process: an event makes a DNS job and an ingress job, and its first call is whichever
comes first. The trace ids already observed are kept in a small bounded set; a job redelivered after the set forgot
its id observes it again, which only a crash or a retry storm makes happen.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from flareport_common.messages.trace import Trace
from flareport_common.tracing import now_us, observe

_REMEMBERED = 1024  # trace ids whose first call was observed (far more than the jobs in flight at once)


@dataclass(slots=True)
class _JobClock:
    trace: Trace
    first_call_us: int = 0


_current: ContextVar[_JobClock | None] = ContextVar("flareport_job_clock", default=None)
_first_calls: OrderedDict[str, None] = OrderedDict()


def cloudflare_call() -> None:
    clock = _current.get()
    if clock is None or clock.first_call_us:
        return
    clock.first_call_us = now_us()
    trace_id = clock.trace.id
    if trace_id and trace_id in _first_calls:
        return  # another job of the same event called first
    if trace_id:
        _first_calls[trace_id] = None
        if len(_first_calls) > _REMEMBERED:
            _first_calls.popitem(last=False)
    observe("control_plane", clock.trace.agent_us or clock.trace.api_us, clock.first_call_us)


@contextmanager
def handling(trace: Trace | None) -> Iterator[None]:
    """Observe the job's hops if it carries a trace; the block's exception (a retry, a failure) observes none of
    the hops after the read, as the job did not converge."""
    if trace is None:
        yield
        return
    read = now_us()
    observe("commit_to_worker", trace.committed_us, read)
    clock = _JobClock(trace)
    token = _current.set(clock)
    try:
        yield
    finally:
        _current.reset(token)
    done = now_us()
    first = clock.first_call_us
    observe("worker_to_first_call", read, first)
    observe("first_call_to_converged", first, done)
    observe("end_to_end", trace.engine_us or trace.agent_us, done)
