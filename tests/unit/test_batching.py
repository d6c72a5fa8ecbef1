"""stream.batching: batches of what has arrived, in order, bounded, with nothing lost or taken early."""

from __future__ import annotations

import asyncio

import pytest

from stream.batching import IDLE_TURNS, BatchBuffer


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def fill(buffer: BatchBuffer[int], items: range | list[int]) -> None:
    for item in items:
        assert buffer.offer(item)


async def test_an_item_that_finds_the_worker_idle_comes_alone_and_a_backlog_comes_in_bounded_batches() -> None:
    buffer: BatchBuffer[int] = BatchBuffer(3, capacity=10)
    waiting = asyncio.ensure_future(buffer.take())
    await settle()
    assert not waiting.done()  # nothing arrived yet
    fill(buffer, [1])
    assert await waiting == [1]
    fill(buffer, range(2, 9))
    assert [await buffer.take(), await buffer.take(), await buffer.take()] == [[2, 3, 4], [5, 6, 7], [8]]
    assert len(buffer) == 0


async def test_a_full_buffer_refuses_until_a_batch_is_taken_and_the_fetcher_waits_for_room() -> None:
    buffer: BatchBuffer[int] = BatchBuffer(2, capacity=4)
    fill(buffer, range(4))
    assert not buffer.offer(4)  # refused, not dropped: the fetcher keeps it and waits
    room = asyncio.ensure_future(buffer.wait_for_room())
    await settle()
    assert not room.done()
    assert await buffer.take() == [0, 1]
    await asyncio.wait_for(room, 1)
    assert buffer.offer(4)
    assert [await buffer.take(), await buffer.take()] == [[2, 3], [4]]


async def test_clearing_drops_what_is_buffered_and_makes_room() -> None:
    """faust clears the buffer on a rebalance: those items were never taken, so never acked, and are
    fetched again from the committed offsets."""
    buffer: BatchBuffer[int] = BatchBuffer(2, capacity=2)
    fill(buffer, [1, 2])
    room = asyncio.ensure_future(buffer.wait_for_room())
    buffer.clear()
    await asyncio.wait_for(room, 1)
    assert len(buffer) == 0
    fill(buffer, [3])
    assert await buffer.take() == [3]


def test_a_batch_must_hold_something_and_fit_the_buffer() -> None:
    with pytest.raises(ValueError):
        BatchBuffer(0)
    with pytest.raises(ValueError):
        BatchBuffer(10, capacity=5)


async def test_a_fetcher_that_keeps_delivering_fills_the_batch_before_it_is_handed_out() -> None:
    """The fetcher brings an item per turn of the event loop: the worker waits while items keep coming,
    so a backlog comes in full batches, not one item per turn."""
    buffer: BatchBuffer[int] = BatchBuffer(10, capacity=30)

    async def fetcher() -> None:
        for n in range(25):
            await buffer.wait_for_room()
            buffer.offer(n)
            await asyncio.sleep(0)

    feeding = asyncio.ensure_future(fetcher())
    batches = [await buffer.take(), await buffer.take(), await buffer.take()]
    await feeding
    assert batches == [list(range(10)), list(range(10, 20)), list(range(20, 25))]


async def test_a_lone_item_is_not_held_for_a_full_batch() -> None:
    buffer: BatchBuffer[str] = BatchBuffer(100)
    buffer.offer("alone")
    taking = asyncio.ensure_future(buffer.take())
    for _ in range(IDLE_TURNS + 2):  # a few turns of the event loop with nothing arriving
        await asyncio.sleep(0)
    assert taking.done() and taking.result() == ["alone"]  # not waiting for 99 more


def test_take_ready_hands_out_what_has_arrived_without_waiting() -> None:
    buffer: BatchBuffer[int] = BatchBuffer(3, capacity=6)
    assert buffer.take_ready() == []
    fill(buffer, range(5))
    assert buffer.take_ready() == [0, 1, 2]
    assert buffer.take_ready() == [3, 4]
    assert buffer.take_ready() == []
