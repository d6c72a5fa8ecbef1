"""replay --to-kafka without a broker: the pacing on a fake clock, stopping, acknowledgements."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from stream import replay_to_kafka
from stream.cli import main
from stream.contracts import SourceRecord
from stream.replay import TimedRecord
from stream.replay_to_kafka import Pacer, Sent, future_events, send_history, summary
from stream.settings import Settings

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeProducer:
    """Records what was sent when (on the fake clock); each send costs ``cost`` seconds."""

    def __init__(self, clock: FakeClock, cost: float = 0.0, fail_at: int | None = None) -> None:
        self.clock, self.cost, self.fail_at = clock, cost, fail_at
        self.sent: list[tuple[float, str, bytes | None, bytes | None]] = []
        self.flushed_after: int | None = None

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> asyncio.Future[Any]:
        self.sent.append((self.clock.now, topic, key, value))
        self.clock.now += self.cost
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.fail_at == len(self.sent):
            ack.set_exception(RuntimeError("not acknowledged"))
        else:
            ack.set_result(len(self.sent))
        return ack

    async def flush(self) -> None:
        self.flushed_after = len(self.sent)


def record(at: datetime, customer: str = "c-1", topic: str = "churnwatch.purchases") -> TimedRecord:
    value = f'{{"customer_id":"{customer}","at":"{at.isoformat()}"}}'.encode()
    return TimedRecord(at, SourceRecord(topic, 0, 0, customer.encode(), value))


async def send(
    records: list[TimedRecord],
    speed: float,
    clock: FakeClock,
    producer: FakeProducer,
    stop: asyncio.Event | None = None,
) -> Sent:
    pacer = Pacer(speed, clock)
    return await send_history(records, producer, pacer, stop=stop or asyncio.Event(), sleep=clock.sleep, clock=clock)


async def test_the_gaps_between_event_times_are_divided_by_the_speed_in_event_time_order() -> None:
    clock = FakeClock()
    producer = FakeProducer(clock)
    records = [
        record(T0 + 3 * HOUR, "late"),
        record(T0, "first"),
        record(T0 + HOUR, "a"),
        record(T0 + HOUR, "b", topic="churnwatch.feedback"),  # same time: the input's order
        record(T0 + 2 * HOUR, "c"),
    ]

    sent = await send(records, 3600, clock, producer)

    assert [(at, key) for at, _, key, _ in producer.sent] == [
        (0.0, b"first"),
        (1.0, b"a"),
        (1.0, b"b"),
        (2.0, b"c"),
        (3.0, b"late"),
    ]
    assert clock.sleeps == [1.0, 1.0, 1.0]
    assert producer.sent[2][1:] == ("churnwatch.feedback", b"b", records[3].record.value)  # topic, key, value as read
    assert sent == Sent(events=5, seconds=3.0, stopped=False) and producer.flushed_after == 5


async def test_time_spent_sending_is_not_added_to_every_gap() -> None:
    clock = FakeClock()
    producer = FakeProducer(clock, cost=0.25)
    await send([record(T0 + n * HOUR) for n in range(4)], 3600, clock, producer)
    assert [at for at, *_ in producer.sent] == [0.0, 1.0, 2.0, 3.0]
    assert clock.sleeps == [0.75, 0.75, 0.75]

    slow_clock = FakeClock()
    slow = FakeProducer(slow_clock, cost=2.0)  # slower than the pace: no waiting at all
    await send([record(T0 + n * HOUR) for n in range(3)], 3600, slow_clock, slow)
    assert [at for at, *_ in slow.sent] == [0.0, 2.0, 4.0] and slow_clock.sleeps == []


async def test_speed_zero_sends_everything_at_once() -> None:
    clock = FakeClock()
    producer = FakeProducer(clock)
    sent = await send([record(T0 + n * timedelta(days=30)) for n in range(5)], 0, clock, producer)
    assert clock.sleeps == [] and len(producer.sent) == 5 and sent.events == 5


async def test_a_stop_while_waiting_sends_nothing_more_and_flushes_what_was_sent() -> None:
    clock, stop = FakeClock(), asyncio.Event()
    producer = FakeProducer(clock)

    async def sleep_then_stop(seconds: float) -> None:
        await clock.sleep(seconds)
        if len(clock.sleeps) == 2:
            stop.set()  # Ctrl-C during the second wait

    pacer = Pacer(3600, clock)
    records = [record(T0 + n * HOUR) for n in range(5)]
    sent = await send_history(records, producer, pacer, stop=stop, sleep=sleep_then_stop, clock=clock)

    assert [at for at, *_ in producer.sent] == [0.0, 1.0]
    assert producer.flushed_after == 2 and sent == Sent(events=2, seconds=2.0, stopped=True)
    assert (
        summary(sent, 5, "127.0.0.1:9092")
        == "sent 2 events to 127.0.0.1:9092 in 2.0 s: 1 events/s, stopped after 2 of 5"
    )


async def test_acknowledgements_are_awaited_in_windows_and_a_failed_one_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay_to_kafka, "ACK_WINDOW", 2)
    clock = FakeClock()
    sent = await send([record(T0 + n * HOUR) for n in range(5)], 0, clock, FakeProducer(clock))
    assert sent.events == 5
    failing = FakeProducer(clock, fail_at=3)
    with pytest.raises(RuntimeError, match="not acknowledged"):
        await send([record(T0 + n * HOUR) for n in range(5)], 0, clock, failing)
    assert len(failing.sent) == 4  # the window of the failed one was awaited before sending more


def test_a_negative_speed_is_refused() -> None:
    with pytest.raises(ValueError, match="speed must be 0"):
        Pacer(-1, FakeClock())


def test_events_the_worker_would_find_in_the_future_are_counted() -> None:
    settings = Settings(max_future_skew=timedelta(minutes=5))
    records = [record(T0), record(T0 + timedelta(minutes=5)), record(T0 + timedelta(minutes=6))]
    assert future_events(records, settings, now=T0) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--speed", "10"], "'--speed': is only for --to-kafka"),
        (["--to-kafka", "--speed", "-1"], "-1.0 is not in the range x>=0"),
        (["--to-kafka", "--out", "alerts.jsonl"], "not with --to-kafka"),
    ],
)
def test_replay_to_kafka_option_mistakes_are_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "h.jsonl").write_text("")
    result = CliRunner().invoke(main, ["replay", str(tmp_path / "h.jsonl"), *args])
    assert result.exit_code == 2 and message in result.stderr, result.output
