"""Messages the broker accepts but no dead letter could carry whole: near and at the broker's limit.

The guarantee under test: any message the broker accepts is processed or dead-lettered, and counted.
A value past ``CHURNWATCH_DEADLETTER_MAX_BYTES`` is dead-lettered truncated, with its length and
SHA-256 in headers, and the partition goes on; a tombstone stays a tombstone on the dead-letter topic.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError

from stream.kafka_sinks import dead_letter_headers
from stream.localstack import StackInfo
from stream.settings import Settings
from tests.events_factory import purchase, unique_customer
from tests.integration.deployment import Deployment, deploy
from tests.integration.kafka_io import read_topic

BROKER_MESSAGE_MAX_BYTES = 1_048_588
"""Kafka's default ``message.max.bytes`` (the local stack leaves it alone): the largest record batch."""
BATCH_OVERHEAD = 72
"""Bytes of a one-record batch around key and value, for a value of 2**20 bytes or so and a short key
with no headers: batch header 61, record length 3, attributes, timestamp and offset deltas 3, key
length 1, value length 3, header count 1."""
NEAR_LIMIT = 1_040_000


def largest_value(key: bytes) -> int:
    return BROKER_MESSAGE_MAX_BYTES - BATCH_OVERHEAD - len(key)


@pytest.fixture(scope="module")
def deployment(local_stack: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deploy(local_stack, tmp_path_factory.mktemp("worker")) as running:
        yield running


async def send(bootstrap: str, topic: str, key: bytes, value: bytes | None) -> None:
    """One message, through a producer that leaves the size check to the broker."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=4 * 2**20)
    await producer.start()
    try:
        await producer.send_and_wait(topic, key=key, value=value)
    finally:
        await producer.stop()


async def test_values_up_to_the_broker_limit_are_dead_lettered_truncated_and_counted(
    deployment: Deployment,
) -> None:
    topics, bootstrap = deployment.topics, deployment.stack.kafka_bootstrap
    cid = unique_customer("huge")
    key = cid.encode()
    at_limit = largest_value(key)
    with pytest.raises(MessageSizeTooLargeError):  # one byte more and the broker refuses it
        await send(bootstrap, topics.purchases, key, b"x" * (at_limit + 1))

    near = b'{"event_id": "' + b"n" * (NEAR_LIMIT - 16) + b'"}'
    limit = bytes(range(256)) * (at_limit // 256) + b"z" * (at_limit % 256)
    assert (len(near), len(limit)) == (NEAR_LIMIT, at_limit)
    for value in (near, limit, None):
        await send(bootstrap, topics.purchases, key, value)
    after = purchase(cid, datetime.now(UTC) - timedelta(hours=1))
    await send(bootstrap, topics.purchases, key, after.model_dump_json().encode())

    deployment.wait_processed(topics.purchases, 1, timeout=60)  # the event behind them went through

    def mine(records: list) -> list:  # type: ignore[type-arg]
        return [r for r in records if r.key == key]

    records = mine(await read_topic(bootstrap, topics.deadletter, until=lambda rs: len(mine(rs)) >= 3, timeout=30))
    assert len(records) == 3
    bound = Settings().deadletter_max_bytes
    for record, original in zip(records[:2], (near, limit), strict=True):
        headers = dead_letter_headers(record.headers)
        assert headers["reason"] == "too_large"
        assert headers["source.topic"] == topics.purchases
        assert headers["truncated"] == "value"
        assert int(headers["original.value.bytes"]) == len(original)
        assert headers["original.value.sha256"] == hashlib.sha256(original).hexdigest()
        assert len(record.key) + len(record.value) <= bound
        assert original.startswith(record.value)  # a prefix of the original bytes
        assert record.key == key  # the key is kept when it fits

    tombstone = records[2]
    assert tombstone.value is None
    assert dead_letter_headers(tombstone.headers)["reason"] == "tombstone"
    assert dead_letter_headers(tombstone.headers)["tombstone"] == "true"

    reason = {"topic": topics.purchases}
    assert deployment.metric("churnwatch_deadletters_total", **reason, reason="too_large") == 2
    assert deployment.metric("churnwatch_deadletters_total", **reason, reason="tombstone") == 1
    assert deployment.metric("churnwatch_deadletters_total", **reason, reason="processing_error") == 0
    assert deployment.metric("churnwatch_events_consumed_total", **reason, outcome="ok") == 1
