"""Kafka adapters for the outbound roles: the alerts topic, the dead-letter topic, and ``kafka`` receivers."""

from __future__ import annotations

import hashlib
from typing import Any

from alerts.digest_format import digest_bytes
from alerts.grouping import Digest
from alerts.model import Alert
from alerts.notifier import RetryableDeliveryError
from stream.contracts import SourceRecord
from stream.retrying import PUBLISH_ERRORS

DLQ_HEADER_PREFIX = "churnwatch."
DETAIL_MAX_BYTES = 4096
HEADERS_MAX_BYTES = 8 * 1024
"""What churnwatch's headers on one dead letter add at most (the detail is cut at 4 KiB, a topic name
is at most 249 characters, the rest are numbers and digests): the room a dead letter needs beside its
key and value, which settings check against the broker's limit."""
KEY_KEPT_BYTES = 4096
"""A key longer than this is cut too, but only when key and value together do not fit."""
DEFAULT_MAX_BYTES = 900_000


class KafkaAlertPublisher:
    """Alerts go to the alerts topic as JSON, keyed by customer (one customer's alerts stay in order)."""

    def __init__(self, topic: Any) -> None:
        self._topic = topic

    async def publish(self, alert: Alert) -> None:
        sent = await self._topic.send(
            key=alert.customer_id.encode(), value=alert.model_dump_json().encode(), force=True
        )
        await sent  # wait for the broker's ack: only then is the alert durable


class KafkaAlertNotifier:
    """A ``kafka`` receiver: the alert JSON on its topic, keyed by customer, as on the alerts topic.

    A delivery counts only once the broker acknowledged it (the publisher waits for the ack), so the
    notification log never marks an alert the topic does not hold. A broker that is down or does not
    acknowledge is retryable: the dispatcher retries it within its attempts, then dead-letters it."""

    def __init__(self, topic: Any, *, name: str) -> None:
        self._topic = topic
        self._publisher = KafkaAlertPublisher(topic)
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    async def notify(self, alert: Alert) -> None:
        try:
            await self._publisher.publish(alert)
        except PUBLISH_ERRORS as exc:
            raise RetryableDeliveryError(self._name, f"{type(exc).__name__}: {exc}") from None

    async def notify_digest(self, digest: Digest) -> None:
        """One record for the digest (``"type": "digest"``), keyed by its group, every alert listed."""
        try:
            sent = await self._topic.send(key=digest.group.encode(), value=digest_bytes(digest), force=True)
            await sent
        except PUBLISH_ERRORS as exc:
            raise RetryableDeliveryError(self._name, f"{type(exc).__name__}: {exc}") from None


class KafkaDeadLetterSink:
    """The dead-letter record keeps the original key and bytes (so it can be replayed as is); the
    reason and the source position travel in headers, as Kafka Connect's DLQ does.

    Two exceptions, each marked in a header:

    - the original is too big to carry (key plus value over ``max_bytes``, which settings keep under
      the broker's limit): the value, and a key over 4 KiB, are cut to fit, and
      ``churnwatch.truncated`` names what was cut; ``churnwatch.original.<value|key>.bytes`` and
      ``.sha256`` identify the original, which is still on its source topic at the position given;
    - a tombstone (null value) stays null, with ``churnwatch.tombstone: true``; a null key too
      (Kafka allows it, the producer here does not) is written with an empty value.
    """

    def __init__(self, topic: Any, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes < 2 * KEY_KEPT_BYTES:
            raise ValueError(f"max_bytes must be at least {2 * KEY_KEPT_BYTES}")
        self._topic = topic
        self._max_bytes = max_bytes

    async def dead_letter(self, record: SourceRecord, reason: str, detail: str) -> None:
        key, value, extra = fit(record.key, record.value, self._max_bytes)
        headers = [
            (f"{DLQ_HEADER_PREFIX}reason", reason.encode()),
            (f"{DLQ_HEADER_PREFIX}detail", _cut_utf8(detail, DETAIL_MAX_BYTES)),
            (f"{DLQ_HEADER_PREFIX}source.topic", record.topic.encode()),
            (f"{DLQ_HEADER_PREFIX}source.partition", str(record.partition).encode()),
            (f"{DLQ_HEADER_PREFIX}source.offset", str(record.offset).encode()),
            *extra,
        ]
        if record.value is None:
            headers.append((f"{DLQ_HEADER_PREFIX}tombstone", b"true"))
            if key is None:
                value = b""
        sent = await self._topic.send(key=key, value=value, headers=headers, force=True)
        await sent


def fit(
    key: bytes | None, value: bytes | None, max_bytes: int
) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """Key and value cut so that together they take at most ``max_bytes``, and the headers that say so.

    Untouched when they fit. Otherwise a key up to 4 KiB is kept whole (it places the dead letter and
    names the customer) and the value keeps its first bytes.
    """
    key_len, value_len = len(key or b""), len(value or b"")
    if key_len + value_len <= max_bytes:
        return key, value, []
    cut: list[str] = []
    headers: list[tuple[str, bytes]] = []
    if key is not None and key_len > KEY_KEPT_BYTES:
        headers += _original("key", key)
        key, key_len = key[:KEY_KEPT_BYTES], KEY_KEPT_BYTES
        cut.append("key")
    if value is not None and key_len + value_len > max_bytes:
        headers += _original("value", value)
        value = value[: max_bytes - key_len]
        cut.append("value")
    return key, value, [(f"{DLQ_HEADER_PREFIX}truncated", ",".join(cut).encode()), *headers]


def _original(part: str, data: bytes) -> list[tuple[str, bytes]]:
    return [
        (f"{DLQ_HEADER_PREFIX}original.{part}.bytes", str(len(data)).encode()),
        (f"{DLQ_HEADER_PREFIX}original.{part}.sha256", hashlib.sha256(data).hexdigest().encode()),
    ]


def _cut_utf8(text: str, limit: int) -> bytes:
    """At most ``limit`` bytes of ``text``, never half a character (readers decode the header)."""
    return text.encode()[:limit].decode(errors="ignore").encode()


def dead_letter_headers(headers: Any) -> dict[str, str]:
    """Read churnwatch's dead-letter headers back (for tools and tests)."""
    return {k[len(DLQ_HEADER_PREFIX) :]: v.decode() for k, v in (headers or []) if k.startswith(DLQ_HEADER_PREFIX)}
