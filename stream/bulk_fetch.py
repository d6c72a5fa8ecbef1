"""The event topics read in bulk below faust's per-event stream; faust keeps the group, offsets and acks.

Why: faust hands every fetched message to its conductor in tasks of its own (``Service.wait_first``
creates four tasks and runs an ``asyncio.wait`` per message), then through a channel queue and a
stream iterator into the agent: 45 % of the worker's core on a backlog (py-spy, bench/README.md),
while the worker processes events in batches anyway. So for the event topics this consumer's fetch
loop puts each fetched message straight into the worker's :class:`~stream.batching.BatchBuffer`,
and the worker takes, processes and acks them a batch at a time.

Everything else stays faust's: the consumer group and its assignment, the fetcher thread, read
offsets and gap tracking, and the commits, which move an offset only past messages acked (a message
is tracked as pending when the worker takes it and acked after its batch's state is written, as
faust's own streams do). On a rebalance faust suspends flow, clears the buffer with its channel
queues (it is registered with ``app.flow_control``), waits until every taken message is acked, and
commits; after the assignment it fetches again from the committed offsets.

:meth:`BulkFetchConsumer._drain_messages` is faust-streaming's own fetch loop (``Consumer.
_drain_messages``, the version in uv.lock) with one change: a message of a bulk topic is offered to
the buffer instead of awaited through ``wait_first(callback(message), suspend_flow.wait())``; it
takes the old way only when the buffer is full or the flow suspended, so a rebalance never waits
behind a full buffer. The other topics (the alerts topic's agent) go through faust as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, cast

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.types import Message
from mode import Service, ServiceT

from stream.batching import BatchBuffer


class BulkInput:
    """The topics read in bulk and the buffer they go to."""

    def __init__(self, topics: Iterable[str], buffer: BatchBuffer[Message]) -> None:
        self.topics = frozenset(topics)
        self.buffer = buffer


class BulkFetchConsumer(AIOKafkaConsumer):
    """faust's aiokafka consumer, with the bulk topics' messages (its app's :attr:`BulkFetchApp.bulk`)
    offered straight to their buffer."""

    async def _offer_when_possible(self, buffer: BatchBuffer[Message], message: Message) -> None:
        """The slow path: wait for the flow to resume and for room (raced against ``suspend_flow``)."""
        while True:
            await self.app.flow_control.acquire()
            await buffer.wait_for_room()
            if self.app.flow_control.is_active() and buffer.offer(message):
                return

    async def _drain_messages(self, fetcher: ServiceT) -> None:  # pragma: no cover (as faust's)
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set

        set_flag, unset_flag = self.diag.set_flag, self.diag.unset_flag
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        flow_active = self.app.flow_control.is_active
        bulk: BulkInput | None = getattr(self.app, "bulk", None)  # read at each start: set before the app starts
        bulk_topics = bulk.topics if bulk is not None else frozenset()
        buffer = bulk.buffer if bulk is not None else None

        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                ait = cast(Any, getmany(timeout=1.0))
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            if buffer is not None and message.topic in bulk_topics:
                                if not (flow_active() and buffer.offer(message)):
                                    await self.wait_first(
                                        self._offer_when_possible(buffer, message), self.suspend_flow.wait()
                                    )
                            else:
                                await self.wait_first(callback(message), self.suspend_flow.wait())
                            set_read_offset(tp, offset)
                    unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)


class BulkFetchApp(faust.App):
    """A faust app whose consumer reads :attr:`bulk`'s topics into its buffer (set before it starts)."""

    bulk: BulkInput | None = None

    def read_in_bulk(self, topics: Iterable[faust.TopicT], buffer: BatchBuffer[Message]) -> None:
        """Subscribe to ``topics`` (with acks: commits wait for the worker's acks) and route their
        messages into ``buffer``, which faust clears with its own queues on a rebalance."""
        topics = list(topics)
        for topic in topics:
            self.topics.add(topic)
        self.bulk = BulkInput((name for topic in topics for name in topic.topics), buffer)
        self.flow_control.manage_queue(buffer)  # type: ignore[arg-type]  # duck-typed: it only calls clear()

    def _new_consumer(self) -> BulkFetchConsumer:
        """faust's own ``_new_consumer`` (``transport.create_consumer``), with this consumer class."""
        transport = self.transport
        return BulkFetchConsumer(
            transport,
            callback=self.topics.on_message,
            on_partitions_revoked=self._on_partitions_revoked,
            on_partitions_assigned=self._on_partitions_assigned,
            beacon=self.beacon,
            loop=transport.loop,
        )

    def track_taken(self, messages: Iterable[Message]) -> None:
        """Pending from now on: a rebalance or shutdown waits for them to be acked."""
        track = self.consumer.track_message
        for message in messages:
            track(message)

    def ack(self, messages: Iterable[Message]) -> None:
        """Done with: their offsets may be committed (once every message before them is acked too)."""
        ack = self.consumer.ack
        for message in messages:
            ack(message)
