"""Process lifecycle shared by the services: the event loop they run on, signal handling, a consumer name that is
unique per process, and the garbage collector's settings for a long-running service."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from flareport_common.logs import get_logger
from flareport_common.settings import EVENT_LOOPS

T = TypeVar("T")


def loop_factory(kind: str) -> tuple[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The event loop a service runs on (``FLAREPORT_EVENT_LOOP``, checked by the settings loader), and its name.

    uvloop (libuv, in C) by default: every Redis round trip and HTTP request of a service goes through the loop, and
    on uvloop one costs about 40% less CPU than on asyncio's own loop in Python (a Redis GET's round trip measured
    34 instead of 56 us; the 20,000-hostname bench's services used about a tenth less CPU). ``auto`` falls back to
    asyncio's loop where uvloop is not installed; ``asyncio`` keeps it (a way back, should uvloop misbehave)."""
    if kind not in EVENT_LOOPS:
        raise ValueError(f"unknown event loop {kind!r}")
    if kind != "asyncio":
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise
        else:
            return "uvloop", uvloop.new_event_loop
    return "asyncio", asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T], event_loop: str = "auto") -> T:
    """``asyncio.run`` on the loop ``event_loop`` names (``loop_factory``)."""
    name, factory = loop_factory(event_loop)
    get_logger("flareport.runtime").info("process.event_loop", loop=name)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


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
