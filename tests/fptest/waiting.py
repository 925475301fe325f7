"""Waiting on conditions with a deadline: the only synchronisation tests use (never a bare sleep).

The default deadline is generous (30 s): CI shares 2 cores between the suite, redis-server, Podman and the
services, and a deadline only costs time when the behaviour is really broken.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def wait_for(
    condition: Callable[[], Awaitable[T]], *, timeout: float = 30.0, interval: float = 0.02, what: str = "condition"
) -> T:
    """Poll ``condition`` until it returns a truthy value; fail naming ``what`` when the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {value!r})")
        await asyncio.sleep(interval)


async def already(value: T) -> T:
    """``value`` as an awaitable: the condition of ``wait_for`` when what it waits on is in memory (a counter, a
    flag, a list a test fills)."""
    return value


def wait_for_sync(
    condition: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.02, what: str = "condition"
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {value!r})")
        time.sleep(interval)
