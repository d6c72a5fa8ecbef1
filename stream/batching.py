"""Batches of a faust stream's events, acknowledged by the caller only after their work is done.

faust's ``Stream.take()`` and ``take_events()`` ack every event of a batch in a ``finally``: an
exception or a shutdown in the middle of a batch still acks it, and the commit that follows moves
the group's offsets past events whose state was never written. faust has no ``noack_take`` (its
manual-ack take, faust PR #192, has been open since 2021), so this is one, built on the public
iteration of a stream created with ``stream.noack()`` only.

A feeder task pulls events into a bounded buffer while the caller works on the previous batch.
When the caller asks for a batch, it first lets the feeder run for as long as the feeder keeps
bringing events (up to ``max_events``, at most ``MAX_LINGER``): the caller's own work is CPU, so
without that the feeder runs only while the caller waits for Redis, and a backlog came in batches
of about 15 events (measured) instead of hundreds. An event that finds the worker idle is processed
at once: the feeder brings nothing more within a few event-loop turns, so the caller stops waiting.

The buffer is drained with plain event flags, never ``wait_for(queue.get())``, whose cancellation
on a timeout can lose the item it had just taken on Python 3.11.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

MAX_LINGER = 0.01
"""Seconds a batch waits at most for the feeder to bring more events (live latency: at most this)."""
IDLE_TURNS = 3
"""Event-loop turns without a new event after which the source is taken to be drained for now."""


async def _at_once() -> None:
    return None


async def batches(
    source: AsyncIterable[T], max_events: int, *, before_take: Callable[[], Awaitable[None]] = _at_once
) -> AsyncIterator[list[T]]:
    """Yield lists of 1..``max_events`` items of ``source`` in order, taking what is buffered.

    Nothing is acknowledged here: the caller acks a batch's events once it has finished them. Each
    item is taken from ``source`` only once ``before_take()`` returned (the state guard holds the
    worker there: an event taken is one a rebalance waits for). An error of ``source`` is raised to
    the caller after the items read before it were yielded; closing this generator stops reading
    ``source``.
    """
    if max_events < 1:
        raise ValueError(f"max_events must be >= 1, not {max_events}")
    buffered: deque[T] = deque()
    arrived = asyncio.Event()
    room = asyncio.Event()
    room.set()

    async def feed() -> None:
        items = aiter(source)
        while True:
            while len(buffered) >= max_events:
                room.clear()
                await room.wait()
            await before_take()
            try:
                item = await anext(items)
            except StopAsyncIteration:
                return
            buffered.append(item)
            arrived.set()

    feeder = asyncio.create_task(feed(), name="churnwatch.batching.feed")
    feeder.add_done_callback(lambda _: arrived.set())  # wake a waiting caller when the source ends or fails
    try:
        while True:
            while not buffered:
                if feeder.done():
                    feeder.result()  # raises the source's error, if any
                    return
                arrived.clear()
                await arrived.wait()
            await _linger(buffered, max_events, feeder)
            batch = [buffered.popleft() for _ in range(min(max_events, len(buffered)))]
            room.set()
            yield batch
    finally:
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):  # stopped; an error of it was raised above
            await feeder


async def _linger(buffered: deque[T], max_events: int, feeder: asyncio.Task[None]) -> None:
    """Let the feeder run while it keeps adding events: until the batch is full, the feeder has
    brought nothing for :data:`IDLE_TURNS` turns of the event loop, or :data:`MAX_LINGER` passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + MAX_LINGER
    idle = 0
    while len(buffered) < max_events and idle < IDLE_TURNS and not feeder.done() and loop.time() < deadline:
        before = len(buffered)
        await asyncio.sleep(0)
        idle = idle + 1 if len(buffered) == before else 0
