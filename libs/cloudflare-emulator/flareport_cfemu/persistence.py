"""Optional persistence of the state to one JSON file, so the demo stack survives restarts.

Writes are debounced: a background task looks at :attr:`EmulatorState.revision` every
``persist_interval_seconds`` and writes only when it moved, so a burst of 1,000 writes costs
one file write.  Each write goes to a temporary file in the same directory, is flushed and
fsynced, then renamed over the target - a crash leaves the old or the new file, never half
of one.  The JSON is rendered on the event loop (a consistent snapshot) and written in a
worker thread (no blocking I/O on the loop).  A final write happens at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from pathlib import Path

from flareport_cfemu.state import EmulatorState


def load_state(path: Path) -> EmulatorState | None:
    """The state saved at ``path``, or ``None`` when there is no file yet."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return EmulatorState.load(json.loads(raw))


def write_atomically(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class Persister:
    """Debounced writer of one state to one file."""

    def __init__(self, state: EmulatorState, path: Path, interval: float) -> None:
        self.state = state
        self.path = path
        self.interval = interval
        self.saved_revision: int | None = None

    async def flush(self) -> bool:
        """Write now if the state changed since the last write; True if it wrote."""
        revision = self.state.revision
        if revision == self.saved_revision:
            return False
        payload = json.dumps(self.state.view(), indent=1, sort_keys=True).encode()
        await asyncio.to_thread(write_atomically, self.path, payload)
        self.saved_revision = revision
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.flush()
