"""Process lifecycle shared by the services: signal handling and a consumer name that is unique per process."""

from __future__ import annotations

import asyncio
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
