"""Process lifecycle shared by the services: signal handling, a consumer name that is unique per process, and the
garbage collector's settings for a long-running service."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import uuid
from collections.abc import Callable


def consumer_name(service: str) -> str:
    """``<service>-<host>-<pid>-<random>``: unique across replicas and restarts (a restarted process must not
    inherit a dead one's pending list by accident; XAUTOCLAIM hands that over after the idle timeout).
    """
    return f"{service}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def install_stop_handlers(stop: Callable[[], None]) -> asyncio.Event:
    """Call ``stop`` on the first SIGTERM/SIGINT; a second one exits at once (an impatient operator wins)."""
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()

    def on_signal(signum: int) -> None:
        if stopped.is_set():
            os._exit(128 + signum)
        stopped.set()
        stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    return stopped


# Collections by generation (CPython's defaults: 700, 10, 10). A full collection walks every live object: with
# 1,000 long-polls open, one in the API took 40-140 ms, every few seconds, and each command delivered meanwhile
# waited that long (the p99 of command delivery jumped from ~7 ms to ~100 ms whenever one fell inside the
# measurement). Fewer, later collections; cycles are still freed, only later.
GC_THRESHOLDS = (10_000, 50, 100)


def settle_gc() -> None:
    """Once a service has started: what the start created (modules, classes, settings, clients: most of the heap,
    alive until exit) leaves the collector's generations, and collections run less often (``GC_THRESHOLDS``)."""
    # No gc.collect() first: the start's few garbage cycles stay (bounded, once), and a full collection here would
    # add to every restart's CPU.
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
