"""Turns at the rate limiter: one caller at a time, first come first served, urgent callers ahead of the rest."""

from __future__ import annotations

import asyncio

from flareport_dns_worker.turns import Turns


async def _queue(turns: Turns, order: list[str], urgency: dict[str, bool]) -> list[asyncio.Task[None]]:
    """Start a caller per name of ``urgency`` (in that order) while the turn is held, each noting when its came."""

    async def caller(name: str) -> None:
        async with turns.turn(urgent=urgency[name]):
            order.append(name)

    tasks = []
    for name in urgency:
        tasks.append(asyncio.create_task(caller(name)))
        await asyncio.sleep(0)  # the caller queues before the next one starts
    return tasks


async def test_urgent_callers_go_first_and_each_kind_in_the_order_it_came() -> None:
    turns = Turns()
    order: list[str] = []
    async with turns.turn(urgent=False):
        tasks = await _queue(turns, order, {"t1": False, "t2": False, "z1": True, "t3": False, "z2": True})
        assert turns.waiting == 5 and order == [], "nobody takes a turn while it is held"
    await asyncio.gather(*tasks)
    assert order == ["z1", "z2", "t1", "t2", "t3"]


async def test_a_new_caller_never_takes_the_turn_past_those_waiting() -> None:
    turns = Turns()
    order: list[str] = []
    async with turns.turn(urgent=False):
        tasks = await _queue(turns, order, {"t1": False})
    # The turn was handed to t1, which has not run yet: a caller arriving now waits behind it.
    late = asyncio.create_task(_queue(turns, order, {"z1": True}))
    await asyncio.gather(*tasks, late)
    await asyncio.gather(*late.result())
    assert order == ["t1", "z1"]


async def test_a_caller_cancelled_while_waiting_or_just_after_being_handed_the_turn_does_not_block_the_rest() -> None:
    turns = Turns()
    order: list[str] = []
    async with turns.turn(urgent=False):
        tasks = await _queue(turns, order, {"a": True, "b": False, "c": False})
        tasks[1].cancel()  # b gives up while waiting
        await asyncio.sleep(0)
    tasks[0].cancel()  # a was just handed the turn, and is cancelled before it ran: the turn goes on to c
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["CancelledError", "CancelledError", "NoneType"]
    assert order == ["c"]
    async with asyncio.timeout(1):
        async with turns.turn(urgent=False):
            order.append("d")
    assert order == ["c", "d"] and turns.waiting == 0
