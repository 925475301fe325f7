"""How long a job's Cloudflare calls took to be answered: the time the reconciler's coalescing window grows with.

The window is five times a target's last job's duration per write when Cloudflare is slow (docs/reconciler.md,
"The window"). Timed by the reconciler from commit to result, that duration also held the job's wait in the jobs
stream, for its lease and in the shared rate limiter's queue: under load (a fleet coming up, a spent rate budget)
every job looked slow, and the windows grew to their bound although Cloudflare answered at once (the rate budget
has its own factor). So the worker adds up the time its calls spent on the wire, per job, and reports it with the
result (``JobResult.cloudflare_ms``).

A job's handler opens ``measuring()``; ``spent()`` adds to the job it runs for (the tasks a job starts inherit its
context, and with it the same total); ``total_ms()`` reads it, None outside a job.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_spent: ContextVar[list[float] | None] = ContextVar("flareport_cloudflare_spent", default=None)


@contextmanager
def measuring() -> Iterator[None]:
    token = _spent.set([0.0])
    try:
        yield
    finally:
        _spent.reset(token)


def spent(seconds: float) -> None:
    total = _spent.get()
    if total is not None:
        total[0] += max(0.0, seconds)


def total_ms() -> int | None:
    total = _spent.get()
    return None if total is None else round(total[0] * 1000)
