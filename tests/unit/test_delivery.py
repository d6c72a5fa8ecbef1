"""The delivery path with fakes: an alert record is delivered or dead-lettered, never dropped, while
Redis (the notification log) or Kafka (the dead-letter topic) fail; and dead letters always fit."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from faust.exceptions import ProducerSendError
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from alerts.model import Alert
from alerts.notifier import PermanentDeliveryError, RetryableDeliveryError
from stream.contracts import SourceRecord
from stream.delivery import AlertDelivery, Handled
from stream.kafka_sinks import KEY_KEPT_BYTES, KafkaDeadLetterSink, dead_letter_headers
from stream.metrics import Metrics
from stream.retrying import STORE_ERRORS, retry_unavailable
from stream.settings import Settings
from tests import alerts_factory
from tests.fakes import FlakyDeadLetters, FlakyDeliveryLog, RecordingNotifier, RecordingTopic

ALERTS = "churnwatch.alerts"


def make_alert(alert_id: str = "alert-1") -> Alert:
    return alerts_factory.make_alert(alert_id=alert_id, customer_id="cust-42")  # record_of's key


def record_of(value: bytes | None, offset: int = 7) -> SourceRecord:
    return SourceRecord(ALERTS, 0, offset, b"cust-42", value)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


class Rig:
    def __init__(self, *, sink_error: Exception | None = None) -> None:
        self.metrics = Metrics(CollectorRegistry())
        self.log = FlakyDeliveryLog()
        self.dead_letters = FlakyDeadLetters()
        self.slack = RecordingNotifier("slack", error=sink_error)
        self.hook = RecordingNotifier("webhook")
        self.delivery = AlertDelivery(
            [self.slack, self.hook],
            self.log,
            self.dead_letters,
            self.metrics,
            attempts=2,
            backoff_max=0.01,
            retry_max_seconds=0.01,
        )

    def errors(self, operation: str) -> float:
        return sample(self.metrics, "churnwatch_dependency_errors_total", operation=operation)

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.dead_letters.records]


async def test_an_alert_reaches_every_sink_and_is_logged() -> None:
    rig = Rig()
    alert = make_alert()
    assert await rig.delivery.handle(record_of(alert.model_dump_json().encode())) is Handled.DELIVERED
    assert rig.slack.received == rig.hook.received == ["alert-1"]
    assert rig.log.delivered == {("alert-1", "slack"), ("alert-1", "webhook")}
    assert rig.dead_letters.records == []
    assert rig.delivery.sinks == ("slack", "webhook")


async def test_an_alert_already_in_the_log_is_not_sent_again() -> None:
    rig = Rig()
    rig.log.delivered = {("alert-1", "slack"), ("alert-1", "webhook")}
    assert await rig.delivery.handle(record_of(make_alert().model_dump_json().encode())) is Handled.DELIVERED
    assert rig.slack.received == rig.hook.received == []


async def test_a_record_from_a_newer_worker_with_a_field_this_one_does_not_know_is_delivered() -> None:
    """A rolling upgrade: the newer producer's extra field is ignored, not a reason to dead-letter."""
    rig = Rig()
    record = json.loads(make_alert().model_dump_json()) | {"field_of_a_later_version": {"x": 1}}
    assert await rig.delivery.handle(record_of(json.dumps(record).encode())) is Handled.DELIVERED
    assert rig.slack.received == rig.hook.received == ["alert-1"]
    assert rig.dead_letters.records == []


@pytest.mark.parametrize("value", [b"{not json", b"", None, b'{"alert_id": "x"}'])
async def test_an_invalid_record_is_dead_lettered_and_counted(value: bytes | None) -> None:
    rig = Rig()
    assert await rig.delivery.handle(record_of(value)) is Handled.DEAD_LETTERED
    assert rig.reasons() == ["invalid_alert"]
    assert sample(rig.metrics, "churnwatch_deadletters_total", topic=ALERTS, reason="invalid_alert") == 1


@pytest.mark.parametrize(
    "error", [RedisConnectionError("refused"), RedisTimeoutError("Timeout reading from socket"), OSError(111, "x")]
)
async def test_an_unavailable_notification_log_stalls_the_alert_then_delivers_it_once(error: Exception) -> None:
    """The lookup fails before anything is sent: retried until Redis answers, never dead-lettered."""
    rig = Rig()
    rig.log.lookup_errors = [error] * 5
    assert await rig.delivery.handle(record_of(make_alert().model_dump_json().encode())) is Handled.DELIVERED
    assert rig.slack.received == rig.hook.received == ["alert-1"]
    assert rig.errors("delivery_lookup") == 5
    assert rig.dead_letters.records == []


async def test_a_mark_failing_after_the_send_is_retried_without_sending_again() -> None:
    rig = Rig()
    rig.log.mark_errors = [RedisConnectionError("gone")] * 3
    assert await rig.delivery.handle(record_of(make_alert().model_dump_json().encode())) is Handled.DELIVERED
    assert rig.slack.received == rig.hook.received == ["alert-1"]  # once each
    assert rig.log.delivered == {("alert-1", "slack"), ("alert-1", "webhook")}  # recorded in the end
    assert rig.errors("delivery_mark") == 3


async def test_a_mark_refused_for_good_leaves_the_alert_delivered_not_crashed() -> None:
    rig = Rig()
    rig.log.mark_errors = [ResponseError("OOM command not allowed"), ResponseError("OOM command not allowed")]
    assert await rig.delivery.handle(record_of(make_alert().model_dump_json().encode())) is Handled.DELIVERED
    assert rig.slack.received == rig.hook.received == ["alert-1"]
    assert rig.dead_letters.records == []
    assert sample(rig.metrics, "churnwatch_alert_deliveries_total", sink="slack", outcome="delivered") == 1


async def test_a_lookup_refused_for_good_dead_letters_the_alert_as_delivery_error() -> None:
    """Not an outage, so retrying will not help: kept on the dead-letter topic, nothing sent."""
    rig = Rig()
    rig.log.lookup_errors = [ResponseError("WRONGTYPE"), ResponseError("WRONGTYPE")]
    assert await rig.delivery.handle(record_of(make_alert().model_dump_json().encode())) is Handled.DEAD_LETTERED
    assert rig.reasons() == ["delivery_error"]
    assert "ResponseError: WRONGTYPE" in rig.dead_letters.records[0][2]
    assert rig.slack.received == rig.hook.received == []


async def test_an_alert_a_sink_refuses_is_dead_lettered_as_undeliverable() -> None:
    rig = Rig(sink_error=PermanentDeliveryError("slack", "HTTP 400: invalid_blocks", status=400))
    assert await rig.delivery.handle(record_of(make_alert().model_dump_json().encode())) is Handled.DEAD_LETTERED
    assert rig.reasons() == ["undeliverable"]
    assert "slack: failed_permanent (slack: HTTP 400: invalid_blocks)" in rig.dead_letters.records[0][2]
    assert rig.hook.received == ["alert-1"]  # the other sink still got it
    assert sample(rig.metrics, "churnwatch_deadletters_total", topic=ALERTS, reason="undeliverable") == 1


async def test_an_unavailable_dead_letter_topic_stalls_then_dead_letters_once() -> None:
    rig = Rig(sink_error=PermanentDeliveryError("slack", "HTTP 404", status=404))
    rig.dead_letters.errors = [
        KafkaConnectionError(),
        ProducerSendError("Error while sending: KafkaTimeoutError()"),
        KafkaTimeoutError(),
    ]
    assert await rig.delivery.handle(record_of(make_alert().model_dump_json().encode())) is Handled.DEAD_LETTERED
    assert rig.reasons() == ["undeliverable"]
    assert rig.errors("deadletter") == 3
    assert sample(rig.metrics, "churnwatch_deadletters_total", topic=ALERTS, reason="undeliverable") == 1


async def test_a_stalled_alert_still_lets_the_worker_stop() -> None:
    rig = Rig()
    rig.log.lookup_errors = [RedisConnectionError("down")] * 10_000
    task = asyncio.create_task(rig.delivery.handle(record_of(make_alert().model_dump_json().encode())))
    await asyncio.sleep(0.2)
    assert not task.done()  # stalled, not skipped
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert rig.slack.received == [] and rig.dead_letters.records == []


async def test_retry_unavailable_gives_up_at_once_on_anything_else() -> None:
    metrics = Metrics(CollectorRegistry())
    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("a bug")

    with pytest.raises(ValueError):
        await retry_unavailable("apply", broken, metrics=metrics, retry_on=STORE_ERRORS, max_wait=0.01)
    assert calls == 1
    assert sample(metrics, "churnwatch_dependency_errors_total", operation="apply") == 0


# The dead-letter sink: any message the broker accepted fits on the dead-letter topic.


def source(key: bytes | None, value: bytes | None) -> SourceRecord:
    return SourceRecord("churnwatch.purchases", 2, 41, key, value)


async def test_a_dead_letter_that_fits_keeps_key_and_bytes_untouched() -> None:
    topic = RecordingTopic()
    await KafkaDeadLetterSink(topic, max_bytes=10_000).dead_letter(source(b"k", b"x" * 9_999), "too_large", "big")
    key, value, headers = topic.sent[0]
    assert (key, value) == (b"k", b"x" * 9_999)
    read = dead_letter_headers(headers)
    assert read == {
        "reason": "too_large",
        "detail": "big",
        "source.topic": "churnwatch.purchases",
        "source.partition": "2",
        "source.offset": "41",
    }


async def test_a_value_too_big_to_carry_is_cut_with_its_length_and_digest() -> None:
    topic = RecordingTopic()
    original = bytes(range(256)) * 100
    await KafkaDeadLetterSink(topic, max_bytes=10_000).dead_letter(source(b"cust-1", original), "too_large", "")
    key, value, headers = topic.sent[0]
    assert key == b"cust-1" and value == original[: 10_000 - 6]
    read = dead_letter_headers(headers)
    assert read["truncated"] == "value"
    assert read["original.value.bytes"] == str(len(original))
    assert read["original.value.sha256"] == hashlib.sha256(original).hexdigest()
    assert "original.key.bytes" not in read


async def test_a_huge_key_is_cut_too_but_only_when_both_do_not_fit() -> None:
    topic = RecordingTopic()
    sink = KafkaDeadLetterSink(topic, max_bytes=20_000)
    await sink.dead_letter(source(b"k" * 6_000, b"v" * 100), "key_mismatch", "")
    assert topic.sent[0][0] == b"k" * 6_000  # fits: untouched
    original_key = b"k" * 30_000
    await sink.dead_letter(source(original_key, b"v" * 30_000), "too_large", "")
    key, value, headers = topic.sent[1]
    assert key == original_key[:KEY_KEPT_BYTES] and value == b"v" * (20_000 - KEY_KEPT_BYTES)
    read = dead_letter_headers(headers)
    assert read["truncated"] == "key,value"
    assert read["original.key.sha256"] == hashlib.sha256(original_key).hexdigest()
    assert read["original.key.bytes"] == "30000" and read["original.value.bytes"] == "30000"


async def test_a_tombstone_stays_null_and_says_so() -> None:
    topic = RecordingTopic()
    sink = KafkaDeadLetterSink(topic)
    await sink.dead_letter(source(b"cust-1", None), "tombstone", "null value")
    await sink.dead_letter(source(b"cust-1", b""), "not_json", "empty")
    await sink.dead_letter(source(None, None), "tombstone", "null value")  # Kafka allows it; aiokafka's send not
    (_, tombstone, t_headers), (_, empty, e_headers), (no_key, written, n_headers) = topic.sent
    assert tombstone is None and dead_letter_headers(t_headers)["tombstone"] == "true"
    assert empty == b"" and "tombstone" not in dead_letter_headers(e_headers)
    assert (no_key, written) == (None, b"") and dead_letter_headers(n_headers)["tombstone"] == "true"


async def test_a_long_detail_is_cut_on_a_character_boundary() -> None:
    topic = RecordingTopic()
    await KafkaDeadLetterSink(topic).dead_letter(source(b"k", b"{}"), "schema", "é" * 5_000)
    detail = dead_letter_headers(topic.sent[0][2])["detail"]  # decodes: no half character
    assert detail == "é" * 2_048


def test_dead_letters_and_kafka_clients_agree_on_sizes() -> None:
    settings = Settings()
    # faust's own default producer limit would refuse what Kafka's default broker accepts
    assert settings.kafka_request_max_bytes > settings.kafka_message_max_bytes == 1_048_588
    # the dead letter plus its headers fits even a producer still at faust's default 1,000,000
    assert settings.deadletter_max_bytes + 8 * 1024 < 1_000_000
    with pytest.raises(ValidationError, match="no room for the dead letter's headers"):
        Settings(deadletter_max_bytes=1_045_000)
    with pytest.raises(ValidationError):
        Settings(kafka_message_max_bytes=200_000)  # the default dead-letter bound no longer fits
    assert Settings(kafka_message_max_bytes=200_000, deadletter_max_bytes=150_000).kafka_request_max_bytes == 265_536


class FailsOnce(RecordingNotifier):
    """Answers its first send with a 503, then accepts."""

    async def notify(self, alert: Alert) -> None:
        if not self.failed:
            self.failed = True
            raise RetryableDeliveryError(self.name, "HTTP 503", status=503)
        await super().notify(alert)

    failed: bool = False


async def test_a_send_that_fails_once_and_then_succeeds_counts_one_retry_for_its_sink() -> None:
    metrics = Metrics(CollectorRegistry())
    slack, hook = FailsOnce("slack"), RecordingNotifier("webhook")
    delivery = AlertDelivery(
        [slack, hook], FlakyDeliveryLog(), FlakyDeadLetters(), metrics, attempts=3, backoff_max=0.01
    )
    assert await delivery.handle(record_of(make_alert().model_dump_json().encode())) is Handled.DELIVERED
    assert slack.received == hook.received == ["alert-1"]
    assert sample(metrics, "churnwatch_alert_delivery_retries_total", sink="slack") == 1
    assert sample(metrics, "churnwatch_alert_delivery_retries_total", sink="webhook") == 0
    assert sample(metrics, "churnwatch_alert_deliveries_total", sink="slack", outcome="delivered") == 1
