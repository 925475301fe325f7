"""An engine double whose event stream is open and says nothing until it is closed: what a Swarm manager looks
like to the agent's event nudge when every change was made before, or without, an event it reads."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any


class QuietEngine:
    def __init__(self) -> None:
        self.subscribed = threading.Event()
        self.closed = threading.Event()

    def events(self, **_: Any) -> Iterator[dict[str, Any]]:
        self.subscribed.set()
        return self._quiet()

    def _quiet(self) -> Iterator[dict[str, Any]]:
        self.closed.wait(30)
        yield from ()

    def close(self) -> None:
        self.closed.set()
