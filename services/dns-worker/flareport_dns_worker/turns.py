"""Whose turn it is to ask the rate limiter: one caller at a time, in the order they came, urgent callers first.

A plain ``asyncio.Lock`` is FIFO: when the budget runs out, a zone job's next DNS batch waits behind every tunnel
and Access call queued before it, and a zone job is a chain of batches (one job in flight per zone), so each of
its batches waited for the whole queue again. Callers marked urgent (``URGENT``, set per job by the worker's
handler: ``service.urgent``, docs/dns-worker.md "Lanes") take the next turn before any other waiting caller;
among themselves, and among the others, first come is first served. Nobody takes a turn past the callers already
waiting (no barging).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from contextvars import ContextVar

# Set for the calls of an urgent job (``service.urgent``); read when the call asks for its turn.
URGENT: ContextVar[bool] = ContextVar("flareport_urgent_calls", default=False)


class Turns:
    def __init__(self) -> None:
        self._held = False
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._normal: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return sum(not f.done() for f in (*self._urgent, *self._normal))

    @contextlib.asynccontextmanager
    async def turn(self, *, urgent: bool) -> AsyncIterator[None]:
        if self._held or self.waiting:
            handed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            (self._urgent if urgent else self._normal).append(handed)
            try:
                await handed
            except asyncio.CancelledError:
                # Cancelled after the turn was handed over but before this caller ran: pass it on.
                if handed.done() and not handed.cancelled():
                    self._release()
                raise
        else:
            self._held = True
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        """Hand the turn to the first caller still waiting (urgent ones first), or free it."""
        for queue in (self._urgent, self._normal):
            while queue:
                handed = queue.popleft()
                if not handed.done():  # a cancelled waiter's future is done: skip it
                    handed.set_result(None)
                    return
        self._held = False
