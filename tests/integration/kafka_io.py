"""Small real-Kafka helpers for integration tests and benchmarks: produce events, read a topic.

``security`` is aiokafka's TLS/SASL options, e.g. ``StackInfo.kafka_security()`` of a secure stack."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from stream.events import EventBase
from stream.settings import Topics


async def produce(
    bootstrap: str,
    messages: Iterable[tuple[str, bytes | None, bytes]],
    *,
    security: Mapping[str, Any] | None = None,
) -> None:
    """Send (topic, key, value) in order and wait for every ack."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2, **(security or {}))
    await producer.start()
    try:
        pending = [await producer.send(topic, key=key, value=value) for topic, key, value in messages]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def produce_events(
    bootstrap: str, topics: Topics, events: Iterable[EventBase], *, security: Mapping[str, Any] | None = None
) -> None:
    await produce(
        bootstrap,
        ((topics.for_event(e), e.customer_id.encode(), e.model_dump_json().encode()) for e in events),
        security=security,
    )


async def read_topic(
    bootstrap: str,
    topic: str,
    *,
    until: Callable[[list[ConsumerRecord[Any, Any]]], bool],
    timeout: float = 60.0,
    security: Mapping[str, Any] | None = None,
) -> list[ConsumerRecord[Any, Any]]:
    """Read ``topic`` from the beginning until ``until(records)`` holds or ``timeout`` passes."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        **(security or {}),
    )
    await consumer.start()
    records: list[ConsumerRecord[Any, Any]] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not until(records):
            batch = await consumer.getmany(timeout_ms=250)
            for partition_records in batch.values():
                records.extend(partition_records)
        return records
    finally:
        await consumer.stop()
