"""The dns-worker's hops of an event's trace (``flareport_common.tracing``): from cf-jobs to Cloudflare.

``handling(job)`` wraps one job: it observes ``commit_to_worker`` at once and, when the job ends, the hops from
its first Cloudflare call (``worker_to_first_call``, ``first_call_to_converged``, ``control_plane``) and
``end_to_end``. The first call is marked by ``cloudflare_call()``, which the Cloudflare client calls before every
request it sends; the mark lives in a context variable, so only calls made on behalf of this job (its own task and
the tasks it starts) count, and a client used outside a job marks nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from flareport_common.messages.trace import Trace
from flareport_common.tracing import now_us, observe


@dataclass(slots=True)
class _JobClock:
    first_call_us: int = 0


_current: ContextVar[_JobClock | None] = ContextVar("flareport_job_clock", default=None)


def cloudflare_call() -> None:
    clock = _current.get()
    if clock is not None and not clock.first_call_us:
        clock.first_call_us = now_us()


@contextmanager
def handling(trace: Trace | None) -> Iterator[None]:
    """Observe the job's hops if it carries a trace; the block's exception (a retry, a failure) observes none of
    the hops after the read, as the job did not converge."""
    if trace is None:
        yield
        return
    read = now_us()
    observe("commit_to_worker", trace.committed_us, read)
    clock = _JobClock()
    token = _current.set(clock)
    try:
        yield
    finally:
        _current.reset(token)
    done = now_us()
    first = clock.first_call_us
    observe("worker_to_first_call", read, first)
    observe("first_call_to_converged", first, done)
    observe("control_plane", trace.agent_us or trace.api_us, first)
    observe("end_to_end", trace.engine_us or trace.agent_us, done)
