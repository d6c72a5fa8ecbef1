"""Kafka adapters for the processor's outbound roles: the alerts topic and the dead-letter topic."""

from __future__ import annotations

from typing import Any

from alerts.model import Alert
from stream.contracts import SourceRecord

DLQ_HEADER_PREFIX = "churnwatch."


class KafkaAlertPublisher:
    """Alerts go to the alerts topic as JSON, keyed by customer (one customer's alerts stay in order)."""

    def __init__(self, topic: Any) -> None:
        self._topic = topic

    async def publish(self, alert: Alert) -> None:
        sent = await self._topic.send(
            key=alert.customer_id.encode(), value=alert.model_dump_json().encode(), force=True
        )
        await sent  # wait for the broker's ack: only then is the alert durable


class KafkaDeadLetterSink:
    """The dead-letter record keeps the original key and bytes untouched (so it can be replayed as is);
    the reason and the source position travel in headers, as Kafka Connect's DLQ does."""

    def __init__(self, topic: Any) -> None:
        self._topic = topic

    async def dead_letter(self, record: SourceRecord, reason: str, detail: str) -> None:
        headers = [
            (f"{DLQ_HEADER_PREFIX}reason", reason.encode()),
            (f"{DLQ_HEADER_PREFIX}detail", detail.encode()[:4096]),
            (f"{DLQ_HEADER_PREFIX}source.topic", record.topic.encode()),
            (f"{DLQ_HEADER_PREFIX}source.partition", str(record.partition).encode()),
            (f"{DLQ_HEADER_PREFIX}source.offset", str(record.offset).encode()),
        ]
        sent = await self._topic.send(key=record.key, value=record.value or b"", headers=headers, force=True)
        await sent


def dead_letter_headers(headers: Any) -> dict[str, str]:
    """Read churnwatch's dead-letter headers back (for tools and tests)."""
    return {k[len(DLQ_HEADER_PREFIX) :]: v.decode() for k, v in (headers or []) if k.startswith(DLQ_HEADER_PREFIX)}
