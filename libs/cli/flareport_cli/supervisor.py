"""Child processes of ``flareport dev`` (and of the end-to-end tests): start, prefix output, stop in reverse.

Each child's output is relayed line by line with its name in front, so one terminal shows the whole stack.
Stopping sends SIGTERM to every child (newest first, so agents stop before the API they talk to), waits for
each to exit within its grace period, and kills what is left. With ``umask`` every child starts with it
(``flareport dev`` passes 0o077: the files the services write, such as the emulator's state, are private).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    relay: threading.Thread | None = None
    # Lines dropped from the front of ``lines`` (the kept window is bounded), so readers can keep absolute positions.
    dropped: int = 0


class Supervisor:
    def __init__(
        self, *, echo: bool = True, out: IO[str] | None = None, keep_lines: int = 2000, umask: int | None = None
    ) -> None:
        self.children: list[Child] = []
        self.umask = umask
        self._echo = echo
        self._out = out or sys.stdout
        self._keep = keep_lines
        self._lock = threading.Lock()

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None) -> Child:
        process = subprocess.Popen(
            list(argv),
            env=dict(env) if env is not None else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,  # Ctrl-C goes to us; we stop the children in order
            umask=-1 if self.umask is None else self.umask,
        )
        child = Child(name, argv, process)
        child.relay = threading.Thread(target=self._relay, args=(child,), name=f"relay-{name}", daemon=True)
        child.relay.start()
        self.children.append(child)
        return child

    def _relay(self, child: Child) -> None:
        assert child.process.stdout is not None
        for line in child.process.stdout:
            with self._lock:
                child.lines.append(line.rstrip("\n"))
                excess = len(child.lines) - self._keep
                if excess > 0:
                    del child.lines[:excess]
                    child.dropped += excess
                if self._echo:
                    self._out.write(f"{child.name:>11} | {line}")
                    self._out.flush()

    def wait_for_line(self, child: Child, predicate: Callable[[str], bool], timeout: float) -> str:
        """The first output line of ``child`` matching ``predicate``; fails if it exits or time runs out."""
        deadline = time.monotonic() + timeout
        seen = 0  # absolute line number: survives the window moving on
        while time.monotonic() < deadline:
            with self._lock:
                fresh = child.lines[max(seen - child.dropped, 0) :]
                seen = child.dropped + len(child.lines)
            for line in fresh:
                if predicate(line):
                    return line
            if child.process.poll() is not None:
                raise RuntimeError(f"{child.name} exited with status {child.process.returncode}: {self.tail(child)}")
            time.sleep(0.02)
        raise TimeoutError(f"{child.name} did not print the expected line within {timeout}s: {self.tail(child)}")

    def tail(self, child: Child, count: int = 15) -> str:
        with self._lock:
            return "\n".join(child.lines[-count:])

    def exited(self) -> list[Child]:
        return [child for child in self.children if child.process.poll() is not None]

    def stop(self, child: Child, *, grace: float = 10.0, sig: int = signal.SIGTERM) -> int:
        process = child.process
        if process.poll() is None:
            os.killpg(process.pid, sig)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if child.relay is not None:
            child.relay.join(timeout=2)
        return process.returncode

    def stop_all(self, *, grace: float = 10.0) -> None:
        for child in reversed(self.children):
            self.stop(child, grace=grace)
