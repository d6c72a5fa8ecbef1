"""A bounded buffer between Kafka's fetcher and the worker, handing out batches of what has arrived.

The fetcher (:mod:`stream.bulk_fetch`) offers each fetched event; the worker takes a batch, processes
it, acks it, and takes the next. Nothing here acknowledges anything: an event taken is the caller's
until it acks it, and one still buffered is the fetcher's (faust clears the buffer when partitions
are revoked, and fetches again from the committed offsets).

A batch is what has arrived, up to ``max_events``. Before handing one out, the caller first lets the
fetcher run for as long as it keeps bringing events (at most :data:`MAX_LINGER`): the caller's own
work is CPU, so without that the fetcher runs only while the caller waits for Redis, and a backlog
came in batches of about 15 events (measured) instead of hundreds. An event that finds the worker
idle is processed at once: the fetcher brings nothing more within a few event-loop turns, so the
caller stops waiting.

Waiting uses plain event flags, never ``wait_for(queue.get())``, whose cancellation on a timeout can
lose the item it had just taken on Python 3.11.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")

MAX_LINGER = 0.01
"""Seconds a batch waits at most for the fetcher to bring more events (live latency: at most this)."""
IDLE_TURNS = 3
"""Event-loop turns without a new event after which the fetcher is taken to be drained for now."""


class BatchBuffer(Generic[T]):
    """Items in arrival order, at most ``capacity`` of them; taken ``max_events`` at a time."""

    def __init__(self, max_events: int, *, capacity: int | None = None) -> None:
        if max_events < 1:
            raise ValueError(f"max_events must be >= 1, not {max_events}")
        self.max_events = max_events
        self.capacity = capacity if capacity is not None else 2 * max_events
        if self.capacity < max_events:
            raise ValueError(f"capacity {self.capacity} is below max_events {max_events}")
        self._items: deque[T] = deque()
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, item: T) -> bool:
        """Append ``item`` unless the buffer is full (then the caller waits for :meth:`wait_for_room`)."""
        if len(self._items) >= self.capacity:
            self._room.clear()
            return False
        self._items.append(item)
        self._arrived.set()
        return True

    async def wait_for_room(self) -> None:
        while len(self._items) >= self.capacity:
            self._room.clear()
            await self._room.wait()

    def clear(self) -> None:
        """Drop what is buffered (nothing of it was taken, so nothing of it was acked)."""
        self._items.clear()
        self._room.set()

    async def take(self) -> list[T]:
        """The next batch: 1..``max_events`` items, once at least one has arrived."""
        while not self._items:
            self._arrived.clear()
            await self._arrived.wait()
        await self._linger()
        return self.take_ready()

    def take_ready(self) -> list[T]:
        """What has arrived, up to ``max_events``, without waiting (empty if nothing has)."""
        items = self._items
        batch = [items.popleft() for _ in range(min(self.max_events, len(items)))]
        if batch:
            self._room.set()
        return batch

    async def _linger(self) -> None:
        """Let the fetcher run while it keeps adding items: until a batch is full, nothing came for
        :data:`IDLE_TURNS` turns of the event loop, or :data:`MAX_LINGER` passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + MAX_LINGER
        idle = 0
        while len(self._items) < self.max_events and idle < IDLE_TURNS and loop.time() < deadline:
            before = len(self._items)
            await asyncio.sleep(0)
            idle = idle + 1 if len(self._items) == before else 0
