"""stream.batching: batches of what has arrived, in order, bounded, with nothing lost or taken early."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from stream.batching import batches


class Source:
    """An async source fed by the test: ``put`` makes an item available; ``taken`` counts pulls."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.taken = 0

    def put(self, *items: object) -> None:
        for item in items:
            self.queue.put_nowait(item)

    async def __aiter__(self) -> AsyncIterator[object]:
        while True:
            item = await self.queue.get()
            if isinstance(item, BaseException):
                raise item
            if item is StopAsyncIteration:
                return
            self.taken += 1
            yield item


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_an_item_that_finds_the_consumer_idle_comes_alone_and_a_backlog_comes_in_bounded_batches() -> None:
    source = Source()
    stream = batches(source, 3)
    source.put(1)
    assert await anext(stream) == [1]
    source.put(2, 3, 4, 5, 6, 7, 8)
    await settle()
    assert await anext(stream) == [2, 3, 4]
    assert await anext(stream) == [5, 6, 7]
    assert await anext(stream) == [8]
    await stream.aclose()


async def test_the_feeder_takes_no_more_than_one_batch_ahead() -> None:
    source = Source()
    stream = batches(source, 2)
    source.put(*range(10))
    assert await anext(stream) == [0, 1]
    await settle()
    assert source.taken == 4  # one batch in hand, one buffered: the rest stay in the source
    assert await anext(stream) == [2, 3]
    await stream.aclose()


async def test_nothing_is_taken_while_before_take_holds() -> None:
    source, gate = Source(), asyncio.Event()

    async def before_take() -> None:
        await gate.wait()

    stream = batches(source, 5, before_take=before_take)
    source.put(1, 2)
    waiting = asyncio.ensure_future(anext(stream))
    await settle()
    assert source.taken == 0 and not waiting.done()
    gate.set()
    assert await waiting in ([1], [1, 2])
    await stream.aclose()


async def test_a_source_error_comes_after_the_items_before_it_and_the_end_ends_the_batches() -> None:
    source = Source()
    source.put(1, 2, ValueError("broken"))
    stream = batches(source, 10)
    got = []
    with pytest.raises(ValueError, match="broken"):
        async for batch in stream:
            got += batch
    assert got == [1, 2]

    ended = Source()
    ended.put("a", StopAsyncIteration)
    assert [batch async for batch in batches(ended, 10)] == [["a"]]


async def test_closing_stops_the_feeder() -> None:
    source = Source()
    stream = batches(source, 2)
    source.put(1)
    assert await anext(stream) == [1]
    await stream.aclose()
    source.put(2, 3)
    await settle()
    assert source.taken == 1  # nothing read after the close


def test_a_batch_must_hold_something() -> None:
    with pytest.raises(ValueError):
        asyncio.run(anext(batches(Source(), 0)))


async def test_a_source_that_keeps_delivering_fills_the_batch_before_it_is_yielded() -> None:
    """Each item costs the source a turn of the event loop (as faust's stream does): the caller waits
    while items keep coming, so a backlog comes in full batches, not one item per turn."""

    async def trickling() -> AsyncIterator[int]:
        for n in range(25):
            await asyncio.sleep(0)
            yield n

    stream = batches(trickling(), 10)
    assert [await anext(stream), await anext(stream), await anext(stream)] == [
        list(range(10)),
        list(range(10, 20)),
        list(range(20, 25)),
    ]
    await stream.aclose()


async def test_a_lone_item_is_not_held_for_more() -> None:
    source = Source()
    stream = batches(source, 100)
    source.put("alone")
    assert await anext(stream) == ["alone"]  # yielded with the source still open: not held for a full batch
    source.put("next")
    assert await anext(stream) == ["next"]
    await stream.aclose()
